"""The point-in-time SQL gives, value for value, what a plain pandas reference computes from
the definitions in :mod:`cmle.features.spec` (every feature column, the label, eligibility).

The SQL is written for speed (integer codes, day indices, bit masks); this reference is
written for reading, so a faster rewrite of the SQL cannot drift from the definitions.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from cmle.columns import CONVERSION_EVENT
from cmle.features import render
from cmle.features.spec import EVENT_FEATURES, FeatureSpec
from tests.features.eventdata import put_data, random_data, ts

DAY_US = 86_400_000_000


def _us(when: dt.datetime) -> int:
    return render.unix_micros(when)


def reference(rows, profiles, kind: str, t: dt.datetime, fs: FeatureSpec) -> pd.DataFrame:
    """The feature set of ``kind`` at T, computed row by row from the definitions."""
    ev = pd.DataFrame(rows, columns=["userid", "ts", "event_type"])
    ev["us"] = [_us(x) for x in ev["ts"]]
    t_us, end_us = _us(t), _us(t + dt.timedelta(days=fs.outcome_days))
    prof = pd.DataFrame(profiles).groupby("userid").agg(
        age=("age", "max"), gender=("gender", "max"), region=("region", "max"),
        loyaltyTier=("loyaltyTier", "max"), signup=("signupDate", "min"))
    conv = ev[ev.event_type == CONVERSION_EVENT]
    out = []
    for uid in sorted(set(ev.userid) | set(prof.index)):
        mine = ev[ev.userid == uid]
        if ((conv.userid == uid) & (conv.us <= t_us)).any():
            continue  # converted at or before T: not eligible
        known = (mine.us < t_us).any() or (uid in prof.index and (pd.isna(prof.signup[uid]) or
                                                                  prof.signup[uid] < t))
        if not known:
            continue
        look = mine[(mine.us >= t_us - fs.lookback_days * DAY_US) & (mine.us < t_us)]
        day = (t_us - 1 - look.us) // DAY_US
        row = {"userid": uid, "snapshot_ts": t}
        if kind == "training":
            mc = conv[conv.userid == uid]
            row["label"] = int(((mc.us > t_us) & (mc.us <= end_us)).any())
        for f in EVENT_FEATURES:
            of_type = look[look.event_type == f.event_type]
            row[f.count] = len(of_type)
            for w in fs.recent_windows:
                row[f"{f.count}_{w}d"] = int((day[of_type.index] < w).sum())
            row[f.recency] = (t_us - of_type.us.max()) / 6e7 if len(of_type) else None
        row["events"] = len(look)
        for w in fs.recent_windows:
            row[f"events_{w}d"] = int((day < w).sum())
        row["active_days"] = day.nunique()
        row["minutes_since_last_event"] = (t_us - look.us.max()) / 6e7 if len(look) else None
        row["minutes_since_first_event"] = (t_us - look.us.min()) / 6e7 if len(look) else None
        sent, opened, clicked = row["emailsReceived"], row["emailsOpened"], row["emailsClicked"]
        row["email_open_rate"] = opened / sent if sent else None
        row["email_click_rate"] = clicked / opened if opened else None
        p = prof.loc[uid] if uid in prof.index else None
        row["age"] = None if p is None else p.age
        days = None if p is None or pd.isna(p.signup) else (t.date() - p.signup.date()).days
        row["tenure_days"] = days if days is not None and days >= 0 else None  # a sign-up after T is unknown at T
        for col in ("gender", "region", "loyaltyTier"):
            row[col] = None if p is None else p[col]
        out.append(row)
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def data():
    rows, profiles = random_data(150, seed=11)
    # a profile recorded twice, and an event of a type without features
    profiles.append({**profiles[0], "age": 99})
    rows.append((profiles[1]["userid"], ts("2025-02-10 08:00"), "custom.somethingElse"))
    return rows, profiles


@pytest.mark.parametrize("kind,when,fs", [
    ("training", ts("2025-02-25 00:00"), FeatureSpec()),
    ("scoring", ts("2025-03-12 00:00"), FeatureSpec()),
    ("training", ts("2025-02-20 07:31:05.000001"), FeatureSpec(lookback_days=40, outcome_days=9, windows=(1, 3, 30))),
    ("scoring", ts("2025-03-05 13:00"), FeatureSpec(lookback_days=70, windows=())),  # two day masks
])
def test_sql_matches_the_reference(platform, data, kind, when, fs):
    rows, profiles = data
    events, profs = put_data(platform, "cmle", rows, profiles)
    query = render.feature_query(kind, events.table, profs.table, platform.tenant_id, when, fs)
    got = platform.read_dataset(platform.create_table_as("cmle_test_reference_cmle", query.sql).id).to_pandas()
    want = reference(rows, profiles, kind, when, fs)
    assert list(got.columns) == list(query.columns) == list(want.columns)
    got = got.sort_values("userid").reset_index(drop=True)
    assert got["userid"].tolist() == want["userid"].tolist() and len(got) > 50
    for col in query.columns[1:]:
        a, b = got[col], want[col]
        if col == "snapshot_ts":
            assert (a == pd.Timestamp(when)).all()
        elif pd.api.types.is_float_dtype(a):  # minutes and rates: the same doubles, NULL where undefined
            np.testing.assert_array_equal(a.to_numpy(float), b.astype(float).to_numpy(), err_msg=col)
        else:
            assert a.astype(object).where(a.notna(), None).tolist() == \
                b.astype(object).where(b.notna(), None).tolist(), col
