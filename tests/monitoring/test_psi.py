"""PSI on known distributions, the training reference's bins, chunked counting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cmle.monitoring import psi, reference


def test_identical_distributions_have_psi_zero():
    shares = [0.1, 0.2, 0.3, 0.4]
    assert psi.psi(shares, shares) == 0.0
    assert psi.psi([10, 20, 30, 40], [1, 2, 3, 4]) == pytest.approx(0.0)  # counts are normalised


def test_a_known_shift_gives_the_known_value():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected, rel=1e-12)
    assert psi.psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(expected, rel=1e-12)  # symmetric
    # an empty bin is smoothed, not infinite
    assert np.isfinite(psi.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))
    assert math.isnan(psi.psi([0, 0], [1, 1]))


def test_levels_follow_the_thresholds():
    assert psi.level(0.05, 0.1, 0.25) == "stable"
    assert psi.level(0.1, 0.1, 0.25) == "warn"
    assert psi.level(0.3, 0.1, 0.25) == "alert"
    assert psi.level(float("nan"), 0.1, 0.25) == "stable"


def test_reference_bins_count_chunks_like_the_whole_and_detect_a_shift():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], 5000, p=[.6, .3, .1])})
    train.loc[:99, "x"] = np.nan
    ref = reference.build(train, ("c",), rng.beta(1, 20, 5000))
    x = ref.feature("x")
    assert x.kind == "numeric" and len(x.shares) == len(x.edges) + 2 and sum(x.shares) == pytest.approx(1)
    assert x.shares[-1] == pytest.approx(100 / 5000)  # the missing bin
    assert ref.feature("c").categories == ("a", "b", "c")
    again = reference.DriftReference.from_dict(ref.to_dict())
    assert again == ref

    same = pd.DataFrame({"x": rng.normal(size=4000), "c": rng.choice(["a", "b", "c"], 4000, p=[.6, .3, .1])})
    same.loc[:79, "x"] = np.nan  # the same 2 % missing
    counts = reference.Counts(ref)
    for lo in range(0, 4000, 1000):  # chunk by chunk
        counts.add_features(same.iloc[lo:lo + 1000])
    whole = x.counts(same["x"])
    assert (counts.features["x"] == whole).all() and counts.rows == 4000
    assert psi.psi(x.shares, counts.features["x"]) < 0.05
    shifted = pd.DataFrame({"x": rng.normal(1.0, 1.0, 4000), "c": rng.choice(["a", "b", "z"], 4000)})
    moved = reference.Counts(ref)
    moved.add_features(shifted)
    assert psi.psi(x.shares, moved.features["x"]) > 0.25
    assert moved.features["c"][-1] > 1000  # the unseen category "z" counts as other
