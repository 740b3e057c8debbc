"""The ``cmle`` framing reproduces the CMLE notebooks' training set (Week 2).

Positives: the formFilledOut row of a user with exactly one, features as of that row;
negatives: one seeded pseudo-random row of a user who never converted; running counts and
minutes-since over the whole history up to and including the row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from cmle import naming
from cmle.features import render, spec
from tests.features.eventdata import CONVERSION, events_table, profile, put_data, random_data, ts

SENT, OPENED, VIEW = "directMarketing.emailSent", "directMarketing.emailOpened", "commerce.productViews"
DISMISS = "decisioning.propositionDismiss"
MIN_PER_DAY = 24 * 60


def build_cmle(platform, seed: int = 42) -> pd.DataFrame:
    events = platform.find_dataset(naming.events_dataset("cmle"))
    query = render.feature_query("training", events.table, "unused", platform.tenant_id, framing="cmle", seed=seed)
    ds = platform.create_table_as(naming.training_set("cmle", "cmle"), query.sql)
    df = platform.read_dataset(ds.id).to_pandas()
    assert list(df.columns) == list(query.columns)
    return df.set_index("userid").sort_index()


HANDMADE = [
    ("p1", ts("2025-01-10 10:00"), SENT), ("p1", ts("2025-01-11 10:00"), OPENED),
    ("p1", ts("2025-01-12 10:00"), VIEW), ("p1", ts("2025-01-13 10:00"), CONVERSION),
    ("p1", ts("2025-01-14 10:00"), SENT),  # after the conversion: not in the positive row
    ("n1", ts("2025-01-10 12:00"), SENT), ("n1", ts("2025-01-11 12:00"), DISMISS),
    ("n1", ts("2025-01-12 12:00"), OPENED),
    ("m2", ts("2025-01-10 09:00"), CONVERSION), ("m2", ts("2025-01-20 09:00"), CONVERSION),  # two: in no class
]
# n1's possible rows (by event id) and the features as of each
N1_ROWS = {
    "e000005": dict(emailsReceived=1, propositionDismissed=0, emailsOpened=0, minutes_since_emailSent=0.0,
                    minutes_since_propositionDismiss=None, minutes_since_emailOpened=None),
    "e000006": dict(emailsReceived=1, propositionDismissed=1, emailsOpened=0, minutes_since_emailSent=MIN_PER_DAY,
                    minutes_since_propositionDismiss=0.0, minutes_since_emailOpened=None),
    "e000007": dict(emailsReceived=1, propositionDismissed=1, emailsOpened=1, minutes_since_emailSent=2 * MIN_PER_DAY,
                    minutes_since_propositionDismiss=MIN_PER_DAY, minutes_since_emailOpened=0.0),
}


def _random_row(ids, seed):
    """The notebooks' random row, made deterministic as the SQL does: smallest MD5(_id || seed)."""
    return min(ids, key=lambda i: (hashlib.md5(f"{i}{seed}".encode()).hexdigest(), i))


@pytest.fixture
def handmade(platform):
    put_data(platform, "cmle", HANDMADE, [profile(u) for u in ("p1", "n1", "m2")])
    return platform


def _value(row, col):
    v = row[col]
    return None if pd.isna(v) else v


def test_positive_is_the_conversion_row_with_features_as_of_then(handmade):
    p1 = build_cmle(handmade).loc["p1"]
    assert p1["label"] == 1 and p1["snapshot_ts"] == pd.Timestamp(ts("2025-01-13 10:00"))
    assert (p1["emailsReceived"], p1["emailsOpened"], p1["productsViewed"], p1["emailsClicked"]) == (1, 1, 1, 0)
    assert p1["minutes_since_emailSent"] == 3 * MIN_PER_DAY
    assert p1["minutes_since_emailOpened"] == 2 * MIN_PER_DAY
    assert p1["minutes_since_productView"] == MIN_PER_DAY
    assert pd.isna(p1["minutes_since_emailClick"])  # never happened: NULL, not 0


def test_negative_is_one_seeded_random_row(handmade):
    df = build_cmle(handmade)
    n1 = df.loc["n1"]
    chosen = _random_row(list(N1_ROWS), 42)
    assert n1["label"] == 0
    assert {k: _value(n1, k) for k in N1_ROWS[chosen]} == N1_ROWS[chosen]
    # the seed picks the row: every seed reproduces its own choice, and seeds differ
    seeds = (1, 2, 3, 4, 5)
    assert len({_random_row(list(N1_ROWS), s) for s in seeds}) > 1
    for seed in seeds:
        row = build_cmle(handmade, seed).loc["n1"]
        expected = N1_ROWS[_random_row(list(N1_ROWS), seed)]
        assert {k: _value(row, k) for k in expected} == expected


def test_two_conversions_put_a_user_in_no_class(handmade):
    """Exactly the notebooks' `subscriptionOccurred = 1`."""
    assert sorted(build_cmle(handmade).index) == ["n1", "p1"]


def notebook_reference(table) -> pd.DataFrame:
    """The notebooks' definition in pandas, independent of the SQL."""
    df = pd.DataFrame({"_id": table.column("_id").to_pylist(), "ts": table.column("timestamp").to_pandas(),
                       "event_type": table.column("eventType").to_pylist(),
                       "userid": table.column("_cmle").combine_chunks().field("userid").to_pylist()})
    df = df.sort_values(["userid", "ts", "_id"]).reset_index(drop=True)
    g = df.groupby("userid")
    df["subscriptionOccurred"] = g["event_type"].transform(lambda s: (s == CONVERSION).sum())
    for f in spec.NOTEBOOK_FEATURES:
        hit = df["event_type"] == f.event_type
        df[f.count] = hit.astype(np.int64).groupby(df["userid"]).cumsum()
        last = df["ts"].where(hit).groupby(df["userid"]).ffill()
        df[f.recency] = (df["ts"] - last).dt.total_seconds() / 60
    first = df.assign(h=[hashlib.md5(f"{i}42".encode()).hexdigest() for i in df["_id"]]) \
        .sort_values(["userid", "h", "_id"]).groupby("userid").head(1).index
    pick = ((df["subscriptionOccurred"] == 1) & (df["event_type"] == CONVERSION)) | \
           ((df["subscriptionOccurred"] == 0) & df.index.isin(first))
    out = df[pick].assign(label=lambda d: (d["subscriptionOccurred"] == 1).astype(np.int32))
    return out.set_index("userid").sort_index()


def test_matches_a_pandas_reference_on_random_data(platform):
    rows, profiles = random_data(200, seed=11, convert_p=0.4)
    rows += [("user0003", ts("2025-02-01 00:00"), CONVERSION)]  # maybe a second conversion for one user
    put_data(platform, "cmle", rows, profiles)
    got = build_cmle(platform)
    ref = notebook_reference(events_table(rows))
    assert list(got.index) == list(ref.index)
    assert 0 < got["label"].sum() < len(got)
    assert (got["snapshot_ts"] == ref["ts"]).all()
    assert (got["label"] == ref["label"]).all()
    for col in spec.notebook_feature_columns():
        np.testing.assert_allclose(got[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-12, err_msg=col)
