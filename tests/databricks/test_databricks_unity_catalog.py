"""Unity Catalog: three-level names, and train + promote against a registry that refuses stage
calls as Unity Catalog does (the real stages, with the registry URI ``databricks-uc``)."""

from __future__ import annotations

import mlflow
import pytest
import uc_registry
from mlflow.exceptions import MlflowException

from cmle import naming, tracking
from cmle.config import load_settings
from cmle.databricks import unity_catalog as uc
from cmle.errors import ConfigError
from cmle.registry import CHALLENGER, CHAMPION, Registry, registry_has_stages
from cmle.runner import run_stage

MODEL = "main.cmle_dev.cmle_propensity_model"


@pytest.mark.parametrize("tracking_uri, registry_uri, expected", [
    ("databricks", "databricks-uc", True),
    ("databricks", "", True),  # MLflow 3 defaults the registry to Unity Catalog
    ("databricks://prod", "", True),
    ("sqlite:///mlflow.db", "databricks-uc://prod", True),
    ("databricks", "databricks", False),  # the workspace registry, with stages
    ("sqlite:///mlflow.db", "", False),
    ("http://mlflow:5000", "", False),
])
def test_which_registries_are_unity_catalog(tracking_uri, registry_uri, expected):
    assert uc.is_unity_catalog(tracking_uri, registry_uri) is expected
    # the registry module, which decides on stage calls, agrees
    assert registry_has_stages(uc.effective_registry_uri(tracking_uri, registry_uri)) is not expected


@pytest.mark.parametrize("name", ["cmle_propensity_model", "main.cmle", "main..model", "a.b.c.d", "main.cmle.my model",
                                  "main.cmle.model-x", ""])
def test_unity_catalog_needs_a_three_level_name(name):
    with pytest.raises(ConfigError, match=r"three-level name catalog\.schema\.model.*CMLE_CLOUD_MODEL_NAME"):
        uc.check_model_name(name)


def test_settings_check_applies_only_to_unity_catalog(tmp_cwd):
    uc.check_settings(load_settings(env={}))  # local sqlite registry: any name
    with pytest.raises(ConfigError, match="'cmle_propensity_model'"):
        uc.check_settings(load_settings(env={"CMLE_MLFLOW_TRACKING_URI": "databricks"}))
    uc.check_settings(load_settings(env={"CMLE_MLFLOW_TRACKING_URI": "databricks", "CMLE_CLOUD_MODEL_NAME": MODEL}))


@pytest.fixture
def uc_settings(tmp_cwd, monkeypatch):
    """Settings with registry_uri = databricks-uc served by the UC-like store over the local sqlite db."""
    from mlflow.tracking._model_registry import utils as registry_utils

    monkeypatch.setattr(registry_utils, "_registry_uri", None)  # restored after the test
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")  # set_registry_uri exports it; undo after
    settings = load_settings(env={"CMLE_MLFLOW_REGISTRY_URI": "databricks-uc", "CMLE_CLOUD_MODEL_NAME": MODEL})
    tracking.setup(settings)
    uc_registry.install(monkeypatch, mlflow.get_tracking_uri())
    yield settings
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _put_training_export(settings, seed: int = 0) -> None:
    from cmle.platform import get_platform
    from tests.model.fabricate import arrow, training_frame

    platform = get_platform(settings)
    try:
        ds = platform.put_table(naming.training_set(settings.platform.owner, "pit"), arrow(training_frame(1500, seed)))
        platform.export_dataset(ds.id, settings.cloud.export_path)
    finally:
        platform.close()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MLflow deprecates the stage API it calls
def test_the_uc_like_registry_refuses_stages_and_names_as_unity_catalog(uc_settings):
    registry = Registry.current()
    assert registry.uri == "databricks-uc" and not registry.has_stages
    assert isinstance(registry.client._get_registry_client().store, uc_registry.UnityCatalogLikeStore)
    with pytest.raises(MlflowException, match="three-level"):
        registry.client.create_registered_model("flat_name")
    registry.client.create_registered_model(MODEL)
    with pytest.raises(MlflowException, match="unsupported for models in the Unity Catalog"):
        registry.client.get_latest_versions(MODEL)
    assert uc_registry.UnityCatalogLikeStore.refused == [f"get_latest_versions({MODEL}, None)"]
    # the registry module's own stage step is a no-op there: no call reaches the store
    assert registry.transition_to(MODEL, 1) is False
    assert uc_registry.UnityCatalogLikeStore.refused == [f"get_latest_versions({MODEL}, None)"]


@pytest.mark.slow
def test_train_and_promote_on_unity_catalog_use_aliases_only(uc_settings):
    """Two trainings and two promotions: champion moves by alias, no stage API is ever called."""
    _put_training_export(uc_settings, seed=0)
    params = {"max_evals": 2, "families": "logreg"}
    first = run_stage("train", uc_settings, params)
    assert first["model_name"] == MODEL
    # tiny data: the gate decides on few positives, by ROC-AUC alone
    lenient = {"min_auc": 0.5, "min_eval_positives": 5, "metrics": "roc_auc"}
    promoted = run_stage("promote", uc_settings, lenient)
    assert promoted["promoted"] and promoted["champion_version"] == first["model_version"]
    assert promoted["stage"] is None  # no stage transition on Unity Catalog

    _put_training_export(uc_settings, seed=1)  # a new export: a new version
    second = run_stage("train", uc_settings, {**params, "seed": 7})
    assert second["model_version"] != first["model_version"]
    again = run_stage("promote", uc_settings, {**lenient, "tolerance": 0.49})
    assert again["promoted"] and again["champion_version"] == second["model_version"]

    assert uc_registry.UnityCatalogLikeStore.refused == []  # not one stage call
    registry = Registry.current()
    assert registry.aliases(MODEL) == {CHALLENGER: second["model_version"], CHAMPION: second["model_version"]}
    for v in registry.versions(MODEL):
        assert v.current_stage in (None, "None")  # nothing ever moved a stage
        # the UC-like store only registered it because the signature is complete; check it anyway
        info = mlflow.models.get_model_info(f"models:/{MODEL}/{v.version}")
        assert info.signature.inputs is not None and info.signature.outputs is not None
        assert {c.name for c in info.signature.outputs.inputs} >= {"propensity", "score", "percentile", "decile",
                                                                     "bucket"}
    history = registry.promotion_history(MODEL)
    assert [r["status"] for r in history] == ["passed", "passed"]
    assert all(r["registry_has_stages"] is False and r["stage"] is None for r in history)
    # the control: a stage call would not have gone unnoticed
    with pytest.raises(MlflowException, match="transition_model_version_stage' is unsupported"), \
            pytest.warns(FutureWarning):
        registry.client.transition_model_version_stage(MODEL, second["model_version"], "Production")
    assert len(uc_registry.UnityCatalogLikeStore.refused) == 1
