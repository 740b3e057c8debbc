"""Point in time for a spec with custom fields, on hand-made events whose every feature value
is known: identityMap identity, a goal with a field condition, eligibility by recent
activity, a custom tenant numeric field, an array field summed per event, profile attributes
with a date; nothing at or after T feeds a feature, the label sees only (T, T + W]; and the
churn outcome (does_not_occur)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from cmle.features import render
from cmle.features.plan import make_plan
from cmle.ingestion import ingest_tables
from cmle.modelspec import parse_spec

UTC = dt.timezone.utc
T = dt.datetime(2025, 3, 1, tzinfo=UTC)
PV, BUY, ADD = "web.webpagedetails.pageViews", "commerce.purchases", "commerce.productListAdds"

SPEC = """\
version: 1
name: handmade
events:
  dataset: Hand events
  identity: {namespace: ECID}
profiles:
  dataset: Hand profiles
  identity: {namespace: ECID}
  known_from: "_{tenant}.since"
  numeric: ["_{tenant}.points"]
  categorical: ["_{tenant}.tier"]
  dates: [{field: "_{tenant}.since", name: days_member}]
goal:
  event_types: [commerce.purchases]
  condition: commerce.order.priceTotal >= 20
  window_days: 10
eligibility:
  active_within_days: 20
  exclude_goal_reached: false
features:
  lookback_days: 30
  windows: [7]
  event_types: [commerce.purchases, web.webpagedetails.pageViews]
  numeric:
    - {field: "_{tenant}.orderValue", name: ov, aggregations: [sum, avg, max, min, count], event_types: [commerce.purchases]}
    - {field: "productListItems[].priceTotal", name: items, aggregations: [sum, max]}
"""

_ITEM = pa.struct([("SKU", pa.string()), ("priceTotal", pa.float64())])
_IDM = pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())])))


def at(days: float) -> dt.datetime:
    return T + dt.timedelta(days=days)


def ev(user, when, etype, price=None, value=None, items=None, namespace="ECID"):
    return {"user": user, "ts": when, "type": etype, "price": price, "value": value, "items": items, "ns": namespace}


# user -> what the definitions give (see the assertions)
EVENTS = [
    # a: a purchase 3 days before T (order value 30, items 10 + 15), a page view the day before,
    #    a page view and a purchase exactly at T (neither a feature nor the label), a purchase
    #    of 25 two days after T (the label)
    ev("a", at(-3), BUY, 30.0, 30.0, [10.0, 15.0]), ev("a", at(-1), PV), ev("a", at(0), PV),
    ev("a", at(0), BUY, 40.0, 40.0, [40.0]), ev("a", at(2), BUY, 25.0, 25.0, [25.0]),
    # b: active 15 days before T; after T a purchase of 10 (under the goal's 20) and one after the window
    ev("b", at(-15), PV), ev("b", at(5), BUY, 10.0, 10.0, [10.0]), ev("b", at(11), BUY, 50.0, 50.0, [50.0]),
    # c: last seen 25 days before T: not eligible (active within 20 days), though it buys after T
    ev("c", at(-25), PV), ev("c", at(1), BUY, 100.0, 100.0, [100.0]),
    # d: seen only before the look-back
    ev("d", at(-40), PV),
    # f: a big purchase before the look-back (not a feature), an add with items, a purchase of
    #    exactly 20 at the window's last instant (T + 10 days: the label)
    ev("f", at(-35), BUY, 99.0, 99.0, [99.0]), ev("f", at(-2), ADD, items=[5.0, None, 7.5]),
    ev("f", at(10), BUY, 20.0, 20.0, [20.0]),
    # g: no ECID in identityMap (an email only): belongs to nobody
    ev("g", at(-1), PV, namespace="Email"), ev("g", at(1), BUY, 50.0, 50.0, [50.0], namespace="Email"),
]
PROFILES = {"a": (100, "gold", at(-100)), "b": (5, "silver", at(5)), "e": (1, "none", at(-10))}


def events_table(tenant: str) -> pa.Table:
    rows = EVENTS
    return pa.table({
        "_id": pa.array([f"e{i}" for i in range(len(rows))]),
        "timestamp": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
        "eventType": pa.array([r["type"] for r in rows]),
        "identityMap": pa.array([[(r["ns"], [{"id": r["user"], "primary": True}])] for r in rows], _IDM),
        "commerce": pa.array([{"order": {"priceTotal": r["price"]}} if r["price"] is not None else None for r in rows],
                             pa.struct([("order", pa.struct([("priceTotal", pa.float64())]))])),
        "productListItems": pa.array([None if r["items"] is None else [{"SKU": "x", "priceTotal": p}
                                                                      for p in r["items"]] for r in rows],
                                     pa.list_(_ITEM)),
        f"_{tenant}": pa.array([{"orderValue": r["value"]} for r in rows], pa.struct([("orderValue", pa.float64())])),
    })


def profiles_table(tenant: str) -> pa.Table:
    return pa.table({
        "identityMap": pa.array([[("ECID", [{"id": u, "primary": True}])] for u in PROFILES], _IDM),
        f"_{tenant}": pa.array([{"points": p, "tier": tier, "since": since} for p, tier, since in PROFILES.values()],
                               pa.struct([("points", pa.int64()), ("tier", pa.string()),
                                          ("since", pa.timestamp("us", tz="UTC"))])),
    })


def _load(platform, name: str, table: pa.Table, cls: str):
    ds = platform.get_or_create_loaded_dataset(name, cls)
    ingest_tables(platform, ds.id, [table], key=name)
    return ds


@pytest.fixture
def sets(platform):
    tenant = platform.tenant_id
    events = _load(platform, "Hand events", events_table(tenant), "experienceevent")
    profiles = _load(platform, "Hand profiles", profiles_table(tenant), "profile")

    def build(text: str = SPEC, kind: str = "training", when: dt.datetime = T):
        plan = make_plan(parse_spec(text), tenant)
        query = render.feature_query(kind, events.table, profiles.table, tenant, when, plan=plan)
        ds = platform.create_table_as(f"cmle_test_{kind}", query.sql)
        df = platform.read_dataset(ds.id).to_pandas().set_index("userid").sort_index()
        assert list(df.columns) == list(query.columns[1:])
        return df

    return build


def test_eligibility_identity_and_label(sets):
    df = sets()
    # c inactive for 20 days, d before the look-back, e a profile without events, g no ECID
    assert list(df.index) == ["a", "b", "f"]
    assert df["label"].to_dict() == {"a": 1, "b": 0, "f": 1}  # b's 10 is under the goal, its 50 after the window


def test_features_see_only_the_look_back_before_t(sets):
    a, f = sets().loc["a"], sets().loc["f"]
    # a: the purchase at T and the page view at T are not features
    assert a["count_commerce_purchases"] == 1 and a["count_commerce_purchases_7d"] == 1
    assert a["count_web_webpagedetails_pageViews"] == 1
    assert a["minutes_since_commerce_purchases"] == 3 * 24 * 60
    assert a["ov_sum"] == a["ov_avg"] == a["ov_max"] == a["ov_min"] == 30.0 and a["ov_count"] == 1
    assert a["items_sum"] == 25.0 and a["items_max"] == 25.0  # the purchase's two items, summed per event
    assert a["events"] == 2 and a["active_days"] == 2
    # f: the purchase 35 days before T is outside the 30-day look-back
    assert f["count_commerce_purchases"] == 0 and f["ov_sum"] == 0.0 and f["ov_count"] == 0
    assert f[["ov_avg", "ov_max", "ov_min"]].isna().all()
    assert f["items_sum"] == 12.5 and f["items_max"] == 12.5  # the add's items, a missing price counted as 0


def test_profile_attributes_and_dates_known_at_t(sets):
    df = sets()
    assert df.loc["a", "points"] == 100 and df.loc["a", "tier"] == "gold" and df.loc["a", "days_member"] == 100
    assert df.loc["b", "tier"] == "silver" and df.loc["b", "days_member"] != df.loc["b", "days_member"]  # after T
    assert df.loc["f", ["points", "tier", "days_member"]].isna().all()  # no profile


def test_nothing_after_t_changes_the_features(sets, platform):
    before = sets().drop(columns="label")
    # the scoring set at T has the same features, with no label and no event after T read
    scoring = sets(kind="scoring")
    assert list(scoring.index) == ["a", "b", "f"]
    assert scoring.drop(columns="snapshot_ts").equals(before.drop(columns="snapshot_ts"))


def test_churn_goal_does_not_occur(sets):
    churn = SPEC.replace("  event_types: [commerce.purchases]\n  condition: commerce.order.priceTotal >= 20\n",
                         "  any_event: true\n  outcome: does_not_occur\n")
    df = sets(churn)
    # within 10 days a (day 2), b (day 5) and f (day 10) are all seen again; within 4 days only a
    assert df["label"].to_dict() == {"a": 0, "b": 0, "f": 0}
    short = sets(churn.replace("window_days: 10", "window_days: 4"))
    assert short["label"].to_dict() == {"a": 0, "b": 1, "f": 1}
