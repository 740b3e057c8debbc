"""Stage registry: every stage's parameters (typed, with defaults) and its function.

The CLI, the ``MLproject`` entry points, the Databricks job tasks and ``main`` are all
generated from or checked against :data:`STAGE_ORDER` and each stage's ``STAGE``, so a
parameter is declared once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from cmle.errors import ParameterError

# The pipeline order `main` runs; the others are not pipeline stages.
STAGE_ORDER = ("synthetic", "explore", "featurize", "export", "train", "promote", "score", "ingest", "audience",
               "monitor")
# approve, history and webhook govern promotion (docs/promotion.md).
ALL_STAGES = (*STAGE_ORDER, "main", "load", "cleanup", "deploy", "approve", "history", "webhook")

# Stage name -> module under cmle.stages, where they differ.
_MODULES = {"main": "pipeline"}

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # int | float | str | bool
    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None

    @property
    def mlproject_type(self) -> str:
        return {int: "int", float: "float", bool: "string", str: "string"}[self.type]

    def convert(self, stage: str, raw: Any) -> Any:
        """Parse ``raw`` (a CLI string or a Python value) into the declared type; ParameterError if invalid."""
        where = f"{stage}: parameter {self.name}"
        if raw is None:
            return self.default
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).strip().lower() in _TRUE:
                    value = True
                elif str(raw).strip().lower() in _FALSE:
                    value = False
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                value = int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
            elif self.type is float:
                value = float(raw)
            elif isinstance(raw, bool):
                value = str(raw).lower()
            else:
                value = str(raw)
                if self.choices is not None and {"true", "false"} <= set(self.choices):
                    # a choice that extends a flag (retrain: false / true / auto) takes the flag's spellings
                    low = value.strip().lower()
                    value = "true" if low in _TRUE else "false" if low in _FALSE else low
        except (TypeError, ValueError):
            raise ParameterError(f"{where} = {raw!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{where} = {value!r} is not one of: {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"{where} = {value!r} must be at least {self.min}")
        return value


@dataclass(frozen=True)
class Stage:
    name: str
    func: Callable[..., dict]
    params: tuple[Param, ...]
    help: str = ""
    tracked: bool = True  # False: not an MLflow run (deploy, history, webhook)
    render: Callable[[dict], str] | None = None  # what the command line prints instead of the outputs' JSON

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(f"{self.name}: unknown parameter {name!r}; known: "
                             f"{', '.join(p.name for p in self.params)}")

    def resolve(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``values``, every value converted and checked."""
        values = dict(values or {})
        for key in values:
            self.param(key)
        return {p.name: p.convert(self.name, values.get(p.name)) for p in self.params}


# The model spec a stage follows (the stages that read it declare this same parameter).
SPEC_PARAM = Param("spec", str, "", "model spec file (YAML: data, goal, eligibility, features); empty: [Model] spec "
                   "of the config (default conf/models/synthetic.yaml)")


def get_stage(name: str) -> Stage:
    """The stage called ``name`` (imports its module on first use)."""
    if name not in ALL_STAGES:
        raise ParameterError(f"unknown stage {name!r}; stages: {', '.join(ALL_STAGES)}")
    module = importlib.import_module(f"cmle.stages.{_MODULES.get(name, name)}")
    return module.STAGE
