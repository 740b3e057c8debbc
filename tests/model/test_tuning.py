"""Hyperparameter search: nested trial runs, determinism, families, failures."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from cmle.errors import ParameterError
from cmle.model import fit, space, tuning
from cmle.model.preprocess import FeatureSpec
from tests.model.fabricate import empty_mlflow_db, store, training_frame  # noqa: F401


@pytest.fixture(scope="module")
def data():
    frame = training_frame(1500, seed=3)
    parts = fit.split(frame, 0.2, 0.2, seed=0)
    spec = FeatureSpec.infer(frame)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    return spec, xy(parts.train), xy(parts.valid)


def test_each_trial_is_a_nested_run_with_its_params_and_metrics(store, data):
    spec, train, valid = data
    with mlflow.start_run(run_name="parent") as parent:
        result = tuning.tune(train, valid, spec, ("logreg", "rf", "hgb"), max_evals=4, seed=1)
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  output_format="list")
    assert len(children) == 4 == len(result.trials)
    by_id = {r.info.run_id: r for r in children}
    for trial in result.trials:
        run = by_id[trial.run_id]
        assert run.data.params == space.loggable(trial.params)  # exactly ours: autolog is off
        assert run.data.metrics["val_roc_auc"] == pytest.approx(trial.score)
        assert "fit_seconds" in run.data.metrics and run.info.status == "FINISHED"
    assert mlflow.search_logged_models(output_format="list") == []  # no model per trial
    assert result.best.score == max(t.score for t in result.trials)


def test_the_same_seed_gives_the_same_search(data):
    spec, train, valid = data
    a = tuning.tune(train, valid, spec, ("logreg",), max_evals=3, seed=7, log_runs=False)
    b = tuning.tune(train, valid, spec, ("logreg",), max_evals=3, seed=7, log_runs=False)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]


def test_only_the_chosen_families_are_tried(data):
    spec, train, valid = data
    result = tuning.tune(train, valid, spec, ("hgb",), max_evals=2, seed=0, log_runs=False)
    assert {t.params["family"] for t in result.trials} == {"hgb"}


def test_log_loss_is_minimised(data):
    spec, train, valid = data
    result = tuning.tune(train, valid, spec, ("logreg",), max_evals=3, seed=0, metric="log_loss", log_runs=False)
    assert result.best.score == min(t.score for t in result.trials)


def test_a_failing_trial_is_recorded_and_skipped(data, monkeypatch):
    spec, train, valid = data
    real = space.build_estimator
    calls = []

    def flaky(params, *args, **kwargs):
        calls.append(params)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(params, *args, **kwargs)

    monkeypatch.setattr(space, "build_estimator", flaky)
    result = tuning.tune(train, valid, spec, ("logreg",), max_evals=3, seed=0, log_runs=False)
    assert [t.status for t in result.trials] == ["failed", "ok", "ok"]
    assert "boom" in result.trials[0].error and result.best.status == "ok"


def test_bad_parameters_are_user_errors(data):
    spec, train, valid = data
    with pytest.raises(ParameterError, match="metric"):
        tuning.tune(train, valid, spec, ("logreg",), max_evals=2, seed=0, metric="accuracy", log_runs=False)
    with pytest.raises(ParameterError, match="families"):
        space.parse_families("logreg,xgboost")
    assert space.parse_families(" hgb, logreg,hgb ") == ("hgb", "logreg")


@pytest.mark.parametrize("family", space.FAMILIES)
def test_every_family_handles_nulls_categories_and_imbalance(data, family):
    spec, train, valid = data
    point = {"logreg": {"family": "logreg", "C": 1.0, "transform": "log", "class_weight": "balanced"},
             "rf": {"family": "rf", "n_estimators": 20, "max_depth": 5, "min_samples_leaf": 5, "max_features": "sqrt",
                    "max_samples": 0.5, "class_weight": "balanced_subsample"},
             "hgb": {"family": "hgb", "learning_rate": 0.1, "max_leaf_nodes": 8, "min_samples_leaf": 20,
                     "l2_regularization": 0.1, "max_features": 1.0, "class_weight": "balanced"}}[family]
    X_valid = valid[0].copy()
    X_valid.loc[X_valid.index[:5], "region"] = "a-region-never-seen"
    model = space.build_estimator(point, spec, seed=0).fit(*train)
    p = model.predict_proba(X_valid)[:, 1]
    assert np.isfinite(p).all() and 0 <= p.min() and p.max() <= 1


def test_gradient_boosting_takes_more_categories_than_bins():
    frame = training_frame(1200, seed=4)
    frame["region"] = [f"r{i % 120}" for i in range(len(frame))]  # more than the 63 histogram bins
    spec = FeatureSpec.infer(frame)
    point = {"family": "hgb", "learning_rate": 0.1, "max_leaf_nodes": 8, "min_samples_leaf": 20,
             "l2_regularization": 0.1, "max_features": 1.0, "class_weight": "balanced"}
    model = space.build_estimator(point, spec, seed=0).fit(spec.prepare(frame), fit.labels(frame))
    assert np.isfinite(model.predict_proba(spec.prepare(frame.assign(region="unseen")))[:, 1]).all()

