"""The vectorised generator against the model's definition: event mix and rates, conversion,
dependency timing, churn, the propensity walk, determinism, the legacy figures."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest

from cmle.columns import CONVERSION_EVENT
from cmle.errors import ParameterError
from cmle.synthetic.model import CONVERSION_DELAY_S, DEFAULT_MODEL
from cmle.synthetic.simulate import US_PER_S, generate, resolve_end
from tests.synthetic.synthdata import END, per_user_counts

WINDOW_END = datetime(2024, 6, 1, tzinfo=timezone.utc)


def test_event_mix_and_rates_match_the_model(no_churn_data):
    d = no_churn_data
    expected = DEFAULT_MODEL.expected_counts(d.weeks)
    for name, mean in expected.items():
        if name == CONVERSION_EVENT:
            continue
        counts = per_user_counts(d, name)
        se = counts.std() / np.sqrt(d.n_profiles)
        # children of parents near the window end fall after it (about 1.5 % of a 24 h delay type)
        assert abs(counts.mean() - mean) <= 4 * se + 0.02 * mean, (name, counts.mean(), mean)
    mix = d.event_mix().set_index("eventType")
    assert mix["events"].sum() == d.n_events
    assert mix.loc["directMarketing.emailSent", "expected_per_profile_before_churn"] == pytest.approx(5.0)


def test_default_figures_are_in_the_documented_ranges(default_data):
    d = default_data
    # documented in docs/stages/synthetic.md: about 13.6 events per profile, 16 % conversion, 39 % churn
    assert 12.5 <= d.events_per_profile <= 14.5
    assert 0.14 <= d.conversion_rate <= 0.18
    assert 0.36 <= d.churn_rate <= 0.42
    assert d.churn


def test_events_are_sorted_utc_and_inside_the_window(default_data):
    d = default_data
    assert d.window_end == WINDOW_END and d.window_start == WINDOW_END - timedelta(weeks=10)
    assert d.window_end.tzinfo == timezone.utc
    assert d.ts.min() >= d.window_start_us and d.ts.max() < d.window_end_us
    key = d.user.astype(np.int64) * (d.window_end_us - d.window_start_us) + (d.ts - d.window_start_us)
    assert np.all(np.diff(key) >= 0)
    assert d.user.min() >= 0 and d.user.max() < d.n_profiles


@pytest.mark.parametrize("fixture", ["default_data", "no_churn_data", "legacy_data"])
def test_every_child_follows_its_parent(fixture, request):
    d = request.getfixturevalue(fixture)
    m = d.model
    has_parent = d.parent >= 0
    child, parent = np.flatnonzero(has_parent), d.parent[has_parent]
    assert np.all(d.user[child] == d.user[parent])
    assert np.all(d.ts[child] >= d.ts[parent])
    allowed = {(m.code(p), m.code(c)) for p, cs in m.dependencies for c in cs}
    pairs = set(zip(d.code[parent].tolist(), d.code[child].tolist()))
    conversion = m.code(CONVERSION_EVENT)
    drawing = {i for i, e in enumerate(m.events) if e.draws}
    assert {(p, c) for p, c in pairs if c != conversion} <= allowed
    assert {p for p, c in pairs if c == conversion} <= drawing
    # events without a parent are base events, and every non-base event has a parent
    base = {m.code(n) for n in m.base_types}
    assert set(np.unique(d.code[~has_parent]).tolist()) <= base
    assert np.all(has_parent[~np.isin(d.code, list(base))])


@pytest.mark.parametrize("fixture", ["default_data", "legacy_data"])
def test_conversion_is_60_s_after_a_drawing_event_and_once(fixture, request):
    d = request.getfixturevalue(fixture)
    conv = np.flatnonzero(d.code == d.model.code(CONVERSION_EVENT))
    assert len(conv) == d.converted.sum() > 0
    assert len(np.unique(d.user[conv])) == len(conv)  # at most one per user
    trigger = d.parent[conv]
    assert np.all(d.ts[conv] - d.ts[trigger] == CONVERSION_DELAY_S * US_PER_S)
    assert all(d.model.events[c].draws for c in np.unique(d.code[trigger]))
    assert np.array_equal(np.flatnonzero(d.converted), np.sort(d.user[conv]))


def test_churn_ends_a_history_at_the_churn_event(default_data, no_churn_data):
    d = default_data
    sent, impressions = (per_user_counts(d, "directMarketing.emailSent"),
                         per_user_counts(d, "advertising.impressions"))
    assert sent.max() == 6 and impressions.max() <= 11
    churned = (sent == 6) | (impressions == 11)
    assert np.array_equal(churned, d.churned)
    conversion = d.model.code(CONVERSION_EVENT)
    other = d.code != conversion
    last = np.full(d.n_profiles, -1)
    last[d.user[other]] = np.flatnonzero(other)  # rows are in time order: the last one wins
    users = np.flatnonzero(churned)
    churn_types = {d.model.code("directMarketing.emailSent"), d.model.code("advertising.impressions")}
    assert set(np.unique(d.code[last[users]]).tolist()) <= churn_types
    assert np.all(d.propensity[last[users]] == 0.0)  # a churned user's propensity is 0
    # without churn, users go over the limits
    assert per_user_counts(no_churn_data, "directMarketing.emailSent").max() > 6
    assert not no_churn_data.churned.any()


def test_propensity_walk_follows_the_definition(default_data):
    d = default_data
    delta = np.array([e.propensity_delta for e in d.model.events])
    conversion = d.model.code(CONVERSION_EVENT)
    for user in range(0, d.n_profiles, 97):
        lo, hi = np.searchsorted(d.user, [user, user + 1])
        rows = [i for i in range(lo, hi) if d.code[i] != conversion]
        p = d.profile.p0[user]
        for i in range(lo, hi):
            if d.code[i] != conversion:  # a conversion keeps the propensity before it
                p = 0.0 if d.churned[user] and i == rows[-1] else min(1.0, max(p + delta[d.code[i]], 0.0))
            assert d.propensity[i] == pytest.approx(p, abs=1e-10), (user, i)


def test_attributes_shift_the_initial_propensity(default_data):
    d = default_data
    tiers = [t for t, _, _ in d.model.profiles.tiers]
    p0 = {t: d.profile.p0[d.profile.tier == i] for i, t in enumerate(tiers)}
    assert p0["gold"].mean() > p0["silver"].mean() > p0["bronze"].mean() > p0["none"].mean()
    assert d.profile.p0.min() >= d.model.initial_propensity
    young = (d.profile.age >= 25) & (d.profile.age <= 44)
    assert d.profile.p0[young].mean() > d.profile.p0[~young].mean()


def _parquet(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_same_seed_gives_byte_identical_parquet_and_another_seed_does_not():
    a, b = generate(3000, end=END, seed=5), generate(3000, end=END, seed=5)
    for part in ("events", "profiles", "oracle"):
        assert _parquet(getattr(a, part)) == _parquet(getattr(b, part)), part
    c = generate(3000, end=END, seed=6)
    assert _parquet(a.events) != _parquet(c.events)
    assert _parquet(a.profiles) != _parquet(c.profiles)


def test_threads_do_not_change_the_data(monkeypatch):
    from cmle.synthetic import simulate

    threaded = generate(20_000, end=END, seed=5)  # several blocks
    monkeypatch.setattr(simulate, "MAX_WORKERS", 1)
    serial = generate(20_000, end=END, seed=5)
    for name in ("user", "code", "ts", "propensity", "message"):
        assert np.array_equal(getattr(threaded, name), getattr(serial, name)), name
    assert np.array_equal(threaded.profile.p0, serial.profile.p0)


def test_legacy_reproduces_the_notebooks_figures(legacy_data):
    d = legacy_data
    counts = np.bincount(d.user, minlength=d.n_profiles)
    se_events = counts.std() / np.sqrt(d.n_profiles)  # about 0.03 at 40k profiles
    # the notebooks' own code: 10.6 events per profile (10.57 inside the window), 14.7 % conversion
    assert abs(d.events_per_profile - 10.6) <= max(4 * se_events, 0.12)
    se_conv = np.sqrt(0.147 * 0.853 / d.n_profiles)
    assert abs(d.conversion_rate - 0.147) <= 4 * se_conv
    assert not d.churned.any() and not d.churn


def test_legacy_keeps_only_the_last_parents_children(legacy_data):
    d = legacy_data
    m = d.model
    for parent_type, child_type in (("directMarketing.emailSent", "directMarketing.emailOpened"),
                                    ("web.webpagedetails.pageViews", "commerce.productViews")):
        rows = np.flatnonzero(d.code == m.code(child_type))
        parents = d.parent[rows]
        # all of a user's children of this type come from ONE parent event
        per_user = {}
        for u, p in zip(d.user[rows].tolist(), parents.tolist()):
            per_user.setdefault(u, set()).add(p)
        assert max(len(s) for s in per_user.values()) == 1
        assert all(d.code[p] == m.code(parent_type) for p in parents[:100])


def test_legacy_ignores_churn():
    d = generate(500, end=END, legacy=True, churn=True)
    assert not d.churn and not d.churned.any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_profiles=0), "profiles = 0 must be"),
    (dict(n_profiles=10, weeks=0), "weeks = 0 must be"),
    (dict(n_profiles=10, end="next tuesday"), "end_date = 'next tuesday' is not a date"),
    (dict(n_profiles=10, seed=-1), "seed = -1"),
    (dict(n_profiles=2.5), "profiles = 2.5"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        generate(**kwargs)


def test_end_date_forms():
    assert resolve_end("2024-06-01") == WINDOW_END
    assert resolve_end("2024-06-01T12:00:00+02:00") == datetime(2024, 6, 1, 10, tzinfo=timezone.utc)
    assert resolve_end("2024-06-01T12:00:00Z") == datetime(2024, 6, 1, 12, tzinfo=timezone.utc)
    assert resolve_end(date(2024, 6, 1)) == WINDOW_END
    assert resolve_end(datetime(2024, 6, 1)) == WINDOW_END
    today = resolve_end("")
    assert today == resolve_end(None) and today.tzinfo == timezone.utc and today.hour == 0
    assert today.date() == datetime.now(timezone.utc).date()


def test_tiny_runs_build_valid_tables():
    d = generate(1, weeks=1, end=END, seed=3)
    assert d.profiles.num_rows == 1 and d.oracle.num_rows == d.n_events + 1
    assert d.events.num_rows == d.n_events
    tables = list(d.iter_event_tables(10))
    assert sum(t.num_rows for t in tables) == d.n_events and len(tables) >= 1
