"""The promote stage on a real sqlite registry: the gate, aliases, stages, dry run, history."""

from __future__ import annotations

import mlflow
import pytest

from cmle.errors import RegistryError
from cmle.registry import CHALLENGER, CHAMPION, Registry
from cmle.runner import run_stage
from cmle.stages.promote import promote
from tests.model.fabricate import empty_mlflow_db, register_version, store, training_frame  # noqa: F401
from tests.test_registry import UnityCatalogLikeClient

STRONG = None  # every feature: holdout ROC-AUC ≈ 0.79
WEAK = ["emails_opened"]  # ≈ 0.71: above the floor, well below the strong model
NOISE = ["age"]  # ≈ 0.52: below the floor


@pytest.fixture(scope="module")
def frame():
    return training_frame(4000, seed=11, shift=1.0)


@pytest.fixture
def name(settings):
    return settings.cloud.model_name


def _aliases(name):
    return Registry.current().aliases(name)


def test_first_model_is_promoted_when_it_passes_the_floor(store, settings, frame, name):
    v1 = register_version(name, frame, STRONG)
    out = run_stage("promote", settings, {})
    assert out["status"] == "passed" and out["promoted"] and out["champion_version"] == v1
    assert out["previous_champion"] is None and out["challenger_auc"] > 0.75
    registry = Registry.current()
    assert registry.aliases(name)[CHAMPION] == v1
    assert registry.version(name, v1).current_stage == "Production"  # sqlite has stages
    (record,) = registry.promotion_history(name)
    assert record["status"] == "passed" and record["mode"] == "enabled" and record["previous_champion"] is None
    assert record["min_auc"] == 0.65 and record["tolerance"] == 0.01 and record["stage"] == "Production"


def test_first_model_below_the_floor_is_not_promoted(store, settings, frame, name):
    register_version(name, frame, NOISE)
    out = run_stage("promote", settings, {})
    assert out["status"] == "failed" and not out["promoted"] and out["champion_version"] is None
    assert "below the floor 0.65" in out["reason"]
    assert CHAMPION not in _aliases(name)


def test_a_better_challenger_replaces_the_champion(store, settings, frame, name):
    v1 = register_version(name, frame, WEAK)
    run_stage("promote", settings, {})
    v2 = register_version(name, frame, STRONG)
    out = run_stage("promote", settings, {})
    assert out["status"] == "passed" and out["champion_version"] == v2 and out["previous_champion"] == v1
    assert out["challenger_auc"] > out["champion_auc"]
    registry = Registry.current()
    assert registry.version(name, v2).current_stage == "Production"
    assert registry.version(name, v1).current_stage == "Archived"


def test_a_worse_challenger_keeps_the_champion(store, settings, frame, name):
    v1 = register_version(name, frame, STRONG)
    run_stage("promote", settings, {})
    v2 = register_version(name, frame, WEAK)
    out = run_stage("promote", settings, {})
    assert out["status"] == "failed" and not out["promoted"] and out["champion_version"] == v1
    assert "more than the tolerance 0.01" in out["reason"]
    # both scored on the challenger's stored holdout: the champion's AUC is re-measured there
    assert out["champion_auc"] > out["challenger_auc"] + 0.01
    registry = Registry.current()
    assert registry.version(name, v2).current_stage == "None"
    assert registry.version(name, v1).current_stage == "Production"
    # a wide enough tolerance lets it through
    assert run_stage("promote", settings, {"tolerance": 0.2})["champion_version"] == v2


def test_dry_run_decides_and_records_but_changes_nothing(store, settings, frame, name):
    v1 = register_version(name, frame, STRONG)
    out = run_stage("promote", settings, {"mode": "dry_run"})
    assert out["status"] == "passed" and not out["promoted"] and out["champion_version"] is None
    registry = Registry.current()
    assert CHAMPION not in registry.aliases(name)
    assert registry.version(name, v1).current_stage == "None"
    (record,) = registry.promotion_history(name)
    assert record["mode"] == "dry_run" and record["status"] == "passed" and record["promoted"] is False


def test_unity_catalog_moves_aliases_and_never_calls_stages(store, ctx, frame, name):
    v1 = register_version(name, frame, WEAK)
    client = UnityCatalogLikeClient()
    uc = Registry(client=client, uri="databricks-uc")
    with mlflow.start_run():
        first = promote(ctx, registry=uc)
    v2 = register_version(name, frame, STRONG)
    with mlflow.start_run():
        second = promote(ctx, registry=uc)
    assert first["champion_version"] == v1 and second["champion_version"] == v2
    assert first["stage"] is None and second["stage"] is None
    assert client.stage_calls == []
    assert all(v.current_stage == "None" for v in uc.versions(name))
    assert [h["registry_has_stages"] for h in uc.promotion_history(name)] == [False, False]


def test_promotion_history_reads_back_every_decision(store, settings, frame, name):
    v1 = register_version(name, frame, STRONG)
    run_stage("promote", settings, {})  # first model: passed
    v2 = register_version(name, frame, WEAK)
    run_stage("promote", settings, {})  # worse: failed
    run_stage("promote", settings, {"mode": "dry_run", "tolerance": 0.2})  # dry run: passed, nothing moves
    history = Registry.current().promotion_history(name)
    assert [(h["version"], h["mode"], h["status"], h["promoted"]) for h in history] == [
        (v1, "enabled", "passed", True), (v2, "enabled", "failed", False), (v2, "dry_run", "passed", False)]
    assert [h["previous_champion"] for h in history] == [None, v1, v1]
    assert all({"time", "challenger_auc", "champion_auc", "min_auc", "tolerance", "reason", "holdout_uri"} <= set(h)
               for h in history)
    assert history[1]["champion_auc"] > history[1]["challenger_auc"]
    description = Registry.current().version(name, v2).description
    assert "promotion enabled: FAILED" in description and "promotion dry_run: PASSED" in description


def test_promoting_the_champion_again_changes_nothing(store, settings, frame, name):
    v1 = register_version(name, frame, STRONG)
    run_stage("promote", settings, {})
    out = run_stage("promote", settings, {})
    assert out["status"] == "already_champion" and out["champion_version"] == v1
    assert len(Registry.current().promotion_history(name)) == 1


def test_a_missing_challenger_is_a_registry_error(store, settings, frame, name):
    with pytest.raises(RegistryError, match="does not exist"):
        run_stage("promote", settings, {})
    register_version(name, frame, STRONG, alias=None)
    with pytest.raises(RegistryError, match=f"no alias '{CHALLENGER}'.*run the train stage"):
        run_stage("promote", settings, {})


def test_thresholds_are_checked(store, settings):
    from cmle.errors import ParameterError

    with pytest.raises(ParameterError, match="min_auc"):
        run_stage("promote", settings, {"min_auc": 0.3})
    with pytest.raises(ParameterError, match="mode"):
        run_stage("promote", settings, {"mode": "sometimes"})
