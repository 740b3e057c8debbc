"""The gate's metrics with row weights, and the bootstrap of their differences (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cmle.model import comparison, metrics


def _rows(n: int, seed: int = 0, ties: bool = True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    y[:2] = [1, 0]
    p = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.15, n), 0, 1)
    return y, (np.round(p, 2) if ties else p)


@pytest.mark.parametrize("n", [7, 50, 1003])
def test_unit_weights_give_the_plain_metrics(n):
    y, p = _rows(n)
    assert comparison.point("roc_auc", y, p) == pytest.approx(metrics.roc_auc(y, p), abs=1e-12)
    assert comparison.point("pr_auc", y, p) == pytest.approx(metrics.pr_auc(y, p), abs=1e-12)
    assert comparison.point("brier", y, p) == pytest.approx(metrics.brier(y, p), abs=1e-12)
    assert comparison.point("ece", y, p) == pytest.approx(metrics.expected_calibration_error(y, p), abs=1e-12)
    assert comparison.point("top_decile_lift", y, p) == pytest.approx(metrics.lift_table(y, p)["lift"].iloc[0],
                                                                     abs=1e-12)


def test_weights_are_row_counts_as_scikit_learn_reads_sample_weight():
    y, p = _rows(400, seed=3)
    w = np.random.default_rng(4).integers(0, 4, y.size).astype(float)
    assert comparison.roc_auc(y.astype(float), p, w[None])[0] == pytest.approx(roc_auc_score(y, p, sample_weight=w))
    assert comparison.pr_auc(y.astype(float), p, w[None])[0] == pytest.approx(
        average_precision_score(y, p, sample_weight=w))
    # a weight of 2 is the row twice
    twice = np.concatenate([np.arange(y.size), np.flatnonzero(w == 2)])
    assert comparison.ece(y.astype(float), p, np.where(w == 2, 2.0, 1.0)[None])[0] == pytest.approx(
        metrics.expected_calibration_error(y[twice], p[twice]))


def test_each_metric_compared_on_hand_made_scores():
    """Eight rows, two models: the challenger ranks perfectly but is overconfident; the
    champion ranks one pair wrongly and is calibrated on average."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    challenger = np.array([0.95, 0.90, 0.60, 0.55, 0.50, 0.45, 0.40, 0.35])
    champion = np.array([0.40, 0.20, 0.30, 0.25, 0.20, 0.15, 0.10, 0.10])
    diffs = {d.metric: d for d in comparison.paired(list(comparison.METRICS), y, challenger, champion, resamples=0)}
    # ROC-AUC: challenger 12/12 pairs; champion loses (0.20 < 0.30, 0.25) and ties one (0.20 = 0.20): 9.5/12
    assert diffs["roc_auc"].challenger == pytest.approx(1.0)
    assert diffs["roc_auc"].champion == pytest.approx(9.5 / 12)
    assert diffs["roc_auc"].better_by == pytest.approx(1 - 9.5 / 12)
    # PR-AUC: challenger 1.0; champion: positive 0.40 at rank 1 (precision 1), 0.20 tied with a
    # negative at ranks 4-5 (precision 2/5) -> (1 + 0.4) / 2
    assert diffs["pr_auc"].champion == pytest.approx(0.7)
    # Brier (lower is better): the overconfident challenger is worse
    brier_chal = np.mean((challenger - y) ** 2)
    brier_champ = np.mean((champion - y) ** 2)
    assert diffs["brier"].challenger == pytest.approx(brier_chal)
    assert diffs["brier"].better_by == pytest.approx(brier_champ - brier_chal) and diffs["brier"].better_by < 0
    # ECE, 10 bins of width 0.1: challenger bins 0.3 (0.35), 0.4 (0.40, 0.45), 0.5 (0.50, 0.55), 0.6 (0.60),
    # 0.9 (0.90, 0.95): all negative except the last bin
    ece_chal = (0.35 + 0.85 + 1.05 + 0.60 + abs(2 - 1.85)) / 8
    assert diffs["ece"].challenger == pytest.approx(ece_chal)
    assert diffs["ece"].direction == "lower" and diffs["ece"].better_by == pytest.approx(
        diffs["ece"].champion - ece_chal)
    # top-decile lift: the top tenth is ceil(8/10) = 1 row; base rate 2/8
    assert diffs["top_decile_lift"].challenger == pytest.approx(1 / 0.25)
    assert diffs["top_decile_lift"].champion == pytest.approx(1 / 0.25)
    assert diffs["top_decile_lift"].better_by == 0


def test_the_paired_interval_is_that_of_the_difference():
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.15).astype(int)
    noise = rng.normal(0, 1, n)
    champion = 1 / (1 + np.exp(-(-2 + 1.5 * y + noise)))
    same = champion.copy()
    better = 1 / (1 + np.exp(-(-2 + 2.5 * y + noise)))
    (d,) = comparison.paired(["roc_auc"], y, same, champion, resamples=300, seed=1)
    assert d.better_by == 0 and d.ci_low == 0 and d.ci_high == 0  # identical scores: no noise in the difference
    (d,) = comparison.paired(["roc_auc"], y, better, champion, resamples=300, seed=1)
    assert 0 < d.ci_low < d.better_by < d.ci_high
    # the same seed gives the same interval
    (again,) = comparison.paired(["roc_auc"], y, better, champion, resamples=300, seed=1)
    assert (again.ci_low, again.ci_high) == (d.ci_low, d.ci_high)


def test_unpaired_compares_each_model_on_its_own_rows():
    ya, pa = _rows(500, seed=1, ties=False)
    yb, pb = _rows(800, seed=2, ties=False)
    (d,) = comparison.unpaired(["roc_auc"], ya, pa, yb, pb, resamples=200)
    assert d.challenger == pytest.approx(metrics.roc_auc(ya, pa))
    assert d.champion == pytest.approx(metrics.roc_auc(yb, pb))
    assert d.ci_low < d.better_by < d.ci_high
    with pytest.raises(ValueError, match="differ in length"):
        comparison.paired(["roc_auc"], ya, pa, pb)
