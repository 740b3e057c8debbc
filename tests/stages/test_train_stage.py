"""The train stage end to end on the embedded platform and a real sqlite MLflow store."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from cmle import naming
from cmle.columns import OUTPUT_COLUMNS
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.model import fit
from cmle.registry import CHALLENGER, Registry
from cmle.runner import run_stage
from cmle.stages import train as train_stage
from cmle.synthetic.oracle import oracle_path
from tests.model.fabricate import (arrow, empty_mlflow_db, oracle_frame, store,  # noqa: F401
                                   training_frame)

QUICK = {"max_evals": 3, "families": "logreg,hgb"}


def put_training_set(platform, settings, frame: pd.DataFrame, framing: str = "pit") -> str:
    """Put ``frame`` on the platform as the training set and export it; returns the export URL."""
    ds = platform.put_table(naming.training_set(settings.platform.owner, framing), arrow(frame))
    return platform.export_dataset(ds.id, settings.cloud.export_path).url


def write_oracle(settings, frame: pd.DataFrame) -> None:
    path = oracle_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    oracle_frame(frame).to_parquet(path, index=False)


@pytest.fixture
def frame():
    return training_frame(2500, seed=0, shift=0.8)


def _artifacts(run_id: str, path: str = "") -> set[str]:
    client = MlflowClient()
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(run_id, item.path) if item.is_dir else {item.path}
    return found


def test_train_registers_a_challenger_and_logs_everything(store, platform, settings, frame):
    url = put_training_set(platform, settings, frame)
    cmle_frame = frame.assign(label=np.random.default_rng(1).permutation(frame["label"].to_numpy()))
    put_training_set(platform, settings, cmle_frame, framing="cmle")
    write_oracle(settings, frame)

    out = run_stage("train", settings, QUICK)

    name = settings.cloud.model_name
    assert out["model_name"] == name and out["training_export"] == url and out["reused"] is False
    registry = Registry.current()
    version = registry.by_alias(name, CHALLENGER)
    assert str(version.version) == out["model_version"]
    tags = version.tags
    assert float(tags["cmle.holdout_roc_auc"]) == pytest.approx(out["holdout_roc_auc"], abs=1e-6)
    assert tags["cmle.export_url"] == url and tags["cmle.framing"] == "pit" and tags["cmle.seed"] == "42"
    assert {"cmle.fingerprint", "cmle.holdout_ece", "cmle.oracle_auc", "cmle.auc_ratio",
            "cmle.holdout_uri"} <= set(tags)
    assert "Holdout ROC-AUC" in version.description

    model = mlflow.pyfunc.load_model(out["model_uri"])
    signature = model.metadata.signature
    assert signature.inputs is not None and [c.name for c in signature.outputs.inputs] == list(OUTPUT_COLUMNS)

    run = mlflow.get_run(out["training_run_id"])
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                                  output_format="list")
    assert len(children) == 3 and all("val_roc_auc" in c.data.metrics for c in children)
    m = run.data.metrics
    assert {"holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier", "holdout_ece",
            "holdout_lift_decile_1", "oracle_auc", "model_auc", "auc_ratio", "train_seconds"} <= set(m)
    assert m["model_auc"] == pytest.approx(m["holdout_roc_auc"])
    assert m["auc_ratio"] == pytest.approx(m["model_auc"] / m["oracle_auc"])
    assert 0.85 < m["auc_ratio"] < 1.1
    assert {"cmle_framing_roc_auc", "cmle_framing_own_holdout_roc_auc", "cmle_framing_ece"} <= set(m)
    assert m["cmle_framing_roc_auc"] < m["holdout_roc_auc"]  # trained on shuffled labels
    assert run.data.params["lineage.export_time"] == url.rsplit("=", 1)[1]
    artifacts = _artifacts(run.info.run_id)
    assert {"holdout/holdout.parquet", "tuning/trials.csv", "evaluation/lift_gains_by_decile.csv"} <= artifacts
    assert {f"evaluation/{f}.png" for f in ("roc_curve", "precision_recall_curve", "calibration_curve",
                                           "lift_gains", "score_distribution", "feature_importance")} <= artifacts

    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(tags["cmle.holdout_uri"]))
    assert len(holdout) == m["holdout_rows"] and set(holdout["userid"]) <= set(frame["userid"])


def test_a_rerun_reuses_the_version_and_retrain_trains_again(store, platform, settings, frame):
    put_training_set(platform, settings, frame)
    first = run_stage("train", settings, QUICK)
    again = run_stage("train", settings, QUICK)
    assert again["reused"] is True and again["model_version"] == first["model_version"]
    assert again["holdout_roc_auc"] == pytest.approx(first["holdout_roc_auc"], abs=1e-6)
    fresh = run_stage("train", settings, {**QUICK, "retrain": True})
    assert fresh["reused"] is False and int(fresh["model_version"]) == int(first["model_version"]) + 1
    assert fresh["holdout_roc_auc"] == pytest.approx(first["holdout_roc_auc"])  # seeded: the same model
    assert str(Registry.current().by_alias(settings.cloud.model_name, CHALLENGER).version) == fresh["model_version"]
    # no oracle file (as on real AEP data): a note, no oracle metrics
    run = mlflow.get_run(first["training_run_id"])
    assert run.data.tags["cmle.oracle"].startswith("absent") and "oracle_auc" not in run.data.metrics
    assert run.data.tags["cmle.cmle_framing"].startswith("skipped")


def test_the_holdout_does_not_influence_model_selection(store, platform, settings, frame, monkeypatch):
    """Shuffle the holdout labels after the split: every selection result stays the same."""
    put_training_set(platform, settings, frame)
    honest = run_stage("train", settings, {**QUICK, "framing": "pit"})
    real_split = fit.split

    def split_with_shuffled_holdout(*args, **kwargs):
        parts = real_split(*args, **kwargs)
        labels = np.random.default_rng(0).permutation(parts.holdout["label"].to_numpy())
        return fit.Split(parts.train, parts.valid, parts.holdout.assign(label=labels))

    monkeypatch.setattr(train_stage.fit, "split", split_with_shuffled_holdout)
    shuffled = run_stage("train", settings, {**QUICK, "framing": "pit", "retrain": True})

    def trials(out):
        path = mlflow.artifacts.download_artifacts(run_id=out["training_run_id"], artifact_path="tuning/trials.csv")
        return pd.read_csv(path).drop(columns=["run_id", "seconds"])

    pd.testing.assert_frame_equal(trials(honest), trials(shuffled))
    runs = [mlflow.get_run(o["training_run_id"]).data for o in (honest, shuffled)]
    assert {k: v for k, v in runs[0].params.items() if k.startswith("best.")} == \
           {k: v for k, v in runs[1].params.items() if k.startswith("best.")}
    assert abs(honest["holdout_roc_auc"] - 0.5) > 0.15 and abs(shuffled["holdout_roc_auc"] - 0.5) < 0.1


def test_without_a_training_export_the_error_says_what_to_run(store, settings):
    with pytest.raises(NotFoundError, match="run `featurize` then `export`"):
        run_stage("train", settings, {})


def test_bad_parameters_fail_before_any_work(store, settings):
    with pytest.raises(ParameterError, match="families"):
        run_stage("train", settings, {"families": "logreg,xgboost"})
    with pytest.raises(ParameterError, match="holdout_fraction"):
        run_stage("train", settings, {"holdout_fraction": 0.6})
    with pytest.raises(ParameterError, match="metric"):
        run_stage("train", settings, {"metric": "accuracy"})


@pytest.mark.parametrize("omp, load, expected", [("2", 0.3, 2), ("2", 1.2, 1), ("2", 7.0, 1), ("1", 0.0, 1),
                                                 ("", 0.0, 2), ("x", 0.5, 2)])
def test_threads_are_capped_and_drop_on_a_busy_machine(monkeypatch, omp, load, expected):
    monkeypatch.setattr(train_stage.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert train_stage.cpu_threads(load) == expected


# --- governed promotion: stable holdout, label checks, leakage (issue 14) ----------------------
TINY = {"max_evals": 1, "families": "logreg", "framing": "pit"}


def _holdout_ids(out) -> set:
    path = mlflow.artifacts.download_artifacts(run_id=out["training_run_id"], artifact_path="holdout/holdout.parquet")
    return set(pd.read_parquet(path)["userid"])


def test_the_holdout_is_the_same_profiles_for_every_retrain(store, platform, settings, frame):
    put_training_set(platform, settings, frame)
    first = run_stage("train", settings, {**TINY, "seed": 1})
    second = run_stage("train", settings, {**TINY, "seed": 2})
    assert second["model_version"] != first["model_version"]
    assert _holdout_ids(first) == _holdout_ids(second)
    registry = Registry.current()
    salt = registry.model_tags(settings.cloud.model_name)["cmle.split_salt"]
    split = json.loads(registry.version(settings.cloud.model_name, first["model_version"]).tags["cmle.split"])
    assert split == {"scheme": "profile_hash_v1", "salt": salt, "holdout_fraction": 0.2}


def test_a_leaky_feature_is_caught_and_the_challenger_refused(store, platform, settings, frame):
    rng = np.random.default_rng(0)
    leaky = frame.assign(days_to_subscription=np.where(frame["label"] == 1, rng.integers(1, 28, len(frame)), -1))
    put_training_set(platform, settings, leaky)
    out = run_stage("train", settings, TINY)
    assert "days_to_subscription (ROC-AUC 1.000) > 0.9" in out["leakage"]
    name = settings.cloud.model_name
    tag = json.loads(Registry.current().version(name, out["model_version"]).tags["cmle.leakage"])
    assert tag["features"] == {"days_to_subscription": 1.0} and tag["leakage_auc"] == 0.9
    refused = run_stage("promote", settings, {"min_eval_positives": 10})
    assert refused["status"] == "failed" and not refused["promoted"] and refused["champion_version"] is None
    assert "flagged" in refused["reason"] and "days_to_subscription" in refused["reason"]
    assert "allow_leakage=true" in refused["reason"]
    allowed = run_stage("promote", settings, {"min_eval_positives": 10, "allow_leakage": True, "by": "ann",
                                              "reason": "the field is set before the snapshot in our source"})
    assert allowed["promoted"]
    override = Registry.current().promotion_history(name)[-1]["override"]
    assert override["by"] == "ann" and "days_to_subscription" in override["leakage"]
    assert override["reason"] == "the field is set before the snapshot in our source"


def test_label_problems_stop_train_before_anything_is_fitted(store, platform, settings, frame):
    put_training_set(platform, settings, frame[frame["label"] == 1])
    with pytest.raises(DataCheckError, match="every one of .* rows is positive: the label join kept only"):
        run_stage("train", settings, TINY)
    # an export that lost rows on the way: rows in (the set featurize wrote) != rows out
    url = put_training_set(platform, settings, frame)
    from pathlib import Path

    (part,) = [p for p in Path(url).glob("*.parquet")]
    pd.read_parquet(part).iloc[25:].to_parquet(part, index=False)
    with pytest.raises(DataCheckError, match=f"featurize counted {len(frame)} rows and train read {len(frame) - 25}"):
        run_stage("train", settings, TINY)
