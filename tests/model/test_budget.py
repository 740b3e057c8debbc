"""Training that adapts to the data size: the plan, k-fold selection and the fold ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from cmle.errors import ParameterError
from cmle.model import budget, fit, metrics, space, tuning
from cmle.model.preprocess import FeatureSpec
from tests.model.fabricate import training_frame


def test_small_data_are_cross_validated_on_every_row():
    # 20,000 profiles, 10 weeks: ~10,400 training and ~3,500 validation rows, ~120 positives in the latter
    plan = budget.plan_training(10_400, 340, 3_500, 115)
    assert (plan.max_evals, plan.tune_rows, plan.cv_folds) == (16, 0, budget.CV_FOLDS)
    assert plan.reason.startswith("13,900 train + validation rows, 455 positives (115 in the validation split): "
                                  "at most 25,000 rows, so trials are scored by 4-fold cross-validation")
    assert plan.loggable() == {"max_evals": "16", "tune_rows": "all", "cv_folds": "4", "regime": "cross-validated"}
    assert budget.plan_training(10_400, 340, 3_500, 115, max_evals=40).max_evals == 40


@pytest.mark.parametrize("train_rows, positives, tune_rows", [
    (52_000, 1_700, 15_000),  # 100,000 profiles, 10 weeks: today's 15,000
    (48_000, 480, 15_000),  # 16 weeks (1 % positives)
    (14_000, 450, 0),  # 26,000 train + validation rows, beyond k folds; fewer than 15,000 to train: all
])
def test_larger_data_tune_on_a_sample(train_rows, positives, tune_rows):
    plan = budget.plan_training(train_rows, positives, max(train_rows // 3, 12_000), positives // 3)
    assert (plan.cv_folds, plan.tune_rows, plan.max_evals) == (0, tune_rows, 16)
    assert plan.reason.endswith("and are scored on the validation split")
    assert plan.loggable()["regime"] == "split"


def test_user_settings_win_and_negative_ones_are_refused():
    plan = budget.plan_training(52_000, 1_700, 17_000, 560, max_evals=8, max_tune_rows=10_000)
    assert (plan.max_evals, plan.tune_rows) == (8, 10_000) and "max_tune_rows = 10,000" in plan.reason
    assert budget.plan_training(52_000, 1_700, 17_000, 560, max_tune_rows=10**9).tune_rows == 0  # all rows
    with pytest.raises(ParameterError, match="0: follow the data size"):
        budget.plan_training(52_000, 1_700, 17_000, 560, max_evals=-1)


@pytest.fixture(scope="module")
def small():
    frame = training_frame(2000, seed=5, shift=0.6)
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, 0.2, 0.2, seed=0)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    return spec, xy(parts.train), xy(parts.valid), xy(parts.holdout)


def test_cross_validated_trials_score_the_mean_over_folds(small):
    spec, train, valid, _ = small
    result = tuning.tune(train, valid, spec, ("logreg",), max_evals=2, seed=3, log_runs=False, cv_folds=3)
    X, y = fit.pooled(train, valid)
    params = result.trials[0].params
    want = np.mean([metrics.roc_auc(y[b], space.build_estimator(params, spec, seed=3).fit(X.iloc[a], y[a])
                                    .predict_proba(X.iloc[b])[:, 1]) for a, b in fit.cv_splits(y, 3, 3)])
    assert result.trials[0].score == pytest.approx(want, abs=1e-12)


def test_the_fold_ensemble_is_calibrated_and_uses_every_row(small):
    spec, train, valid, (hold_x, hold_y) = small
    params = {"family": "logreg", "C": 0.5, "transform": "log", "class_weight": "balanced"}
    model = fit.fit_calibrated(params, spec, train, valid, seed=0, cv_folds=4)
    assert len(model.calibrated_classifiers_) == 4
    assert model.n_features_in_ == len(spec.columns)
    p = model.predict_proba(hold_x)[:, 1]
    assert p.mean() == pytest.approx(hold_y.mean(), abs=0.03)  # balanced weights calibrated away
    assert metrics.roc_auc(hold_y, p) > 0.6
    # the same folds as tuning: the same seed gives the same model
    again = fit.fit_calibrated(params, spec, train, valid, seed=0, cv_folds=4)
    assert np.array_equal(again.predict_proba(hold_x), model.predict_proba(hold_x))
    # without calibration there is nothing to ensemble: one model on the training split
    plain = fit.fit_calibrated(params, spec, train, valid, seed=0, calibration="none", cv_folds=4)
    assert not hasattr(plain, "calibrated_classifiers_")
