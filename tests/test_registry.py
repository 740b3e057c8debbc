"""The registry adapter on a real sqlite registry: aliases, resolution, stages, history."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cmle.errors import RegistryError
from cmle.registry import CHAMPION, Registry, registry_has_stages
from tests.model.fabricate import empty_mlflow_db, store  # noqa: F401  (fixtures)

NAME = "registry_test_model"


class UnityCatalogLikeClient(MlflowClient):
    """A real client whose stage methods refuse as Unity Catalog does, and count the attempts."""

    stage_calls: list

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_calls = []

    def transition_model_version_stage(self, *args, **kwargs):
        self.stage_calls.append(("transition_model_version_stage", args, kwargs))
        raise MlflowException("Method 'transition_model_version_stage' is unsupported for models in the Unity "
                              "Catalog. We recommend using aliases instead of stages.")

    def get_latest_versions(self, *args, **kwargs):
        self.stage_calls.append(("get_latest_versions", args, kwargs))
        raise MlflowException("Method 'get_latest_versions' is unsupported for models in the Unity Catalog.")


@pytest.fixture
def registry(store):
    return Registry.current()


def _versions(registry: Registry, n: int, tmp_path) -> list[str]:
    registry.client.create_registered_model(NAME)
    return [str(registry.client.create_model_version(NAME, source=str(tmp_path)).version) for _ in range(n)]


@pytest.mark.parametrize("uri, stages", [
    ("sqlite:///mlflow.db", True), ("databricks", True), ("databricks://profile", True),
    ("http://localhost:5000", True), ("file:///tmp/mlruns", True),
    ("databricks-uc", False), ("databricks-uc://profile", False), ("uc:http://localhost:8080", False),
])
def test_stage_support_is_decided_by_the_registry_uri(uri, stages):
    assert registry_has_stages(uri) is stages


def test_current_follows_mlflows_registry_uri(registry):
    assert registry.uri == mlflow.get_registry_uri() and registry.has_stages


def test_resolve_alias_version_and_latest(registry, tmp_path):
    v1, v2, v3 = _versions(registry, 3, tmp_path)
    registry.set_alias(NAME, CHAMPION, v2)
    assert str(registry.resolve(NAME, "champion").version) == v2
    assert str(registry.resolve(NAME, v1).version) == v1
    assert str(registry.resolve(NAME, "latest").version) == v3
    assert registry.aliases(NAME) == {"champion": v2}
    assert registry.by_alias(NAME, "challenger", required=False) is None


def test_missing_model_alias_and_version_are_registry_errors(registry, tmp_path):
    with pytest.raises(RegistryError, match="does not exist.*run the train stage"):
        registry.resolve("no_such_model", "champion")
    _versions(registry, 1, tmp_path)
    registry.set_alias(NAME, CHAMPION, "1")
    with pytest.raises(RegistryError, match=r"no alias 'challenger' \(aliases: champion -> v1\)"):
        registry.resolve(NAME, "challenger")
    with pytest.raises(RegistryError, match="no version 9"):
        registry.resolve(NAME, "9")


def test_find_by_tag_filters_client_side(registry, tmp_path):
    v1, v2 = _versions(registry, 2, tmp_path)
    registry.set_tags(NAME, v1, {"cmle.fingerprint": "abc"})
    registry.set_tags(NAME, v2, {"cmle.fingerprint": "def"})
    assert str(registry.find_by_tag(NAME, "cmle.fingerprint", "def").version) == v2
    assert registry.find_by_tag(NAME, "cmle.fingerprint", "zzz") is None


def test_transition_archives_the_previous_production_version(registry, tmp_path):
    v1, v2 = _versions(registry, 2, tmp_path)
    assert registry.transition_to(NAME, v1) is True
    assert registry.transition_to(NAME, v2) is True
    assert registry.version(NAME, v2).current_stage == "Production"
    assert registry.version(NAME, v1).current_stage == "Archived"


def test_no_stage_call_on_unity_catalog(store, tmp_path):
    client = UnityCatalogLikeClient()
    uc = Registry(client=client, uri="databricks-uc")
    client.create_registered_model(NAME)
    version = client.create_model_version(NAME, source=str(tmp_path)).version
    assert not uc.has_stages
    assert uc.transition_to(NAME, version) is False
    uc.set_alias(NAME, CHAMPION, version)  # aliases still work
    assert client.stage_calls == []
    assert uc.version(NAME, version).current_stage == "None"
    # the simulation refuses like UC does if anything called it anyway
    with pytest.raises(MlflowException, match="unsupported for models in the Unity Catalog"):
        client.transition_model_version_stage(NAME, version, "Production")


def test_promotion_records_read_back_in_order(registry, tmp_path):
    v1, v2 = _versions(registry, 2, tmp_path)
    first = {"time": "2024-03-01T10:00:00+00:00", "mode": "enabled", "status": "passed", "challenger_auc": 0.8,
             "previous_champion": None, "champion_auc": None, "min_auc": 0.65, "tolerance": 0.01, "reason": "first"}
    second = {**first, "time": "2024-03-02T10:00:00+00:00", "status": "failed", "previous_champion": v1,
              "champion_auc": 0.8, "challenger_auc": 0.7, "reason": "worse"}
    third = {**second, "time": "2024-03-03T10:00:00+00:00", "mode": "dry_run", "status": "passed", "reason": "dry"}
    registry.record_promotion(NAME, v1, first)
    registry.record_promotion(NAME, v2, second)
    registry.record_promotion(NAME, v2, third)
    history = registry.promotion_history(NAME)
    assert [(h["version"], h["status"], h["reason"]) for h in history] == [
        (v1, "passed", "first"), (v2, "failed", "worse"), (v2, "passed", "dry")]
    description = registry.version(NAME, v2).description
    assert description.count("promotion") == 2 and "FAILED" in description and "champion v1 0.8000" in description
    assert registry.version(NAME, v2).tags["cmle.promotion_status"] == "passed"


def test_a_record_too_long_for_a_tag_is_refused(registry, tmp_path):
    (v1,) = _versions(registry, 1, tmp_path)
    with pytest.raises(ValueError, match="5000"):
        registry.record_promotion(NAME, v1, {"time": "2024-03-01T10:00:00+00:00", "reason": "x" * 6000})
