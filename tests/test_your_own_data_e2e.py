"""Bring your own data, end to end on the embedded platform, in-process:

* a Luma-style retail export (another schema: identityMap ECID, productListItems, a tenant
  order value, a CRM profiles export) goes through `load`, `explore` (discovery and a
  starter spec) and `main` with conf/models/retail.yaml; the model beats the trivial
  baselines; the starter spec itself trains too;
* a churn goal (does_not_occur) runs `main` on the synthetic data (explore and audience
  skipped: nothing there depends on the goal's direction).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cmle.modelspec import load_spec
from cmle.runner import run_stage
from cmle.synthetic import retail

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parents[1] / "conf" / "models"
FAST = {"max_evals": 2, "families": "logreg,hgb", "min_auc": 0.5, "max_tune_rows": 3000}


def _params(**extra):
    return FAST | extra


def test_retail_export_to_scores_and_a_starter_spec(settings, tmp_cwd):
    retail.write_export(tmp_cwd / "export", users=2500, weeks=13, seed=21, bad_rows=0.01)
    spec = str(MODELS / "retail.yaml")
    loaded = run_stage("load", settings, {"files": str(tmp_cwd / "export" / "events"), "spec": spec})
    assert loaded["rows_rejected"] > 0 and set(loaded["rejected"]) == {"missing identity", "missing timestamp"}
    run_stage("load", settings, {"files": str(tmp_cwd / "export" / "profiles"), "kind": "profiles", "spec": spec})

    found = run_stage("explore", settings, {"dataset": "Luma web events", "write_spec": "conf/models/luma.yaml"})
    assert found["candidate_goals"][0]["goal"] == "commerce.purchases"
    starter = load_spec(tmp_cwd / "conf" / "models" / "luma.yaml")  # it validates
    assert starter.events.identity.namespace == "ECID" and starter.goal.event_types == ("commerce.purchases",)

    out = run_stage("main", settings, _params(spec=spec, min_positives=30, min_negatives=30))
    assert out["synthetic"]["skipped"] is True
    f = out["featurize"]
    assert f["training_features"] > 40 and f["outcome_days"] == 30 and f["lookback_days"] == 60
    t = out["train"]
    assert t["model_name"] == "cmle_retail_purchase_model"
    assert t["holdout_roc_auc"] > t["baseline_roc_auc"] + 0.03  # beats ranking by recent activity
    assert t["log_loss_skill"] > 0.05  # and the base rate
    assert out["promote"]["promoted"] and out["ingest"]["identity_namespace"] == "ECID"
    assert out["ingest"]["records"] == f["scoring_rows"] and out["audience"]["scored_profiles"] == f["scoring_rows"]

    # the starter spec, unedited, builds its sets too
    again = run_stage("featurize", settings, {"spec": "conf/models/luma.yaml", "min_positives": 30,
                                              "min_negatives": 30})
    assert again["training_positives"] >= 30 and again["outcome_days"] == starter.goal.window_days


def test_churn_on_the_synthetic_data(settings):
    spec = str(MODELS / "churn.yaml")
    out = run_stage("main", settings, _params(spec=spec, profiles=2000, end_date="2024-06-01", min_positives=30,
                                              min_negatives=30, skip="explore,audience"))
    f, t = out["featurize"], out["train"]
    assert "cmle_training_rows" not in f  # the notebooks' framing is the subscription goal's only
    assert 0 < f["training_positives"] < f["training_rows"]
    assert t["model_name"] == "cmle_churn_model" and t["holdout_roc_auc"] > 0.6
    assert t["auc_ratio"] is None  # the synthetic oracle predicts subscription, not churn
    assert out["ingest"]["records"] == f["scoring_rows"]
