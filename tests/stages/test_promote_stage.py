"""The promote stage on a real sqlite registry: the gate, aliases, stages, dry run, history."""

from __future__ import annotations

import mlflow
import pytest

from cmle.errors import ParameterError, RegistryError
from cmle.registry import CHALLENGER, CHAMPION, Registry
from cmle.runner import run_stage
from cmle.stages.promote import promote
from tests.model.fabricate import bank, empty_mlflow_db, store  # noqa: F401
from tests.test_registry import UnityCatalogLikeClient

STRONG = "strong"  # every feature: holdout ROC-AUC ≈ 0.79
WEAK = "weak"  # ≈ 0.71: above the floor, well below the strong model
NOISE = "noise"  # ≈ 0.52: below the floor
METRICS = ("roc_auc", "pr_auc", "ece", "brier", "top_decile_lift")
LENIENT = {"tolerance": 0.2, "metrics": "roc_auc,pr_auc:0.5,ece:0.5,brier:0.5,top_decile_lift:5"}


@pytest.fixture
def name(settings):
    return settings.cloud.model_name


def _aliases(name):
    return Registry.current().aliases(name)


def test_first_model_is_promoted_when_it_passes_the_floor(store, settings, bank, name):
    v1 = bank.register(name, STRONG)
    out = run_stage("promote", settings, {})
    assert out["status"] == "passed" and out["promoted"] and out["champion_version"] == v1
    assert out["previous_champion"] is None and out["challenger_auc"] > 0.75
    registry = Registry.current()
    assert registry.aliases(name)[CHAMPION] == v1
    assert registry.version(name, v1).current_stage == "Production"  # sqlite has stages
    (record,) = registry.promotion_history(name)
    assert record["status"] == "passed" and record["mode"] == "enabled" and record["previous_champion"] is None
    assert record["min_auc"] == 0.65 and record["tolerance"] == 0.01 and record["stage"] == "Production"
    # which rows, how many positives: the challenger's whole holdout (no champion to exclude rows for)
    evaluation = record["evaluation"]
    assert evaluation["rows"] == out["evaluation_rows"] > 1000 and evaluation["positives"] >= 50
    assert evaluation["excluded_rows"] == 0 and "no champion" in evaluation["rule"]
    assert record["evidence"] == ["holdout"] and record["comparisons"] == []


def test_first_model_below_the_floor_is_not_promoted(store, settings, bank, name):
    bank.register(name, NOISE)
    out = run_stage("promote", settings, {})
    assert out["status"] == "failed" and not out["promoted"] and out["champion_version"] is None
    assert "below the floor 0.65" in out["reason"]
    assert CHAMPION not in _aliases(name)


def test_a_better_challenger_replaces_the_champion(store, settings, bank, name):
    v1 = bank.register(name, WEAK)
    run_stage("promote", settings, {})
    v2 = bank.register(name, STRONG)
    out = run_stage("promote", settings, {})
    assert out["status"] == "passed" and out["champion_version"] == v2 and out["previous_champion"] == v1
    assert out["challenger_auc"] > out["champion_auc"]
    registry = Registry.current()
    assert registry.version(name, v2).current_stage == "Production"
    assert registry.version(name, v1).current_stage == "Archived"
    record = registry.promotion_history(name)[-1]
    assert [c["metric"] for c in record["comparisons"]] == list(METRICS)
    for c in record["comparisons"]:  # every comparison with its interval and verdict
        assert c["passed"] and c["evidence"] == "holdout" and c["ci_low"] <= c["better_by"] <= c["ci_high"]
    roc = record["comparisons"][0]
    assert roc["better_by"] == pytest.approx(out["challenger_auc"] - out["champion_auc"], abs=1e-6)
    assert roc["ci_low"] > 0  # clearly better: the whole interval above zero


def test_a_worse_challenger_keeps_the_champion(store, settings, bank, name):
    v1 = bank.register(name, STRONG)
    run_stage("promote", settings, {})
    v2 = bank.register(name, WEAK)
    out = run_stage("promote", settings, {})
    assert out["status"] == "failed" and not out["promoted"] and out["champion_version"] == v1
    assert "worse than the champion beyond the tolerance, and not by chance" in out["reason"]
    # both scored on the same rows: the champion's AUC is measured there
    assert out["champion_auc"] > out["challenger_auc"] + 0.01
    failed = {c["metric"] for c in Registry.current().promotion_history(name)[-1]["comparisons"] if not c["passed"]}
    assert "roc_auc" in failed
    registry = Registry.current()
    assert registry.version(name, v2).current_stage == "None"
    assert registry.version(name, v1).current_stage == "Production"
    # wide enough tolerances let it through
    assert run_stage("promote", settings, LENIENT)["champion_version"] == v2


def test_dry_run_decides_and_records_but_changes_nothing(store, settings, bank, name):
    v1 = bank.register(name, STRONG)
    out = run_stage("promote", settings, {"mode": "dry_run"})
    assert out["status"] == "passed" and not out["promoted"] and out["champion_version"] is None
    registry = Registry.current()
    assert CHAMPION not in registry.aliases(name)
    assert registry.version(name, v1).current_stage == "None"
    (record,) = registry.promotion_history(name)
    assert record["mode"] == "dry_run" and record["status"] == "passed" and record["promoted"] is False


def test_unity_catalog_moves_aliases_and_never_calls_stages(store, ctx, bank, name):
    v1 = bank.register(name, WEAK)
    client = UnityCatalogLikeClient()
    uc = Registry(client=client, uri="databricks-uc")
    with mlflow.start_run():
        first = promote(ctx, registry=uc)
    v2 = bank.register(name, STRONG)
    with mlflow.start_run():
        second = promote(ctx, registry=uc)
        back = promote(ctx, registry=uc, rollback=True, reason="test")
    assert first["champion_version"] == v1 and second["champion_version"] == v2
    assert back["champion_version"] == v1 and back["stage"] is None
    assert first["stage"] is None and second["stage"] is None
    assert client.stage_calls == []
    assert all(v.current_stage == "None" for v in uc.versions(name))
    assert [h["registry_has_stages"] for h in uc.promotion_history(name)] == [False, False, False]


def test_promotion_history_reads_back_every_decision(store, settings, bank, name):
    v1 = bank.register(name, STRONG)
    run_stage("promote", settings, {})  # first model: passed
    v2 = bank.register(name, WEAK)
    run_stage("promote", settings, {})  # worse: failed
    run_stage("promote", settings, {"mode": "dry_run", **LENIENT})  # dry run: passed, nothing moves
    history = Registry.current().promotion_history(name)
    assert [(h["version"], h["mode"], h["status"], h["promoted"]) for h in history] == [
        (v1, "enabled", "passed", True), (v2, "enabled", "failed", False), (v2, "dry_run", "passed", False)]
    assert [h["previous_champion"] for h in history] == [None, v1, v1]
    assert all({"time", "challenger_auc", "champion_auc", "min_auc", "tolerance", "reason", "holdout_uri",
                "evaluation", "comparisons", "metrics", "confidence"} <= set(h) for h in history)
    assert history[1]["champion_auc"] > history[1]["challenger_auc"]
    description = Registry.current().version(name, v2).description
    assert "promotion enabled: FAILED" in description and "promotion dry_run: PASSED" in description


def test_promoting_the_champion_again_changes_nothing(store, settings, bank, name):
    v1 = bank.register(name, STRONG)
    run_stage("promote", settings, {})
    out = run_stage("promote", settings, {})
    assert out["status"] == "already_champion" and out["champion_version"] == v1
    assert len(Registry.current().promotion_history(name)) == 1


def test_a_missing_challenger_is_a_registry_error(store, settings, bank, name):
    with pytest.raises(RegistryError, match="does not exist"):
        run_stage("promote", settings, {})
    bank.register(name, STRONG, alias=None)
    with pytest.raises(RegistryError, match=f"no alias '{CHALLENGER}'.*run the train stage"):
        run_stage("promote", settings, {})


@pytest.mark.parametrize("params, words", [
    ({"min_auc": 0.3}, "min_auc"), ({"mode": "sometimes"}, "mode"), ({"metrics": "roc_auc,f1"}, "unknown metric"),
    ({"confidence": 0.3}, "confidence"), ({"approval_tag": "cmle.approval"}, "approval_tag"),
])
def test_parameters_are_checked(store, settings, params, words):
    with pytest.raises(ParameterError, match=words):
        run_stage("promote", settings, params)
