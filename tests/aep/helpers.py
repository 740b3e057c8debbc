"""Small builders shared by the AEP adapter tests: XDM set-up through the platform, and
Arrow tables shaped like the stages' data contracts."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from cmle import naming
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE, Dataset

OWNER = "cmle"
PROFILE_FIELDS = {"userid": "string", "age": "integer", "region": "string"}
SCORE_FIELDS = {"userid": "string", "propensity": "number"}


def profile_dataset(platform, name: str | None = None, fields: dict | None = None) -> Dataset:
    fields = fields or PROFILE_FIELDS
    fg = platform.get_or_create_field_group(naming.profile_field_group(OWNER), fields, PROFILE)
    schema = platform.get_or_create_schema(naming.profile_schema(OWNER), PROFILE, [fg], profile_enabled=True)
    return platform.get_or_create_dataset(name or naming.profiles_dataset(OWNER), schema, profile_enabled=True)


def events_dataset(platform) -> Dataset:
    fg = platform.get_or_create_field_group(naming.event_field_group(OWNER), {"userid": "string"}, EXPERIENCE_EVENT)
    schema = platform.get_or_create_schema(naming.event_schema(OWNER), EXPERIENCE_EVENT, [fg])
    return platform.get_or_create_dataset(naming.events_dataset(OWNER), schema)


def ecid(i: int) -> str:
    """A valid ECID (38 digits, each 19-digit half a signed 64-bit integer) for user ``i``;
    sorted ids follow ``i``."""
    return f"{i:019d}{(i * 7919 + 1) % (2**63 - 1):019d}"


def profiles_table(n: int, start: int = 0, tenant: str = "_cmle") -> pa.Table:
    rows = [{"userid": ecid(i), "age": 20 + i % 50, "region": ["north", "south"][i % 2]}
            for i in range(start, start + n)]
    return pa.table({tenant: pa.array(rows, pa.struct([("userid", pa.string()), ("age", pa.int64()),
                                                       ("region", pa.string())]))})


def scores_table(scores: dict[str, float], tenant: str = "_cmle") -> pa.Table:
    rows = [{"userid": u, "propensity": p} for u, p in sorted(scores.items())]
    return pa.table({tenant: pa.array(rows, pa.struct([("userid", pa.string()), ("propensity", pa.float64())]))})


def events_table(n_users: int, per_user: int = 3, tenant: str = "_cmle") -> pa.Table:
    base = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    types = ["directMarketing.emailSent", "directMarketing.emailOpened", "web.formFilledOut"]
    ids, ts, et, users, dm, web = [], [], [], [], [], []
    for u in range(n_users):
        for k in range(per_user):
            ids.append(f"e{u:04d}-{k}")
            ts.append(base + dt.timedelta(hours=u + k))
            et.append(types[k % len(types)])
            users.append({"userid": ecid(u)})
            if et[-1].startswith("directMarketing"):
                dm.append({"sends": {"value": 1.0}, "messageID": f"m{u}-{k}"})
                web.append(None)
            else:
                dm.append(None)
                web.append({"webPageDetails": {"pageViews": {"value": 1.0}, "URL": f"https://x/{u}"}})
    dm_t = pa.struct([("sends", pa.struct([("value", pa.float64())])), ("messageID", pa.string())])
    web_t = pa.struct([("webPageDetails", pa.struct([("pageViews", pa.struct([("value", pa.float64())])),
                                                     ("URL", pa.string())]))])
    return pa.table({
        "_id": pa.array(ids), "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")), "eventType": pa.array(et),
        "producedBy": pa.array(["cmle-test"] * len(ids)),
        tenant: pa.array(users, pa.struct([("userid", pa.string())])),
        "directMarketing": pa.array(dm, dm_t), "web": pa.array(web, web_t)})
