"""The model to score with: an alias or a version, resolved to ONE concrete version.

``score`` resolves once, at start (through :meth:`cmle.registry.Registry.resolve`), and
loads ``models:/{name}/{version}``: moving an alias while a run is under way cannot mix
two models in one score run.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmle.errors import RegistryError
from cmle.registry import CHAMPION, Registry


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, and how it was asked for."""

    name: str
    version: str
    requested: str  # the alias or version the user gave
    run_id: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(name: str, ref: str = CHAMPION, registry: Registry | None = None) -> ModelRef:
    """The concrete version that ``ref`` (an alias, a version number or ``latest``) names now;
    :class:`RegistryError` saying what exists when the model, alias or version does not."""
    ref = str(ref).strip()
    if not ref:
        raise RegistryError("model = '' names no model version; pass an alias (champion) or a version number")
    mv = (registry or Registry.current()).resolve(name, ref)
    return ModelRef(name=name, version=str(mv.version), requested=ref, run_id=mv.run_id or "")


def load(ref: ModelRef):
    """The pyfunc model of exactly this version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(ref.uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load {ref.uri}: {exc}") from None
