"""A Luma-style retail site's data, as a customer would export it from AEP: the second,
different dataset that shows cmle working on data it did not design.

Experience events with another schema than the synthetic stage's: the identity is ECID in
``identityMap`` (members also carry a CRMID), commerce events carry ``productListItems``
arrays and ``commerce.order``, and a custom tenant field ``_{tenant}.orderValue`` holds the
order value with shipping. A profiles (CRM) export goes with them: loyalty tier and points,
birth date, country. Nothing here knows about cmle's model spec; ``conf/models/retail.yaml``
is the spec a user would write for it (purchase in the next 30 days).

The shopper model: each visitor has a latent intent and engagement, an active period
(visitors start and stop visiting), and sessions in it. A session views pages and products;
it may add products to the cart (more likely with intent, loyalty and a recent visit),
check out, and purchase. So recent carts, past purchases, loyalty and visit rhythm predict
the next month's purchases, and page views alone predict them less well.

Write the files with ``python -m cmle.synthetic.retail --out data/luma`` (Parquet, or JSON
lines with ``--format jsonl``), then load them with ``cmle load``. Seeded: the same
arguments give the same files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cmle.synthetic.xdm import ecids, mix64, uuid_strings

EVENTS_FILE, PROFILES_FILE = "events", "profiles"
SITE = "https://luma.example.com"
PAGE_VIEW, PRODUCT_VIEW, ADD, REMOVE, CHECKOUT, PURCHASE, LINK = (
    "web.webpagedetails.pageViews", "commerce.productViews", "commerce.productListAdds",
    "commerce.productListRemovals", "commerce.checkouts", "commerce.purchases", "web.webinteraction.linkClicks")
EVENT_TYPES = (PAGE_VIEW, PRODUCT_VIEW, ADD, REMOVE, CHECKOUT, PURCHASE, LINK)
# (SKU, name, price): Luma's catalogue, abridged.
PRODUCTS = (
    ("24-MB01", "Joust Duffle Bag", 34.0), ("24-MB04", "Strive Shoulder Pack", 32.0),
    ("24-MB03", "Crown Summit Backpack", 38.0), ("24-MB05", "Wayfarer Messenger Bag", 45.0),
    ("24-WB04", "Overnight Duffle", 45.0), ("24-UG06", "Affirm Water Bottle", 7.0),
    ("24-UG07", "Dual Handle Cardio Ball", 12.0), ("24-UG04", "Zing Jump Rope", 12.0),
    ("24-UG02", "Pursuit Lumaflex Tone Band", 16.0), ("24-WG01", "Bolo Sport Watch", 49.0),
    ("24-MG04", "Aim Analog Watch", 45.0), ("24-MG01", "Endurance Watch", 49.0),
    ("MH01", "Chaz Kangeroo Hoodie", 52.0), ("MH03", "Bruno Compete Hoodie", 63.0),
    ("MJ01", "Beaumont Summit Kit", 42.0), ("MS04", "Gobi HeatTec Tee", 29.0),
    ("MT07", "Argus All-Weather Tank", 22.0), ("MP01", "Caesar Warm-Up Pant", 35.0),
    ("WH01", "Mona Pullover Hoodlie", 57.0), ("WJ03", "Augusta Pullover Jacket", 57.0),
    ("WS03", "Iris Workout Top", 29.0), ("WB01", "Bella Tank", 29.0), ("WP07", "Ida Workout Parachute Pant", 48.0),
    ("WSH01", "Fiona Fitness Short", 29.0), ("MSH02", "Apollo Running Short", 32.5),
)
TIERS = ("none", "silver", "gold")
COUNTRIES = ("US", "US", "US", "CA", "GB", "DE", "FR", "AU")
_ITEM = pa.struct([("SKU", pa.string()), ("name", pa.string()), ("quantity", pa.int64()),
                   ("priceTotal", pa.float64())])
_IDENTITY = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP = pa.map_(pa.string(), pa.list_(_IDENTITY))
_VALUE = pa.struct([("value", pa.float64())])
_TS = pa.timestamp("us", tz="UTC")
DAY_US = 86_400_000_000


def event_schema(tenant: str) -> pa.Schema:
    return pa.schema([
        ("_id", pa.string()), ("timestamp", _TS), ("eventType", pa.string()), ("identityMap", IDENTITY_MAP),
        ("web", pa.struct([("webPageDetails", pa.struct([("name", pa.string()), ("URL", pa.string()),
                                                          ("pageViews", _VALUE)]))])),
        ("commerce", pa.struct([("productViews", _VALUE), ("productListAdds", _VALUE),
                                ("productListRemovals", _VALUE), ("checkouts", _VALUE), ("purchases", _VALUE),
                                ("order", pa.struct([("purchaseID", pa.string()), ("priceTotal", pa.float64()),
                                                     ("currencyCode", pa.string())]))])),
        ("productListItems", pa.list_(_ITEM)),
        (f"_{tenant}", pa.struct([("orderValue", pa.float64()), ("channel", pa.string())])),
    ])


def profile_schema(tenant: str) -> pa.Schema:
    return pa.schema([
        ("identityMap", IDENTITY_MAP),
        ("person", pa.struct([("birthDate", pa.date32())])),
        ("homeAddress", pa.struct([("countryCode", pa.string())])),
        (f"_{tenant}", pa.struct([("loyaltyTier", pa.string()), ("loyaltyPoints", pa.int64()),
                                  ("memberSince", _TS)])),
    ])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class RetailData:
    """The generated events and profiles (Arrow tables in the XDM shape)."""

    events: pa.Table
    profiles: pa.Table
    start: dt.datetime
    end: dt.datetime

    @property
    def n_events(self) -> int:
        return self.events.num_rows


def _identity_maps(users: np.ndarray, member: np.ndarray) -> pa.Array:
    """identityMap per row: ECID (primary) for everyone, CRMID for loyalty members."""
    n = len(users)
    ecid = ecids(users)
    crm = pa.array([f"LUMA-{u:07d}" for u in users.tolist()], pa.string())
    per_row = 1 + member.astype(np.int32)
    map_offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
    keys, ids, auth, primary = [], [], [], []
    order = np.empty(int(map_offsets[-1]), np.int64)
    # entries: for each row, ECID then (members) CRMID
    first = map_offsets[:-1]
    order[first] = np.arange(n)
    second = first[member] + 1
    order[second] = n + np.flatnonzero(member)
    all_ids = pa.concat_arrays([ecid, crm])
    ids = all_ids.take(pa.array(order))
    is_crm = order >= n
    which = pa.array(is_crm.astype(np.int32))
    keys = pa.array(["ECID", "CRMID"]).take(which)
    auth = pa.array(["ambiguous", "authenticated"]).take(which)
    primary = pa.array(~is_crm)
    entries = pa.StructArray.from_arrays([ids, auth, primary], fields=list(_IDENTITY))
    lists = pa.ListArray.from_arrays(pa.array(np.arange(len(order) + 1, dtype=np.int32)), entries)
    return pa.MapArray.from_arrays(pa.array(map_offsets), keys, lists, type=IDENTITY_MAP)


def generate(users: int = 5000, weeks: int = 13, end: str | dt.datetime = "2025-06-01", seed: int = 7,
             tenant: str = "cmle", bad_rows: float = 0.0) -> RetailData:
    """Seeded retail events and profiles for ``users`` visitors over ``weeks`` ending at ``end``.

    ``bad_rows`` > 0 adds that share of extra events without an identity or a timestamp, as
    exports sometimes hold (for ``cmle load``'s report).
    """
    if users < 1 or weeks < 1:
        raise ValueError("users and weeks must be at least 1")
    rng = np.random.default_rng(seed)
    end_t = end if isinstance(end, dt.datetime) else dt.datetime.fromisoformat(str(end))
    end_t = end_t.replace(tzinfo=dt.timezone.utc) if end_t.tzinfo is None else end_t
    days = weeks * 7
    start_t = end_t - dt.timedelta(days=days)
    start_us = int(start_t.timestamp() * 1_000_000)

    # --- visitors ---------------------------------------------------------------------------
    intent = rng.normal(0.0, 1.0, users)
    engagement = rng.gamma(1.3, 0.09, users) * np.exp(0.25 * intent)  # sessions per day
    tier_score = intent + rng.normal(0.0, 1.0, users)
    tier = np.digitize(tier_score, [0.6, 1.6])  # 0 none, 1 silver, 2 gold
    member = tier > 0
    first_day = rng.uniform(-days * 0.5, days * 0.6, users)
    last_day = first_day + rng.exponential(days * 0.9, users)
    lo, hi = np.clip(first_day, 0, days), np.clip(last_day, 0, days)
    span = np.maximum(hi - lo, 0.0)

    # --- sessions (sorted by visitor, then time) --------------------------------------------
    n_sessions = rng.poisson(engagement * span)
    s_user = np.repeat(np.arange(users), n_sessions)
    s_day = lo[s_user] + rng.random(len(s_user)) * span[s_user]
    order = np.lexsort((s_day, s_user))
    s_user, s_day = s_user[order], s_day[order]
    prev_same = np.r_[False, s_user[1:] == s_user[:-1]]
    gap = np.where(prev_same, np.r_[0.0, np.diff(s_day)], 30.0)
    momentum = np.exp(-gap / 7.0)  # a visit soon after another means more intent now
    th = intent[s_user]
    p_add = _sigmoid(-1.9 + 0.9 * th + 0.35 * tier[s_user] + 1.1 * momentum)
    add = rng.random(len(s_user)) < p_add
    checkout = add & (rng.random(len(s_user)) < 0.55)
    purchase = checkout & (rng.random(len(s_user)) < _sigmoid(0.6 + 0.6 * th + 0.3 * tier[s_user]))
    remove = add & (rng.random(len(s_user)) < 0.15)
    n_pv = 1 + rng.poisson(2.0, len(s_user))
    n_prod = rng.poisson(0.8 + 0.8 * _sigmoid(th), len(s_user))
    n_link = rng.poisson(0.4, len(s_user))
    n_cart = np.where(add, 1 + rng.poisson(0.6, len(s_user)), 0)

    # --- events: per session, page views, product views, adds, (removal), checkout, purchase, links
    counts = {PAGE_VIEW: n_pv, PRODUCT_VIEW: n_prod, ADD: add.astype(int), REMOVE: remove.astype(int),
              CHECKOUT: checkout.astype(int), PURCHASE: purchase.astype(int), LINK: n_link}
    per_session = sum(counts.values())
    e_session = np.repeat(np.arange(len(s_user)), per_session)
    e_type = np.concatenate([np.repeat(np.full(len(s_user), i), c) for i, c in enumerate(counts.values())])
    # regroup the per-type blocks by session: stable sort by (session, funnel order)
    e_sess_by_type = np.concatenate([np.repeat(np.arange(len(s_user)), c) for c in counts.values()])
    o = np.lexsort((e_type, e_sess_by_type))
    e_type = e_type[o]
    session_first = np.repeat(np.r_[0, np.cumsum(per_session)[:-1]], per_session)
    # seconds between a session's events: 20 s to 2 min, so its events keep the funnel order
    elapsed = np.cumsum(rng.integers(20, 120, len(e_session)))
    offset_s = elapsed - elapsed[session_first]
    e_us = start_us + (s_day[e_session] * DAY_US).astype(np.int64) + offset_s.astype(np.int64) * 1_000_000
    e_user = s_user[e_session]
    n = len(e_type)

    # --- products: the viewed one, the session's cart (adds, checkout, purchase) -------------
    prices = np.array([p[2] for p in PRODUCTS])
    cart_first = rng.integers(0, len(PRODUCTS), len(s_user))
    view_product = rng.integers(0, len(PRODUCTS), n)
    items_per_event = np.where(e_type == 1, 1, np.where(np.isin(e_type, [2, 4, 5]), n_cart[e_session],
                                                        np.where(e_type == 3, 1, 0)))
    item_event = np.repeat(np.arange(n), items_per_event)
    item_rank = np.arange(len(item_event)) - np.repeat(np.r_[0, np.cumsum(items_per_event)[:-1]], items_per_event)
    item_product = np.where(e_type[item_event] == 1, view_product[item_event],
                            (cart_first[e_session[item_event]] + 7 * item_rank) % len(PRODUCTS))
    quantity = np.where(e_type[item_event] == 1, 1, 1 + (mix64(item_event.astype(np.uint64), seed) % 2).astype(int))
    item_total = np.round(prices[item_product] * quantity, 2)
    items = pa.StructArray.from_arrays([
        pa.array([PRODUCTS[i][0] for i in item_product.tolist()], pa.string()),
        pa.array([PRODUCTS[i][1] for i in item_product.tolist()], pa.string()),
        pa.array(quantity, pa.int64()), pa.array(item_total, pa.float64())], fields=list(_ITEM))
    offsets = np.concatenate([[0], np.cumsum(items_per_event)]).astype(np.int32)
    has_items = items_per_event > 0
    product_lists = pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(~has_items))
    order_total = np.bincount(item_event, weights=item_total, minlength=n)
    is_purchase = e_type == 5

    def value(mask: np.ndarray) -> pa.Array:
        return pa.StructArray.from_arrays([pa.array(np.ones(n))], fields=list(_VALUE), mask=pa.array(~mask))

    commerce_mask = np.isin(e_type, [1, 2, 3, 4, 5])
    order_struct = pa.StructArray.from_arrays([
        uuid_strings(mix64(np.arange(n, dtype=np.uint64), seed + 11), mix64(np.arange(n, dtype=np.uint64), seed + 12)),
        pa.array(np.round(order_total, 2)), pa.repeat(pa.scalar("USD"), n).cast(pa.string())],
        names=["purchaseID", "priceTotal", "currencyCode"], mask=pa.array(~is_purchase))
    commerce = pa.StructArray.from_arrays(
        [value(e_type == 1), value(e_type == 2), value(e_type == 3), value(e_type == 4), value(is_purchase),
         order_struct],
        fields=list(event_schema(tenant).field("commerce").type), mask=pa.array(~commerce_mask))
    page_names = np.array(["home", "women", "men", "gear", "training", "sale", "what-is-new", "product", "cart",
                           "checkout", "order-confirmation"])
    page = np.where(e_type == 0, mix64(np.arange(n, dtype=np.uint64), seed) % 7,
                    np.where(e_type == 5, 10, np.where(e_type == 4, 9, np.where(np.isin(e_type, [2, 3]), 8, 7))))
    page_idx = pa.array(page.astype(np.int32))
    web = pa.StructArray.from_arrays([pa.StructArray.from_arrays([
        pa.array(page_names.tolist()).take(page_idx), pa.array([f"{SITE}/{p}" for p in page_names]).take(page_idx),
        value(e_type == 0)],
        fields=list(event_schema(tenant).field("web").type[0].type))], fields=list(event_schema(tenant).field("web").type))
    shipping = np.where(order_total >= 50, 0.0, 5.0)
    channel = pa.array(["web", "app"]).take(pa.array((mix64(e_user.astype(np.uint64), seed + 3) % 4 == 0).astype(np.int32)))
    custom = pa.StructArray.from_arrays([pa.array(np.where(is_purchase, np.round(order_total + shipping, 2), np.nan),
                                                  mask=~is_purchase), channel],
                                        fields=list(event_schema(tenant).field(f"_{tenant}").type))
    events = pa.Table.from_arrays([
        uuid_strings(mix64(np.arange(n, dtype=np.uint64), seed + 1), mix64(np.arange(n, dtype=np.uint64), seed + 2)),
        pa.array(e_us, _TS), pa.array(list(EVENT_TYPES)).take(pa.array(e_type.astype(np.int32))),
        _identity_maps(e_user, member[e_user]),
        web, commerce, product_lists, custom], schema=event_schema(tenant))
    # within a session the funnel order holds; the table is in visitor, time order, and ends
    # before ``end`` (a session that starts late is cut there, as an export would cut it)
    keep = np.flatnonzero(e_us < start_us + days * DAY_US)
    events = events.take(pa.array(keep[np.lexsort((e_us[keep], e_user[keep]))]))
    if bad_rows > 0:
        events = _with_bad_rows(events, rng, bad_rows)
    return RetailData(events=events, profiles=_profiles(users, tier, member, rng, start_us, tenant),
                      start=start_t, end=end_t)


def _profiles(users: int, tier: np.ndarray, member: np.ndarray, rng, start_us: int, tenant: str) -> pa.Table:
    u = np.arange(users)
    birth = np.where(member, rng.integers(-18_000, 5_000, users), 0)  # days since 1970 (1920s to 1980s)
    points = np.where(member, rng.poisson(150 * tier + 20), 0)
    since = start_us - rng.integers(1, 3 * 365, users) * DAY_US
    country = pa.array(list(COUNTRIES)).take(pa.array(rng.integers(0, len(COUNTRIES), users).astype(np.int32)))
    t = profile_schema(tenant)
    return pa.Table.from_arrays([
        _identity_maps(u, member),
        pa.StructArray.from_arrays([pa.array(birth.astype("int32"), pa.date32(), mask=~member)],
                                   fields=list(t.field("person").type)),
        pa.StructArray.from_arrays([country], fields=list(t.field("homeAddress").type)),
        pa.StructArray.from_arrays([pa.array(list(TIERS)).take(pa.array(tier.astype(np.int32))),
                                    pa.array(points, pa.int64()),
                                    pa.array(since, _TS, mask=~member)],
                                   fields=list(t.field(f"_{tenant}").type)),
    ], schema=t)


def _with_bad_rows(events: pa.Table, rng, share: float) -> pa.Table:
    """Copies of some events without an identity (half) or a timestamp (the other half)."""
    k = max(1, int(events.num_rows * share))
    pick = rng.choice(events.num_rows, k, replace=False)
    bad = events.take(pa.array(np.sort(pick)))
    half = k // 2
    ident = bad.column("identityMap").combine_chunks()
    no_id = pa.array([None] * half + ident.slice(half).to_pylist(), ident.type)
    ts = bad.column("timestamp").combine_chunks()
    no_ts = pa.array(ts.slice(0, half).to_pylist() + [None] * (k - half), ts.type)
    ids = pa.array([f"bad-{i}" for i in range(k)], pa.string())
    bad = bad.set_column(0, "_id", ids).set_column(1, "timestamp", no_ts).set_column(3, "identityMap", no_id)
    return pa.concat_tables([events, bad])


# --- export files --------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return value.isoformat()
    raise TypeError(type(value))


def _xdm_json(row: dict) -> dict:
    """A row as XDM JSON: identityMap as an object of namespaces, nulls left out."""
    out = {}
    for k, v in row.items():
        if v is None:
            continue
        if k == "identityMap":
            v = {ns: ids for ns, ids in v}
        elif isinstance(v, dict):
            v = _xdm_json(v)
            if not v:
                continue
        elif isinstance(v, list):
            v = [_xdm_json(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out


def write_table(table: pa.Table, folder: Path, stem: str, fmt: str = "parquet", rows_per_file: int = 200_000) -> list[Path]:
    """``table`` as export files ``{stem}-00000.parquet`` (or ``.json``, JSON lines) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        part = table.slice(start, rows_per_file)
        if fmt == "parquet":
            path = folder / f"{stem}-{i:05d}.parquet"
            pq.write_table(part, path)
        elif fmt == "jsonl":
            path = folder / f"{stem}-{i:05d}.json"
            with open(path, "w", encoding="utf-8") as fh:
                for row in part.to_pylist():
                    fh.write(json.dumps(_xdm_json(row), default=_json_default) + "\n")
        else:
            raise ValueError(f"format must be parquet or jsonl, not {fmt!r}")
        paths.append(path)
    return paths


def write_export(folder: str | Path, users: int = 5000, weeks: int = 13, end: str = "2025-06-01", seed: int = 7,
                 tenant: str = "cmle", fmt: str = "parquet", bad_rows: float = 0.0) -> dict:
    """Generate and write the events and profiles exports; returns what was written."""
    data = generate(users, weeks, end, seed, tenant, bad_rows)
    folder = Path(folder)
    ev = write_table(data.events, folder / EVENTS_FILE, EVENTS_FILE, fmt)
    pr = write_table(data.profiles, folder / PROFILES_FILE, PROFILES_FILE, fmt)
    return {"events": data.n_events, "profiles": data.profiles.num_rows, "event_files": [str(p) for p in ev],
            "profile_files": [str(p) for p in pr], "start": data.start.isoformat(), "end": data.end.isoformat()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for events/ and profiles/")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--weeks", type=int, default=13)
    parser.add_argument("--end", default="2025-06-01", help="end of the history (UTC midnight)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tenant", default="cmle", help="tenant id of the custom fields (_<tenant>)")
    parser.add_argument("--format", default="parquet", choices=("parquet", "jsonl"))
    parser.add_argument("--bad-rows", type=float, default=0.0, help="share of extra rows without identity/time")
    args = parser.parse_args(argv)
    out = write_export(args.out, args.users, args.weeks, args.end, args.seed, args.tenant, args.format, args.bad_rows)
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("_files")} |
                     {"folder": str(Path(args.out).resolve())}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
