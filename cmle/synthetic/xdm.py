"""Arrow tables of the events and profiles datasets, with XDM field names.

Events (ExperienceEvent class, field names of the CMLE notebooks' ``create_xdm_event``):
``_id``, ``timestamp``, ``eventType``, ``producedBy``, ``_{tenant}.userid``, and either
``directMarketing`` (email events) or ``web`` (every other type, as in the notebooks).
Profiles: ``_{tenant}`` with ``userid`` and the synthetic attributes.

Every value is a function of the generated data and the generation parameters: ``_id`` and
the message ids are hashes of (parameters, row), the identity is a hash of the user number,
pages and referrers are picked by a hash of the row. So a piece of the table can be built
without the rest, and the same parameters give the same bytes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Bump when the tables' layout or content rules change: it is part of the ingestion key.
LAYOUT_VERSION = 1
PRODUCED_BY = "cmle-synthetic"
SERVER = "www.example.com"
EMAIL_DOMAIN = "example.com"

# Custom fields under `_{tenant}` (name -> XDM type), for the platform's field groups.
EVENT_FIELDS = {"userid": "string"}
PROFILE_FIELDS = {"userid": "string", "age": "integer", "gender": "string", "region": "string",
                  "loyaltyTier": "string", "signupDate": "date-time"}

_TS = pa.timestamp("us", tz="UTC")
_VALUE = pa.struct([("value", pa.float64())])
DIRECT_MARKETING = pa.struct([
    ("emailDelivered", _VALUE), ("sends", _VALUE), ("opens", _VALUE), ("offerOpens", _VALUE),
    ("clicks", _VALUE), ("emailVisitorID", pa.string()), ("hashedEmail", pa.string()),
    ("messageID", pa.string()),
])
_WEB_INTERACTION = pa.struct([("linkClicks", _VALUE), ("URL", pa.string()), ("name", pa.string()),
                              ("region", pa.string()), ("type", pa.string())])
_WEB_PAGE = pa.struct([("pageViews", _VALUE), ("URL", pa.string()), ("isErrorPage", pa.bool_()),
                       ("name", pa.string()), ("server", pa.string()), ("siteSection", pa.string()),
                       ("viewName", pa.string())])
_WEB_REFERRER = pa.struct([("URL", pa.string()), ("type", pa.string())])
WEB = pa.struct([("webInteraction", _WEB_INTERACTION), ("webPageDetails", _WEB_PAGE),
                 ("webReferrer", _WEB_REFERRER)])


def event_schema(tenant: str) -> pa.Schema:
    return pa.schema([("_id", pa.string()), ("timestamp", _TS), ("eventType", pa.string()),
                      ("producedBy", pa.string()), (f"_{tenant}", pa.struct([("userid", pa.string())])),
                      ("directMarketing", DIRECT_MARKETING), ("web", WEB)])


def profile_schema(tenant: str) -> pa.Schema:
    return pa.schema([(f"_{tenant}", pa.struct([
        ("userid", pa.string()), ("age", pa.int64()), ("gender", pa.string()), ("region", pa.string()),
        ("loyaltyTier", pa.string()), ("signupDate", _TS)]))])


# --- hashing and fixed-width strings ----------------------------------------------------------
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
_ECID_SALTS = (np.uint64(0x5EED0000C0FFEE01), np.uint64(0x5EED0000C0FFEE02))
_HASHED_EMAIL_SALTS = tuple(np.uint64(0xE3A11000 + i) for i in range(4))
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def mix64(x: np.ndarray, salt: int | np.uint64 = 0) -> np.ndarray:
    """SplitMix64 finaliser of ``x ^ salt``: a bijection of uint64, so distinct inputs give
    distinct outputs."""
    z = (np.asarray(x).astype(np.uint64) ^ np.uint64(salt)) + _GOLDEN
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _strings(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


_HEX_PAIRS = np.array([[_HEX[i >> 4], _HEX[i & 15]] for i in range(256)], np.uint8)


def _hex(h: np.ndarray) -> np.ndarray:
    """(n, 16) hex digits of uint64 values (big-endian)."""
    pairs = _HEX_PAIRS.view(np.uint16).ravel()  # byte -> its two hex digits
    return pairs[h.astype(">u8").view(np.uint8)].view(np.uint8).reshape(len(h), 16)


def _digits(h: np.ndarray, width: int = 19) -> np.ndarray:
    """(n, width) decimal digits of ``h mod 10**width``, zero-padded."""
    h = h % np.uint64(10**width)
    out = np.empty((len(h), width), np.uint8)
    for i in range(width - 1, -1, -1):
        out[:, i] = (h % np.uint64(10)).astype(np.uint8) + ord("0")
        h = h // np.uint64(10)
    return out


# Column of each UUID character in [32 hex digits, "-"]: 8-4-4-4-12.
_UUID_COLUMNS = np.array([*range(0, 8), 32, *range(8, 12), 32, *range(12, 16), 32, *range(16, 20), 32,
                          *range(20, 32)])


def uuid_strings(h1: np.ndarray, h2: np.ndarray) -> pa.Array:
    """UUID-formatted (8-4-4-4-12 hex) strings of two uint64 arrays."""
    chars = np.concatenate([_hex(h1), _hex(h2), np.full((len(h1), 1), ord("-"), np.uint8)], axis=1)
    return _strings(chars[:, _UUID_COLUMNS])


_INT63 = np.uint64(2**63 - 1)


def ecids(users: np.ndarray) -> pa.Array:
    """Valid ECIDs (:mod:`cmle.ecid`): two 19-digit halves hashed from the user number, each a
    non-negative signed 64-bit integer (the hash with its top bit cleared, zero-padded), the
    shape of the notebooks' ``get_ecid``; the same user always gets the same one."""
    u = np.asarray(users, np.uint64)
    halves = [_digits(mix64(u, salt) & _INT63) for salt in _ECID_SALTS]
    return _strings(np.concatenate(halves, axis=1))


def emails(users: np.ndarray) -> pa.Array:
    """``synthetic-user-{n}@example.com``, the notebooks' e-mail key (on a reserved domain)."""
    return pc.binary_join_element_wise("synthetic-user-", pc.cast(pa.array(np.asarray(users, np.int64)), pa.string()),
                                       f"@{EMAIL_DOMAIN}", "")


def _hashed_emails(users: np.ndarray) -> pa.Array:
    u = np.asarray(users, np.uint64)
    return _strings(np.concatenate([_hex(mix64(u, s)) for s in _HASHED_EMAIL_SALTS], axis=1))


# --- the synthetic web site ----------------------------------------------------------------------
# (path, page name, site section)
PAGES = (
    ("", "home", "home"), ("pricing", "pricing", "pricing"), ("plans", "plans", "pricing"),
    ("features", "features", "product"), ("blog", "blog", "content"), ("support", "support", "support"),
    ("faq", "faq", "support"), ("about", "about", "company"),
    ("products/basic", "product basic", "product"), ("products/plus", "product plus", "product"),
    ("products/premium", "product premium", "product"), ("checkout/confirmation", "order confirmation", "checkout"),
    ("landing/spring-offer", "spring offer", "campaign"), ("landing/newsletter", "newsletter offer", "campaign"),
    ("subscribe", "subscriptionForm", "subscription"),
)
_PAGE_INDEX = {p[1]: i for i, p in enumerate(PAGES)}
# Which pages an event of each type happens on (by page name).
_TYPE_PAGES = {
    "advertising.impressions": ("spring offer", "newsletter offer"),
    "advertising.clicks": ("spring offer", "newsletter offer"),
    "web.webpagedetails.pageViews": ("home", "pricing", "plans", "features", "blog", "support", "faq", "about"),
    "web.webinteraction.linkClicks": ("home", "pricing", "plans", "features", "blog", "support", "faq", "about"),
    "commerce.productViews": ("product basic", "product plus", "product premium"),
    "commerce.purchases": ("order confirmation",),
    "decisioning.propositionDisplay": ("home", "pricing", "plans"),
    "decisioning.propositionInteract": ("home", "pricing", "plans"),
    "decisioning.propositionDismiss": ("home", "pricing", "plans"),
    "web.formFilledOut": ("subscriptionForm",),
}
# webInteraction.linkClicks.value is 1 for these types (as in the notebooks), else 0.
CLICK_TYPES = ("advertising.clicks", "commerce.purchases", "web.webinteraction.linkClicks", "web.formFilledOut",
               "decisioning.propositionInteract", "decisioning.propositionDismiss")
_INTERACTION_NAMES = ("cta-primary", "nav-menu", "footer-link", "offer-banner", "content-link")
_INTERACTION_REGIONS = ("header", "hero", "body", "sidebar", "footer")
_INTERACTION_TYPES = ("download", "exit", "other")
REFERRERS = (("internal", f"https://{SERVER}/"), ("external", "https://partner.example.org/"),
             ("search_engine", "https://search.example.net/"), ("email", f"https://mail.{EMAIL_DOMAIN}/"),
             ("social", "https://social.example.net/"), ("unknown", None), ("usenet", "news://news.example.net/"),
             ("typed_bookmarked", None))


def _take(values: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``values[idx]``, null where not ``valid``."""
    return values.take(pa.array(idx.astype(np.int32), mask=None if valid is None else ~valid))


def _pick(strings, idx: np.ndarray) -> pa.Array:
    return _take(pa.array(list(strings), pa.string()), idx)


def _value(mask: np.ndarray, value: np.ndarray | float = 1.0) -> pa.Array:
    """``{value: v}`` where ``mask``, null elsewhere."""
    v = np.broadcast_to(np.asarray(value, np.float64), mask.shape)
    return pa.StructArray.from_arrays([pa.array(v, pa.float64())], fields=list(_VALUE),
                                      mask=pa.array(~mask))


def _direct_marketing(data, lo: int, hi: int, span: np.ndarray, uidx: np.ndarray, codes: np.ndarray,
                      is_email: np.ndarray) -> pa.Array:
    m = data.model
    sent = codes == m.code("directMarketing.emailSent")
    opened = codes == m.code("directMarketing.emailOpened")
    clicked = codes == m.code("directMarketing.emailClicked")
    msg = data.message[lo:hi][is_email].astype(np.uint64)
    message_ids = uuid_strings(mix64(msg, data.salt[2]), mix64(msg, data.salt[3]))
    children = [
        _value(sent), _value(sent), _value(opened), _value(opened | clicked), _value(clicked),
        _take(emails(span), uidx, is_email), _take(_hashed_emails(span), uidx, sent),
        _take(message_ids, np.cumsum(is_email) - 1, is_email),
    ]
    return pa.StructArray.from_arrays(children, fields=list(DIRECT_MARKETING), mask=pa.array(~is_email))


def _web(data, rows: np.ndarray, codes: np.ndarray, is_web: np.ndarray) -> pa.Array:
    """The ``web`` struct: a page of the type's pages, interaction and referrer picked by a
    hash of the row; null where not ``is_web``."""
    names = data.model.names
    # pages each type may be on, flattened, with each type's offset and count
    flat, offset, count = [], np.zeros(len(names), np.int64), np.ones(len(names), np.int64)
    for i, name in enumerate(names):
        pages = [_PAGE_INDEX[p] for p in _TYPE_PAGES.get(name, ("home",))]
        offset[i], count[i] = len(flat), len(pages)
        flat.extend(pages)
    r = mix64(rows.astype(np.uint64), data.salt[1])
    page = np.asarray(flat, np.int64)[offset[codes] + (r % count[codes].astype(np.uint64)).astype(np.int64)]
    urls = [f"https://{SERVER}/{p[0]}" for p in PAGES]
    page_url = _pick(urls, page)
    page_name = _pick([p[1] for p in PAGES], page)

    def bits(shift: int, k: int) -> np.ndarray:  # a choice among k from other bits of the hash
        return ((r >> np.uint64(shift)) % np.uint64(k)).astype(np.int64)

    clicks = np.isin(codes, [data.model.code(t) for t in CLICK_TYPES]).astype(np.float64)
    everywhere = np.ones(len(rows), bool)
    interaction = pa.StructArray.from_arrays([
        _value(everywhere, clicks), page_url, _pick(_INTERACTION_NAMES, bits(8, len(_INTERACTION_NAMES))),
        _pick(_INTERACTION_REGIONS, bits(16, len(_INTERACTION_REGIONS))),
        _pick(_INTERACTION_TYPES, bits(24, len(_INTERACTION_TYPES)))], fields=list(_WEB_INTERACTION))
    page_details = pa.StructArray.from_arrays([
        _value(everywhere), page_url, pa.array(np.zeros(len(rows), bool)), page_name,
        pa.repeat(pa.scalar(SERVER), len(rows)),
        _pick([p[2] for p in PAGES], page), page_name], fields=list(_WEB_PAGE))
    ref = bits(32, len(REFERRERS))
    referrer = pa.StructArray.from_arrays(
        [_pick([u for _, u in REFERRERS], ref), _pick([t for t, _ in REFERRERS], ref)], fields=list(_WEB_REFERRER))
    return pa.StructArray.from_arrays([interaction, page_details, referrer], fields=list(WEB), mask=pa.array(~is_web))


def event_table(data, lo: int, hi: int) -> pa.Table:
    """Rows ``lo:hi`` of the events dataset (in user, time order)."""
    hi = min(hi, data.n_events)
    rows = np.arange(lo, hi, dtype=np.int64)
    users, codes = data.user[lo:hi], data.code[lo:hi]
    # the users of the piece form a range: per-user strings are built once per user
    span = np.arange(users[0], users[-1] + 1) if hi > lo else np.empty(0, np.int64)
    uidx = users - (users[0] if hi > lo else 0)
    is_email = np.char.startswith(np.array(data.model.names), "directMarketing")[codes]
    salt = data.salt
    ids = uuid_strings(mix64(rows, salt[0]), mix64(rows, ~np.uint64(salt[0])))
    columns = [
        ids,
        pa.array(data.ts[lo:hi], _TS),
        _pick(data.model.names, codes),
        pa.repeat(pa.scalar(PRODUCED_BY), hi - lo).cast(pa.string()),
        pa.StructArray.from_arrays([_take(ecids(span), uidx)], names=["userid"]),
        _direct_marketing(data, lo, hi, span, uidx, codes, is_email),
        _web(data, rows, codes, ~is_email),
    ]
    return pa.Table.from_arrays(columns, schema=event_schema(data.tenant))


def profile_table(data, lo: int, hi: int) -> pa.Table:
    """Profiles ``lo:hi`` (one row per user)."""
    prof, spec = data.profile, data.model.profiles
    users = np.arange(lo, hi, dtype=np.int64)
    struct = pa.StructArray.from_arrays([
        ecids(users),
        pa.array(prof.age[lo:hi], pa.int64()),
        _pick([g[0] for g in spec.genders], prof.gender[lo:hi]),
        _pick([r[0] for r in spec.regions], prof.region[lo:hi]),
        _pick([t[0] for t in spec.tiers], prof.tier[lo:hi]),
        pa.array(prof.signup_us[lo:hi], _TS),
    ], fields=list(profile_schema(data.tenant).field(0).type))
    return pa.Table.from_arrays([struct], schema=profile_schema(data.tenant))
