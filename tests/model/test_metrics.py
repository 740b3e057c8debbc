"""Holdout metrics computed by hand: agreement with scikit-learn, ECE, lift and gains."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from cmle.model import metrics


@pytest.fixture
def calibrated():
    rng = np.random.default_rng(0)
    p = rng.beta(1.0, 9.0, 200_000)
    y = (rng.random(p.size) < p).astype(int)
    return y, p


def test_agrees_with_scikit_learn(calibrated):
    y, p = calibrated
    assert metrics.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert metrics.pr_auc(y, p) == pytest.approx(average_precision_score(y, p))
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p))


def test_ece_is_small_for_calibrated_and_large_for_shifted_probabilities(calibrated):
    y, p = calibrated
    assert metrics.expected_calibration_error(y, p) < 0.005
    assert metrics.expected_calibration_error(y, p, strategy="quantile") < 0.005
    assert metrics.expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) == pytest.approx(0.1, abs=0.01)


def test_ece_by_hand():
    # bin [0.1, 0.2): 2 rows predicted 0.15, 1 positive -> gap 0.35; bin [0.9, 1]: 2 rows, 0.95, 2 pos -> 0.05
    y = np.array([0, 1, 1, 1])
    p = np.array([0.15, 0.15, 0.95, 0.95])
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)


def test_lift_and_gains_by_decile(calibrated):
    y, p = calibrated
    table = metrics.lift_table(y, p)
    assert list(table["decile"]) == list(range(1, 11))
    assert table["rows"].sum() == y.size and table["positives"].sum() == y.sum()
    assert table["gain"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(table["gain"]) >= 0)
    assert table["lift"].iloc[0] > 2 > 1 > table["lift"].iloc[-1]
    assert table["cumulative_lift"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(table["min_propensity"]) <= 0)


def test_undefined_auc_with_one_class_is_nan():
    assert np.isnan(metrics.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_classification_metrics_and_oracle_ratio(calibrated):
    y, p = calibrated
    values = metrics.classification_metrics(y, p)
    assert set(values) >= {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_decile_1", "gain_decile_3"}
    noisy = np.clip(p + np.random.default_rng(1).normal(0, 0.05, p.size), 0, 1)
    cmp = metrics.oracle_comparison(y, noisy, p)
    assert cmp["oracle_auc"] == pytest.approx(metrics.roc_auc(y, p))
    assert cmp["auc_ratio"] == pytest.approx(cmp["model_auc"] / cmp["oracle_auc"]) and cmp["auc_ratio"] < 1


def test_selection_metrics_have_a_direction():
    assert metrics.SELECTION_METRICS == {"roc_auc": -1.0, "pr_auc": -1.0, "log_loss": 1.0}
