"""Small hand-made events and profiles on the local platform, laid out as the synthetic
stage lays them out (same dataset names, field groups and columns)."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

from cmle.ingestion import ingest_tables
from cmle.stages.synthetic import datasets

UTC = dt.timezone.utc
# Event types and the share of events they get in random_data (roughly the notebooks' mix).
EVENT_MIX = {
    "directMarketing.emailSent": 40, "directMarketing.emailOpened": 18, "directMarketing.emailClicked": 6,
    "web.webpagedetails.pageViews": 9, "advertising.impressions": 8, "advertising.clicks": 2,
    "web.webinteraction.linkClicks": 4, "commerce.productViews": 4, "commerce.purchases": 2,
    "decisioning.propositionDisplay": 3, "decisioning.propositionInteract": 2, "decisioning.propositionDismiss": 2,
}
CONVERSION = "web.formFilledOut"


def ts(text: str) -> dt.datetime:
    """'2025-03-01 12:00[:00[.ffffff]]' as a UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def events_table(rows, tenant: str = "cmle") -> pa.Table:
    """Events from (userid, timestamp, eventType) tuples; ``_id`` is e000000, e000001, ..."""
    rows = list(rows)
    users = pa.array([r[0] for r in rows], pa.string())
    return pa.table({
        "_id": pa.array([f"e{i:06d}" for i in range(len(rows))], pa.string()),
        "timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "eventType": pa.array([r[2] for r in rows], pa.string()),
        "producedBy": pa.array(["tests"] * len(rows), pa.string()),
        f"_{tenant}": pa.StructArray.from_arrays([users], ["userid"]),
    })


def profile(userid: str, age: int = 40, gender: str = "f", region: str = "north", tier: str = "gold",
            signup: dt.datetime | None = None) -> dict:
    return {"userid": userid, "age": age, "gender": gender, "region": region, "loyaltyTier": tier,
            "signupDate": signup or ts("2024-01-01 00:00")}


def profiles_table(profiles, tenant: str = "cmle") -> pa.Table:
    profiles = list(profiles)
    types = {"userid": pa.string(), "age": pa.int64(), "gender": pa.string(), "region": pa.string(),
             "loyaltyTier": pa.string(), "signupDate": pa.timestamp("us", tz="UTC")}
    arrays = [pa.array([p[k] for p in profiles], t) for k, t in types.items()]
    return pa.table({f"_{tenant}": pa.StructArray.from_arrays(arrays, list(types))})


def put_data(platform, owner: str, event_rows, profiles, key: str = "tests"):
    """Create the events and profiles datasets (named as the synthetic stage names them)
    and make them hold exactly these rows; returns (events dataset, profiles dataset)."""
    tenant = platform.tenant_id
    events, profs = datasets(platform, owner)
    ingest_tables(platform, events.id, [events_table(event_rows, tenant)], key=f"{key}-events", replace=True)
    ingest_tables(platform, profs.id, [profiles_table(profiles, tenant)], key=f"{key}-profiles", replace=True)
    return events, profs


def random_data(n_users: int, seed: int = 0, start: dt.datetime = ts("2025-01-01 00:00"), days: int = 70,
                events_per_user: int = 12, convert_p: float = 0.35):
    """Seeded random events and profiles: a mix of every event type, conversions spread over
    the window, profiles signing up before and during it, and one profile without events."""
    rnd = random.Random(seed)
    types, weights = list(EVENT_MIX), list(EVENT_MIX.values())
    span_us = days * 86_400 * 1_000_000
    rows, profiles = [], []
    for u in range(n_users):
        uid = f"user{u:04d}"
        for _ in range(rnd.randint(1, 2 * events_per_user)):
            when = start + dt.timedelta(microseconds=rnd.randrange(span_us))
            rows.append((uid, when, rnd.choices(types, weights)[0]))
        if rnd.random() < convert_p:
            rows.append((uid, start + dt.timedelta(microseconds=rnd.randrange(span_us)), CONVERSION))
        signup = start - dt.timedelta(days=rnd.randint(1, 400)) if rnd.random() < 0.9 else \
            start + dt.timedelta(days=rnd.randint(0, days - 1))
        profiles.append(profile(uid, age=rnd.randint(18, 80), gender=rnd.choice(["f", "m", "x"]),
                                region=rnd.choice(["north", "south", "east", "west"]),
                                tier=rnd.choice(["bronze", "silver", "gold"]), signup=signup))
    profiles.append(profile("user_no_events", signup=start - dt.timedelta(days=30)))
    return rows, profiles
