"""A Unity-Catalog-like model registry for tests: MLflow's sqlite registry store that behaves
as Unity Catalog does where UC differs from the workspace registry.

- stage APIs (``transition_model_version_stage``, ``get_latest_versions``) are refused with
  UC's message, and every such call is recorded in :attr:`UnityCatalogLikeStore.refused`;
- model names must be three-level ``catalog.schema.model``;
- a model version needs a signature with inputs and outputs (checked on the logged model, as
  UC's client does before registering);
- ``search_model_versions`` takes one ``name=`` or ``run_id=`` condition and no ordering.

:func:`install` registers it for the ``databricks-uc`` registry URI and lets ``models:/``
URIs download through the registry's version source (standing in for UC's own artifact
repository, which needs a workspace). Everything else is the real sqlite store.
"""

from __future__ import annotations

import re

from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

UC_SCHEME = "databricks-uc"
_ONE_CONDITION = re.compile(r"^\s*(name|run_id)\s*=\s*'[^']*'\s*$")


def _unsupported(method: str, note: str = "") -> MlflowException:
    return MlflowException(f"Method '{method}' is unsupported for models in the Unity Catalog. {note}".strip())


class UnityCatalogLikeStore(SqlAlchemyStore):
    refused: list[str] = []  # every stage call made against any instance

    @staticmethod
    def _check_name(name: str) -> None:
        if len(name.split(".")) != 3:
            raise MlflowException(f"Invalid model name {name!r}: models in Unity Catalog need a three-level name "
                                  "<catalog>.<schema>.<model>")

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        self._check_name(name)
        return super().create_registered_model(name, tags, description, deployment_job_id)

    def create_model_version(self, name, source, *args, **kwargs):
        self._check_name(name)
        from mlflow.models import Model

        signature = Model.load(source).signature
        if signature is None or signature.inputs is None or signature.outputs is None:
            raise MlflowException("Model passed for registration did not contain a signature with inputs and "
                                  "outputs. All models in the Unity Catalog must be logged with a model signature "
                                  "containing both input and output type specifications.")
        return super().create_model_version(name, source, *args, **kwargs)

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        self.refused.append(f"transition_model_version_stage({name}, {version}, {stage})")
        raise _unsupported("transition_model_version_stage", "We recommend using aliases instead of stages.")

    def get_latest_versions(self, name, stages=None):
        self.refused.append(f"get_latest_versions({name}, {stages})")
        raise _unsupported("get_latest_versions", "Use aliases instead of stages.")

    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        if order_by:
            raise MlflowException("Argument 'order_by' is unsupported for models in the Unity Catalog.")
        if filter_string and not _ONE_CONDITION.match(filter_string):
            raise MlflowException(f"Unity Catalog search_model_versions supports one name= or run_id= condition, "
                                  f"not {filter_string!r}")
        kwargs = {"max_results": max_results} if max_results else {}
        return super().search_model_versions(filter_string, page_token=page_token, **kwargs)


def install(monkeypatch, db_uri: str) -> None:
    """Make the registry URI ``databricks-uc`` mean a UC-like store over the sqlite database ``db_uri``."""
    import mlflow.store.artifact.models_artifact_repo as models_repo
    from mlflow.tracking._model_registry import utils as registry_utils

    registry = registry_utils._get_store_registry()
    monkeypatch.setitem(registry._registry, UC_SCHEME, lambda store_uri=None, tracking_uri=None, **_:
                        UnityCatalogLikeStore(db_uri))
    # UC's artifact repository fetches cloud credentials from the workspace; here the version's
    # source is a local artifact folder, which the generic registry path downloads from.
    monkeypatch.setattr(models_repo, "is_databricks_unity_catalog_uri", lambda uri: False)
    monkeypatch.setattr(UnityCatalogLikeStore, "refused", [])
