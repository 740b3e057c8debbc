"""Point-in-time correctness of the training and scoring sets, run on the local platform.

T = 2025-03-01 00:00 UTC, look-back 56 days, outcome window 14 days: features only from
events in [T - 56 d, T), the label only from conversions in (T, T + 14 d], profiles that
converted at or before T are not eligible.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cmle import naming
from cmle.features import render
from cmle.features.spec import FeatureSpec, feature_columns
from tests.features.eventdata import CONVERSION, put_data, profile, random_data, ts

T = ts("2025-03-01 00:00")
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
SENT, OPENED = "directMarketing.emailSent", "directMarketing.emailOpened"
DISMISS = "decisioning.propositionDismiss"


def build(platform, kind: str = "training", when: dt.datetime = T, fs: FeatureSpec = FeatureSpec()) -> pd.DataFrame:
    events = platform.find_dataset(naming.events_dataset("cmle"))
    profiles = platform.find_dataset(naming.profiles_dataset("cmle"))
    query = render.feature_query(kind, events.table, profiles.table, platform.tenant_id, when, fs)
    ds = platform.create_table_as(f"cmle_test_{kind}_cmle", query.sql)
    df = platform.read_dataset(ds.id).to_pandas()
    assert list(df.columns) == list(query.columns)
    assert df["userid"].is_unique
    return df.set_index("userid").sort_index()  # the SQL has no ORDER BY: compare sets of rows


@pytest.fixture
def handmade(platform):
    rows = [
        # a: one email just before T feeds the features; the email at T and the open after T do not
        ("a", T - US, SENT), ("a", T, SENT), ("a", T + dt.timedelta(hours=1), OPENED), ("a", T + DAY, CONVERSION),
        ("b", T - 5 * DAY, SENT), ("b", T, CONVERSION),  # converted at T: not eligible
        ("c", T - 5 * DAY, SENT), ("c", T + 14 * DAY, CONVERSION),  # converted at T + W: positive
        ("d", T - 5 * DAY, SENT), ("d", T + 14 * DAY + US, CONVERSION),  # just after the window: negative
        ("e", T - 3 * DAY, CONVERSION), ("e", T - DAY, SENT),  # converted before T: not eligible
        # f: the look-back starts (inclusive) at T - 56 d; an older event counts for nothing
        ("f", T - 56 * DAY, OPENED), ("f", T - 56 * DAY - US, SENT),
        ("h", T + 2 * DAY, SENT),  # first seen after T, signed up after T: not known at T
        # i: recent windows [T - n d, T)
        ("i", T - 7 * DAY, DISMISS), ("i", T - 7 * DAY - US, DISMISS), ("i", T - 14 * DAY, DISMISS),
        ("i", T - 28 * DAY - US, DISMISS), ("i", T - 2 * DAY, DISMISS),
        # j: converts twice in the window: one row, label 1
        ("j", T - DAY, SENT), ("j", T + DAY, CONVERSION), ("j", T + 2 * DAY, CONVERSION),
    ]
    profiles = [profile(u) for u in "abcdefij"] + [
        profile("g", signup=T - 10 * DAY, age=33, gender="m", region="west", tier="silver"),  # no event at all
        profile("h", signup=T + DAY),
        profile("k", signup=T + DAY),  # signed up after T, no event: not known at T
    ]
    put_data(platform, "cmle", rows, profiles)
    return platform


def test_eligibility(handmade):
    df = build(handmade)
    assert sorted(df.index) == ["a", "c", "d", "f", "g", "i", "j"]


def test_label_looks_only_at_the_outcome_window(handmade):
    label = build(handmade)["label"]
    assert label.to_dict() == {"a": 1, "c": 1, "d": 0, "f": 0, "g": 0, "i": 0, "j": 1}
    assert str(label.dtype) == "int32"


def test_no_event_at_or_after_t_feeds_a_feature(handmade):
    a = build(handmade).loc["a"]
    assert a["emailsReceived"] == 1 and a["events"] == 1 and a["emailsOpened"] == 0
    assert a["minutes_since_emailSent"] == pytest.approx(1e-6 / 60, rel=1e-9)  # 1 µs before T
    assert pd.isna(a["minutes_since_emailOpened"])


def test_lookback_window_bounds(handmade):
    f = build(handmade).loc["f"]
    assert f["emailsOpened"] == 1 and f["emailsReceived"] == 0 and f["events"] == 1
    assert f["minutes_since_emailOpened"] == pytest.approx(56 * 24 * 60)
    assert pd.isna(f["minutes_since_emailSent"])  # the older email is outside the look-back


def test_recent_windows(handmade):
    i = build(handmade).loc["i"]
    assert (i["propositionDismissed"], i["propositionDismissed_28d"], i["propositionDismissed_14d"],
            i["propositionDismissed_7d"]) == (5, 4, 4, 2)
    assert i["minutes_since_propositionDismiss"] == pytest.approx(2 * 24 * 60)  # the notebooks' typo is fixed
    assert i["events_7d"] == 2 and i["active_days"] == 5


def test_never_happened_is_null_and_profiles_without_events_count_zero(handmade):
    g = build(handmade).loc["g"]
    counts = [c for c in feature_columns(FeatureSpec()) if not c.startswith("minutes_since") and
              c not in ("email_open_rate", "email_click_rate", "age", "tenure_days", "gender", "region", "loyaltyTier")]
    assert all(g[c] == 0 for c in counts)
    assert g[[c for c in g.index if c.startswith("minutes_since")]].isna().all()
    assert pd.isna(g["email_open_rate"])
    assert (g["age"], g["gender"], g["region"], g["loyaltyTier"], g["tenure_days"]) == (33, "m", "west", "silver", 10)


def test_snapshot_column_is_t(handmade):
    snap = build(handmade)["snapshot_ts"]
    assert (snap == pd.Timestamp(T)).all()


def test_scoring_set_is_every_profile_not_yet_converted(handmade):
    now = T + 20 * DAY
    df = build(handmade, "scoring", now)
    assert "label" not in df.columns
    assert sorted(df.index) == ["f", "g", "h", "i", "k"]  # h and k are known by now; d converted at T + 14 d
    assert df.loc["h", "emailsReceived"] == 1
    assert df.loc["h", "minutes_since_emailSent"] == pytest.approx(18 * 24 * 60)
    assert df.loc["f", "events"] == 0 and pd.isna(df.loc["f", "minutes_since_last_event"])  # f's events are too old
    assert (df["snapshot_ts"] == pd.Timestamp(now)).all()


@pytest.fixture
def random_platform(platform):
    rows, profiles = random_data(150, seed=7)
    put_data(platform, "cmle", rows, profiles)
    return platform, rows, profiles


def test_features_ignore_everything_from_t_on(random_platform):
    """Adding events at or after T (any type but conversions) changes no feature and no label."""
    platform, rows, profiles = random_platform
    before = build(platform)
    users = sorted({r[0] for r in rows})
    extra = [(u, T + dt.timedelta(hours=k * 7), t) for k, u in enumerate(users)
             for t in (SENT, OPENED, DISMISS, "commerce.productViews")]
    extra += [(u, T, SENT) for u in users]  # exactly at T
    put_data(platform, "cmle", rows + extra, profiles, key="more")
    after = build(platform)
    pd.testing.assert_frame_equal(before, after)


def test_label_ignores_conversions_after_the_window(random_platform):
    platform, rows, profiles = random_platform
    before = build(platform)
    late = [(u, T + 14 * DAY + dt.timedelta(minutes=k + 1), CONVERSION) for k, u in enumerate(before.index)]
    put_data(platform, "cmle", rows + late, profiles, key="late")
    pd.testing.assert_frame_equal(before, build(platform))


def test_long_lookback_counts_active_days_over_several_masks(platform):
    # 100 days > 63: two day masks; one event per day on 80 distinct days, two on some
    rows = [("u", T - (d + 1) * DAY + dt.timedelta(hours=5), SENT) for d in range(80)]
    rows += [("u", T - (d + 1) * DAY + dt.timedelta(hours=9), OPENED) for d in range(0, 80, 10)]
    put_data(platform, "cmle", rows, [profile("u")])
    u = build(platform, fs=FeatureSpec(lookback_days=100, windows=(7, 28, 200))).loc["u"]
    assert u["active_days"] == 80 and u["events"] == 88
    assert "emailsReceived_200d" not in u.index and u["emailsReceived_28d"] == 28
