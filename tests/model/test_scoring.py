"""Score, percentile, decile and bucket: ranges, boundaries, batch independence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmle.columns import OUTPUT_COLUMNS
from cmle.model import scoring


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    return scoring.Reference.from_propensities(rng.beta(1.0, 12.0, 20_000))


def test_outputs_have_the_contract_columns_types_and_ranges(reference):
    p = np.random.default_rng(1).random(5000) ** 3
    out = scoring.outputs(p, reference)
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert out["propensity"].dtype == "float64"
    assert all(out[c].dtype == "int64" for c in ("score", "percentile", "decile"))
    assert out["score"].between(0, 100).all()
    assert out["percentile"].between(1, 100).all()
    assert out["decile"].between(1, 10).all()
    assert set(out["bucket"]) <= {"low", "medium", "high"}
    assert np.array_equal(out["propensity"], p)


def test_bucket_boundaries_are_customer_ais():
    assert list(scoring.bucket([0, 24, 25, 74, 75, 100])) == ["low", "low", "medium", "medium", "high", "high"]


def test_decile_one_is_the_top_ten_percentiles():
    assert list(scoring.decile([100, 91, 90, 81, 11, 10, 1])) == [1, 1, 2, 2, 9, 10, 10]


def test_score_is_relative_likelihood_against_the_mean(reference):
    mean = reference.mean
    assert scoring.score([mean], reference)[0] == 50
    assert scoring.score([3 * mean], reference)[0] == 75  # lift 3 -> high
    assert scoring.score([mean / 3], reference)[0] == 25  # lift 1/3 -> first medium score
    assert scoring.score([0.0], reference)[0] == 0
    grid = np.linspace(0, 1, 1001)
    assert np.all(np.diff(scoring.score(grid, reference)) >= 0)  # monotone in p


def test_percentile_is_rank_in_the_reference(reference):
    q = reference.quantiles
    assert scoring.percentile([q[0] - 1e-9], reference)[0] == 1
    assert scoring.percentile([q[-1] + 1e-9], reference)[0] == 100
    median = np.quantile(q, 0.5)
    assert scoring.percentile([median], reference)[0] in (50, 51)
    pct = scoring.percentile(np.random.default_rng(2).beta(1.0, 12.0, 50_000), reference)
    # drawn from the reference distribution: percentiles are close to uniform
    counts = np.bincount(pct, minlength=101)[1:]
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_ties_share_the_mid_rank():
    ref = scoring.Reference.from_propensities(np.r_[np.full(600, 0.01), np.linspace(0.02, 0.5, 400)])
    # 60 % of the population share the lowest value: they sit at the middle of that block
    # (30 %, give or take the 0.1 % resolution of the stored quantiles)
    assert scoring.percentile([0.01], ref)[0] in (30, 31)
    assert scoring.percentile([0.02], ref)[0] in (60, 61)


def test_outputs_do_not_depend_on_the_batch(reference):
    p = np.random.default_rng(3).beta(1.0, 12.0, 9_999)
    whole = scoring.outputs(p, reference)
    pieces = pd.concat([scoring.outputs(chunk, reference) for chunk in np.array_split(p, 7)], ignore_index=True)
    single = pd.concat([scoring.outputs(p[i:i + 1], reference) for i in range(0, 200)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, pieces)
    pd.testing.assert_frame_equal(whole.head(200), single)


def test_reference_round_trips_through_json(reference):
    again = scoring.Reference.from_dict(reference.to_dict())
    assert np.array_equal(again.quantiles, reference.quantiles) and again.mean == reference.mean
    assert again.quantiles.size == scoring.REFERENCE_QUANTILES


def test_reference_needs_finite_values():
    with pytest.raises(ValueError):
        scoring.Reference.from_propensities([np.nan])
