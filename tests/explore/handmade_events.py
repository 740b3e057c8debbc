"""A small hand-made events table with known answers, put on a platform the way the
synthetic stage puts its events there (field group, schema, dataset by `naming`, then
`ingest_tables`). Shared by tests/explore and tests/stages/test_explore_stage.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa

from cmle import naming
from cmle.ingestion import ingest_tables
from cmle.platform.base import EXPERIENCE_EVENT, Dataset

S = "directMarketing.emailSent"
O = "directMarketing.emailOpened"  # noqa: E741 - the funnel's letter
C = "directMarketing.emailClicked"
F = "web.formFilledOut"
PV = "web.webpagedetails.pageViews"
IMP = "advertising.impressions"
AC = "advertising.clicks"

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

# user -> [(event type, hours after T0)]. What each user tests:
# u1 the whole funnel in order, then converts; u2 a repeated send; u3 converts without
# email; u4 one page view; u5 a click logged before any send (never "in order");
# u6 converts before the emails; u7 two clicks, no conversion.
EVENTS = {
    "u1": [(S, 0), (O, 24), (C, 25), (PV, 26), (F, 27)],
    "u2": [(S, 0), (O, 10), (S, 30)],
    "u3": [(IMP, 0), (AC, 1), (PV, 2), (F, 3)],
    "u4": [(PV, 5)],
    "u5": [(C, 0), (S, 5)],
    "u6": [(F, 0), (S, 10), (O, 20)],
    "u7": [(S, 0), (O, 5), (C, 6), (C, 7)],
}

_DM = pa.struct([("messageID", pa.string())])
_WEB = pa.struct([("webPageDetails", pa.struct([("name", pa.string())]))])


def events_frame() -> pd.DataFrame:
    """One row per event: userid, eventType, timestamp (UTC), _id."""
    rows = [{"userid": user, "eventType": etype, "timestamp": T0 + timedelta(hours=h), "_id": f"{user}-{i}"}
            for user, events in EVENTS.items() for i, (etype, h) in enumerate(events)]
    return pd.DataFrame(rows)


def events_table(tenant: str = "cmle") -> pa.Table:
    """The events as Arrow, per the events data contract."""
    df = events_frame()
    direct = [{"messageID": f"m-{i}"} if e.startswith("directMarketing") else None
              for i, e in enumerate(df["eventType"])]
    web = [None if e.startswith("directMarketing") else {"webPageDetails": {"name": "home"}}
           for e in df["eventType"]]
    return pa.table({
        "_id": pa.array(df["_id"], pa.string()),
        "timestamp": pa.array(df["timestamp"], pa.timestamp("us", tz="UTC")),
        "eventType": pa.array(df["eventType"], pa.string()),
        "producedBy": pa.array(["handmade"] * len(df), pa.string()),
        f"_{tenant}": pa.array([{"userid": u} for u in df["userid"]], pa.struct([("userid", pa.string())])),
        "directMarketing": pa.array(direct, _DM),
        "web": pa.array(web, _WEB),
    })


def events_dataset(platform, owner: str) -> Dataset:
    """Get or create the owner's events dataset (empty)."""
    fg = platform.get_or_create_field_group(naming.event_field_group(owner), {"userid": "string"}, EXPERIENCE_EVENT)
    schema = platform.get_or_create_schema(naming.event_schema(owner), EXPERIENCE_EVENT, [fg])
    return platform.get_or_create_dataset(naming.events_dataset(owner), schema)


def put_events(platform, owner: str, table: pa.Table | None = None) -> Dataset:
    """The events dataset holding ``table`` (default: the hand-made events) as one batch."""
    ds = events_dataset(platform, owner)
    table = events_table(platform.tenant_id) if table is None else table
    ingest_tables(platform, ds.id, [table], key=f"handmade-{table.num_rows}")
    return ds
