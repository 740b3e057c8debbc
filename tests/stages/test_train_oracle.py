"""The oracle the train stage compares with, held to the generator's own truth, both modes."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from cmle.model import metrics
from cmle.runner import run_stage
from cmle.synthetic import oracle
from cmle.synthetic.simulate import generate
from tests.model.fabricate import empty_mlflow_db, store  # noqa: F401

END = "2024-06-01"
DATA = {"profiles": 12_000, "weeks": 10, "seed": 5, "end_date": END}
QUICK = {"max_evals": 2, "families": "logreg", "framing": "pit"}


@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy"])
def test_the_logged_oracle_is_the_generators_truth(store, settings, legacy):  # noqa: F811
    run_stage("synthetic", settings, {**DATA, "legacy": legacy})
    feat = run_stage("featurize", settings, {"framing": "pit", "min_positives": 100})
    run_stage("export", settings, {})
    out = run_stage("train", settings, QUICK)

    # the generator's truth on the holdout rows the model was evaluated on
    run = mlflow.get_run(out["training_run_id"])
    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                                   artifact_path="holdout/holdout.parquet"))
    data = generate(DATA["profiles"], weeks=DATA["weeks"], end=END, seed=DATA["seed"], legacy=legacy)
    truth = oracle.snapshot_truth(data, feat["snapshot_ts"], feat["outcome_days"]).set_index("userid")
    assert len(truth) == feat["training_rows"]  # the same eligible profiles as the feature SQL
    truth = truth.loc[holdout["userid"]]
    assert np.array_equal(truth["label"].to_numpy(), holdout["label"].to_numpy())  # and the same labels
    truth_auc = metrics.roc_auc(truth["label"], truth["propensity"])

    logged = run.data.metrics
    if not legacy:
        assert logged["oracle_auc"] > 0.5
        assert logged["oracle_auc"] == pytest.approx(truth_auc, abs=1e-12)
        assert logged["auc_ratio"] == pytest.approx(logged["holdout_roc_auc"] / truth_auc, abs=1e-12)
        assert run.data.tags["cmle.oracle"] == "present"
        assert out["auc_ratio"] == pytest.approx(logged["auc_ratio"])
    else:
        # the latent propensity at T ranks legacy labels backwards: no oracle, no ratio, and why
        assert truth_auc < 0.5
        assert "oracle_auc" not in logged and "auc_ratio" not in logged and out["auc_ratio"] is None
        assert run.data.tags["cmle.oracle"].startswith("not valid, no ratio: the legacy generator")
        assert logged["holdout_roc_auc"] > 0.6  # the model still learns the legacy data
