"""The vectorised generator and the per-user reference implement the same model: their
statistics agree within sampling error (they do not consume random numbers alike)."""

from __future__ import annotations

import numpy as np
import pytest

from cmle.synthetic.reference import simulate_reference
from cmle.synthetic.simulate import generate
from tests.synthetic.synthdata import END

Z = 4.5  # per comparison; about 1e-5 two-sided, so ~25 comparisons per mode stay quiet


def _per_user(data) -> dict[str, np.ndarray]:
    """Per-user statistics: count of each event type, conversion, churn, final propensity."""
    out = {name: np.bincount(data.user[data.code == i], minlength=data.n_profiles).astype(float)
           for i, name in enumerate(data.model.names)}
    out["events"] = np.bincount(data.user, minlength=data.n_profiles).astype(float)
    out["converted"] = data.converted.astype(float)
    out["churned"] = data.churned.astype(float)
    final = data.profile.p0.copy()
    final[data.user] = data.propensity  # rows in time order: the last one wins
    out["final_propensity"] = final
    out["initial_propensity"] = data.profile.p0
    return out


def _assert_same_law(a, b):
    sa, sb = _per_user(a), _per_user(b)
    for key in sa:
        x, y = sa[key], sb[key]
        se = np.sqrt(x.var() / len(x) + y.var() / len(y))
        diff = abs(x.mean() - y.mean())
        assert diff <= Z * se or diff < 1e-12, (key, x.mean(), y.mean(), se)


@pytest.mark.parametrize("legacy, churn", [(False, True), (False, False), (True, False)])
def test_vectorised_and_reference_agree(legacy, churn):
    ref = simulate_reference(3000, end=END, seed=31, legacy=legacy, churn=churn)
    vec = generate(30_000, end=END, seed=32, legacy=legacy, churn=churn)
    assert ref.window_start == vec.window_start and ref.window_end == vec.window_end
    assert ref.churn == vec.churn == (churn and not legacy)
    _assert_same_law(ref, vec)


def test_reference_is_deterministic_and_well_formed():
    a = simulate_reference(200, end=END, seed=3)
    b = simulate_reference(200, end=END, seed=3)
    assert np.array_equal(a.ts, b.ts) and np.array_equal(a.propensity, b.propensity)
    assert a.ts.min() >= a.window_start_us and a.ts.max() < a.window_end_us
    key = a.user * (a.window_end_us - a.window_start_us) + (a.ts - a.window_start_us)
    assert np.all(np.diff(key) >= 0)
    assert a.event_mix()["events"].sum() == a.n_events
