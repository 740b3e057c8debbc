"""`monitor` end to end on the embedded platform: score, time moves forward (the same users,
with and without a behaviour shift), score again, monitor: drift, realised outcomes, the
trigger; and the error cases."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from cmle import naming, storage
from cmle.config import MonitorSettings, load_settings
from cmle.errors import NotFoundError
from cmle.monitoring import history
from cmle.registry import Registry
from cmle.runner import run_stage

BASE = {"profiles": 6000, "weeks": 10, "end_date": "2024-06-01", "seed": 5, "min_positives": 30,
        "min_negatives": 30, "max_evals": 2, "families": "hgb", "min_auc": 0.5, "framing": "pit",
        "skip": "explore,audience"}
AFTER = {**BASE, "extend_weeks": 2, "retrain": "auto", "skip": "explore,audience"}
# The synthetic population ages: users churn and none join, so even without a shift the
# scoring set 4 weeks after the training snapshot drifts (the largest feature PSI is about 0.5
# here, mostly recency). The test's rule puts the alert above that natural drift; one window
# decides, so a single shifted window makes retraining due.
RULE = MonitorSettings(psi_warn=0.5, psi_alert=1.0, retrain_metric="psi_max_feature", retrain_threshold=1.0,
                       retrain_windows=1, retrain_violations=1)
SHIFT = {"shift_events": 0.2, "shift_conversion": 0.05}  # activity collapses to a fifth


def _settings(folder: Path):
    os.chdir(folder)
    return dataclasses.replace(load_settings(env={}), monitor=RULE)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One scored population (main up to ingest), copied by each test that moves time forward."""
    folder = tmp_path_factory.mktemp("monitor-base")
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        mp.chdir(folder)
        out = run_stage("main", _settings(folder), BASE)
    return folder, out


def _clean_env(mp) -> None:
    """No CMLE_* or MLflow location variable of another test (MLflow's set_tracking_uri sets one)."""
    for key in list(os.environ):
        if key.startswith(("CMLE_", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT", "MLFLOW_REGISTRY_URI")):
            mp.delenv(key, raising=False)


def _copy(base_folder: Path, tmp_path: Path, monkeypatch) -> Path:
    target = tmp_path / "project"
    shutil.copytree(base_folder, target)
    _clean_env(monkeypatch)
    monkeypatch.chdir(target)
    return target


def test_the_first_monitoring_has_nothing_ripe_and_needs_no_retraining(base):
    _, out = base
    m = out["monitor"]
    assert m["ripe_runs"] == 0 and m["pending_runs"] == 1  # scored at the end of the data: the window is ahead
    assert m["psi_score"] is not None and m["retrain_due"] is False
    assert out["score"]["factors"] == 3


@pytest.mark.parametrize("shift", [{}, SHIFT], ids=["unshifted", "shifted"])
def test_time_moves_forward_then_drift_realised_outcomes_and_the_trigger(base, tmp_path, monkeypatch, shift):
    folder = _copy(base[0], tmp_path, monkeypatch)
    settings = _settings(folder)
    first = base[1]["score"]
    out = run_stage("main", settings, {**AFTER, **shift})
    assert out["train"].get("skipped") and "promote" not in out  # retrain=auto: no window said it was due
    assert out["synthetic"]["extension_weeks"] == 2 and out["synthetic"]["data_end"].startswith("2024-06-15")
    # the champion learnt 56-day features; the grown history made featurize use 70: main rebuilt
    # the scoring set at the champion's look-back before scoring (no train/score skew)
    assert out["featurize"]["lookback_days"] > base[1]["featurize"]["lookback_days"]
    assert out["featurize_for_score"]["lookback_days"] == base[1]["featurize"]["lookback_days"]
    m = out["monitor"]
    # the first score run's outcome window (2024-06-01, +14 days] has passed: realised outcomes
    assert m["ripe_runs"] == 1 and m["pending_runs"] == 1
    assert m["realised"]["score_export_time"] == first["export_time"]
    assert m["realised_profiles"] == first["rows"] and 0 < m["realised_positives"] < first["rows"]
    assert 0.5 < m["realised_auc"] <= 1.0
    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("cmle").experiment_id],
                             "tags.`cmle.stage` = 'monitor'", order_by=["attributes.start_time DESC"])[0]
    assert run.data.tags[history.DUE_TAG] == str(m["retrain_due"]).lower()
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                            artifact_path="monitor/expected_vs_actual.csv"))
    buckets = table[table["group"] == "bucket"]
    assert buckets["profiles"].sum() == first["rows"] and (buckets["ci_low"] <= buckets["actual_rate"]).all()
    drift = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="monitor/drift.csv"))
    assert {"score"} < set(drift["variable"]) and drift["psi"].notna().all()
    # the promotion gate's view: the realised evidence of the version that scored the first run
    evidence = history.realised_evidence(first["model_name"], first["model_version"])
    assert evidence["realised_auc"] == pytest.approx(m["realised_auc"]) and evidence["profiles"] == first["rows"]
    assert evidence["window_end"].startswith("2024-06-15")
    if shift:
        assert m["drift_level"] == "alert" and m["psi_max_feature"] > 1.0 and m["retrain_due"] is True
        assert m["features_alert"] >= 1
        # the next main trains: retraining is due
        again = run_stage("main", settings, {**AFTER, **shift, "skip": "explore,audience,monitor"})
        assert not again["train"].get("skipped")
    else:
        assert m["psi_max_feature"] < 1.0 and m["drift_level"] != "alert" and m["retrain_due"] is False


def test_errors_say_what_to_do(settings, mlflow_store, base, tmp_path, monkeypatch):
    with pytest.raises(NotFoundError, match="run `score` first"):
        run_stage("monitor", settings, {})
    folder = _copy(base[0], tmp_path, monkeypatch)
    s = _settings(folder)
    name, version = base[1]["score"]["model_name"], base[1]["score"]["model_version"]
    mlflow.set_tracking_uri(s.mlflow.tracking_uri)
    Registry.current()  # a version trained before references were stored: monitor says so, exit 0
    mlflow.MlflowClient().delete_model_version_tag(name, version, "cmle.reference_uri")
    out = run_stage("monitor", s, {})
    assert "no stored drift reference" in out["drift_note"] and out.get("psi_score") is None
    assert out["pending_runs"] == 1  # not ripe yet: reported, not an error
    with pytest.raises(NotFoundError, match="exportTime=20000101000000"):
        run_stage("monitor", s, {"export_time": "20000101000000"})


def test_score_refuses_features_over_another_look_back_than_the_model(base, tmp_path, monkeypatch):
    from cmle.errors import DataCheckError

    folder = _copy(base[0], tmp_path, monkeypatch)
    settings = _settings(folder)
    data = {k: v for k, v in AFTER.items() if k in ("profiles", "weeks", "end_date", "seed", "extend_weeks")}
    run_stage("synthetic", settings, data)
    built = run_stage("featurize", settings, {"min_positives": 30, "min_negatives": 30, "framing": "pit"})
    run_stage("export", settings, {})
    trained = base[1]["featurize"]["lookback_days"]
    assert built["lookback_days"] != trained
    with pytest.raises(DataCheckError, match=f"trained on features over {trained} days.*cover "
                                             f"{built['lookback_days']} days.*--lookback_days {trained}"):
        run_stage("score", settings, {})


def test_the_gate_compares_champion_and_shadow_challenger_on_what_really_happened(base, tmp_path, monkeypatch):
    """The monitoring history is the gate's realised evidence: a challenger scored in shadow on
    the champion's scoring set; time moves past the outcome window; monitor; promote compares
    both on the realised outcomes of that window too."""
    folder = _copy(base[0], tmp_path, monkeypatch)
    settings = _settings(folder)
    first = base[1]["score"]
    trained = run_stage("train", settings, {"retrain": "true", "seed": 7, "max_evals": 2, "families": "logreg",
                                            "framing": "pit"})
    shadow = run_stage("score", settings, {"model": "challenger"})
    assert shadow["model_version"] == trained["model_version"] != first["model_version"]
    run_stage("ingest", settings, {"export_time": shadow["export_time"]})
    data = {k: v for k, v in AFTER.items() if k in ("profiles", "weeks", "end_date", "seed", "extend_weeks")}
    run_stage("synthetic", settings, data)
    assert run_stage("monitor", settings, {})["ripe_runs"] == 2
    mine = history.realised_outcomes(first["model_name"], trained["model_version"])
    theirs = history.realised_outcomes(first["model_name"], first["model_version"])
    assert [o.window for o in mine] == [o.window for o in theirs] and len(mine) == 1
    assert mine[0].rows == shadow["rows"] and theirs[0].rows == first["rows"] and 0 < theirs[0].positives
    out = run_stage("promote", settings, {"min_eval_positives": 10, "min_auc": 0.5})
    assert out["evidence"] == ["holdout", f"realised:{mine[0].window}"]
    record = Registry.current().promotion_history(first["model_name"])[-1]
    assert record["realised"]["used"] and record["realised"]["champion"]["positives"] == theirs[0].positives
    assert any(c["evidence"].startswith("realised:") for c in record["comparisons"])
