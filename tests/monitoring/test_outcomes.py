"""Expected against actual on hand-made scores and outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmle.model import metrics
from cmle.monitoring import outcomes


def cells_of(rows: pd.DataFrame) -> pd.DataFrame:
    """What the realised-outcome query returns for these scored rows (propensity, bucket, decile, label)."""
    g = rows.assign(p_bin=rows["propensity"].round(4)).groupby(["bucket", "decile", "p_bin"])
    return g.agg(profiles=("label", "size"), positives=("label", "sum"),
                 propensity_sum=("propensity", "sum")).reset_index()


def test_expected_vs_actual_on_a_hand_made_table():
    rows = pd.DataFrame({
        "propensity": [0.8] * 10 + [0.1] * 20,
        "bucket": ["high"] * 10 + ["low"] * 20,
        "decile": [1] * 10 + [10] * 20,
        "label": [1] * 6 + [0] * 4 + [1] * 2 + [0] * 18,
    })
    table = outcomes.expected_vs_actual(cells_of(rows))
    high = table[(table["group"] == "bucket") & (table["value"] == "high")].iloc[0]
    assert (high["profiles"], high["positives"]) == (10, 6)
    assert high["expected_rate"] == pytest.approx(0.8) and high["actual_rate"] == pytest.approx(0.6)
    lo, hi = outcomes.wilson(6, 10)
    assert (high["ci_low"], high["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert lo == pytest.approx(0.3127, abs=1e-4) and hi == pytest.approx(0.8318, abs=1e-4)  # Wilson, 95 %
    low = table[(table["group"] == "bucket") & (table["value"] == "low")].iloc[0]
    assert (low["profiles"], low["positives"], low["expected_rate"]) == (20, 2, pytest.approx(0.1))
    overall = table[table["group"] == "all"].iloc[0]
    assert (overall["profiles"], overall["positives"]) == (30, 8)
    assert list(table[table["group"] == "decile"]["value"]) == ["1", "10"]
    # AUC: every positive at 0.8 beats every negative at 0.1 ... except the 2 positives at 0.1
    y = rows["label"].to_numpy()
    assert outcomes.realised_auc(cells_of(rows)) == pytest.approx(metrics.roc_auc(y, rows["propensity"]))


def test_auc_and_ece_from_cells_equal_the_row_level_metrics():
    rng = np.random.default_rng(11)
    p = np.round(rng.beta(1.2, 12, 20_000), 4)
    y = (rng.random(20_000) < np.clip(p * 1.3, 0, 1)).astype(int)
    rows = pd.DataFrame({"propensity": p, "bucket": np.where(p > 0.2, "high", "low"),
                         "decile": np.clip(10 - (p * 40).astype(int), 1, 10), "label": y})
    cells = cells_of(rows)
    assert len(cells) < len(rows)
    assert outcomes.realised_auc(cells) == pytest.approx(metrics.roc_auc(y, p), abs=1e-9)
    assert outcomes.realised_ece(cells) == pytest.approx(metrics.expected_calibration_error(y, p), abs=1e-9)
    s = outcomes.summary(cells)
    assert s["realised_profiles"] == 20_000 and s["realised_positives"] == y.sum()
    assert s["realised_actual_rate"] > s["realised_expected_rate"]  # outcomes came 1.3x the prediction


def test_cells_from_a_query_are_typed_and_empty_ones_dropped():
    raw = pd.DataFrame({"bucket": ["high", "low"], "decile": ["1", "9"], "p_bin": ["0.5", "0.01"],
                        "profiles": [4, 0], "positives": [4, 0], "propensity_sum": ["2.0", None]})
    assert len(outcomes.clean_cells(raw)) == 1
    assert np.isnan(outcomes.realised_auc(raw))  # one class only
