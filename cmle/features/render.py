"""Render the feature SQL (``cmle/sql/features*.sql``) for one set of parameters.

The SQL is Spark SQL, the dialect of AEP Query Service and Databricks; the local platform
translates it for DuckDB (:func:`cmle.sql.to_duckdb`). Every value that reaches the SQL
is checked here (identifiers) or formatted here (timestamps, numbers), never pasted from
user input.

:func:`feature_query` is the entry point for any engine: it returns the SQL text with the
tables it reads, so a Spark runner can register those tables (Parquet, Delta) under
these names and run the same text.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from string import Template

from cmle.columns import CONVERSION_EVENT, ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN
from cmle.features import spec as fspec
from cmle.features.spec import EVENT_FEATURES, NOTEBOOK_FEATURES, FeatureSpec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MINUTE_US = "6e7"  # microseconds per minute, a DOUBLE literal on both engines
_DAY_US = 86_400_000_000
_MASK_DAYS = 63  # days per active-day bit mask: clear of the sign bit of a BIGINT
_INDENT = ",\n    "
_COL_INDENT = ",\n  "

TRAINING = "training"
SCORING = "scoring"
KINDS = (TRAINING, SCORING)


@dataclass(frozen=True)
class FeatureQuery:
    """One rendered feature query: Spark SQL, the tables it reads, the columns it returns."""

    sql: str
    tables: dict[str, str]  # role (events, profiles) -> table name in the SQL
    columns: tuple[str, ...]  # output columns, in order
    kind: str  # training | scoring
    framing: str  # pit | cmle
    snapshot: dt.datetime | None = None  # T (pit); None for cmle (each row has its own)
    params: dict = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.columns if c not in (ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN)]


# --- value formatting ------------------------------------------------------------------
def quote_table(name: str) -> str:
    """A table name, optionally qualified (``catalog.schema.table``), backtick-quoted per part."""
    parts = name.split(".")
    if not all(_IDENT.match(p) for p in parts):
        raise ValueError(f"invalid table name {name!r}: letters, digits and _ only, dot-separated")
    return ".".join(f"`{p}`" for p in parts)


def tenant_root(tenant: str) -> str:
    """The custom-field struct (``_cmle``) from a tenant id (``cmle``) or the root itself."""
    root = tenant if tenant.startswith("_") else f"_{tenant}"
    if not _IDENT.match(root):
        raise ValueError(f"invalid tenant {tenant!r}")
    return root


def utc(when: dt.datetime | dt.date) -> dt.datetime:
    """A timezone-aware UTC datetime (naive values are taken as UTC; a date is its midnight)."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def ts_literal(when: dt.datetime | dt.date) -> str:
    """A Spark TIMESTAMP literal (read in the session time zone, which must be UTC)."""
    t = utc(when)
    text = t.strftime("%Y-%m-%d %H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}"
    return f"TIMESTAMP '{text}'"


def _string(value: str) -> str:
    return value.replace("'", "''")


@lru_cache(maxsize=None)
def _template(name: str) -> Template:
    """A SQL template from the package, without its comment lines (they mention placeholders)."""
    text = resources.files("cmle.sql").joinpath(name).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return Template("\n".join(lines).strip() + "\n")


# --- point in time ---------------------------------------------------------------------
def unix_micros(when: dt.datetime | dt.date) -> int:
    """UNIX microseconds of a time (naive values are taken as UTC), exactly."""
    t = utc(when)
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _minutes_between(later: str, earlier: str) -> str:
    return f"(UNIX_MICROS({later}) - UNIX_MICROS({earlier})) / {_MINUTE_US}"


def _minutes_before(t_us: int, earlier_us: str) -> str:
    """Minutes from ``earlier_us`` (UNIX microseconds) to T, a DOUBLE (NULL if it is NULL)."""
    return f"({t_us} - {earlier_us}) / {_MINUTE_US}"


def _conversion_code() -> int:
    """The event-type code ``k`` of the conversion: after the codes of :data:`EVENT_FEATURES`."""
    return len(EVENT_FEATURES)


def _event_code() -> str:
    """The CASE that maps ``eventType`` to its code ``k`` (-1 for a type without features)."""
    types = [f.event_type for f in EVENT_FEATURES] + [CONVERSION_EVENT]
    whens = " ".join(f"WHEN '{_string(ty)}' THEN {i}" for i, ty in enumerate(types))
    return f"CASE eventType {whens} ELSE -1 END"


def _event_aggregates(fs: FeatureSpec, t_us: int) -> list[str]:
    """Per-profile aggregates of the look-back window [T - lookback, T) and its recent windows.

    They read the per-event integers of ``ev_days`` (see ``features.sql``): ``k`` the type
    code, ``d`` the look-back day (NULL outside the look-back), ``us`` the time.
    """
    aggs: list[str] = []
    for code, f in enumerate(EVENT_FEATURES):
        is_type = f"k = {code}"
        aggs.append(f"COUNT(CASE WHEN {is_type} THEN d END) AS {f.count}")
        aggs += [f"COUNT(CASE WHEN {is_type} AND d < {w} THEN 1 END) AS {f.count}_{w}d" for w in fs.recent_windows]
        aggs.append(f"{_minutes_before(t_us, f'MAX(CASE WHEN {is_type} THEN look_us END)')} "
                    f"AS {f.recency}")
    aggs.append("COUNT(d) AS events")
    aggs += [f"COUNT(CASE WHEN d < {w} THEN 1 END) AS events_{w}d" for w in fs.recent_windows]
    aggs += _active_day_masks(fs.lookback_days)
    aggs.append(f"{_minutes_before(t_us, 'MAX(look_us)')} AS minutes_since_last_event")
    aggs.append(f"{_minutes_before(t_us, 'MIN(look_us)')} AS minutes_since_first_event")
    return aggs


def _active_day_masks(lookback_days: int) -> list[str]:
    """Aggregates ``day_mask_{i}``: bit d set when the profile had an event in the day
    [T - (d + 1) days, T - d days) (a calendar day when T is a midnight).

    Their bit counts sum to the number of active days. A BIT_OR per 63 days is far cheaper
    than COUNT(DISTINCT day), which makes engines materialise the events a second time.
    """
    n = (lookback_days + _MASK_DAYS - 1) // _MASK_DAYS
    masks = []
    for i in range(n):
        lo, hi = i * _MASK_DAYS, min((i + 1) * _MASK_DAYS, lookback_days)
        bit = f"SHIFTLEFT(CAST(1 AS BIGINT), CAST(d - {lo} AS INT))"
        # d is NULL outside the look-back, and so is the bit: BIT_OR skips it
        masks.append(f"BIT_OR(CASE WHEN d >= {lo} AND d < {hi} THEN {bit} END) AS day_mask_{i}" if n > 1
                     else f"BIT_OR({bit}) AS day_mask_{i}")
    return masks


def _active_days(lookback_days: int) -> str:
    n = (lookback_days + _MASK_DAYS - 1) // _MASK_DAYS
    return " + ".join(f"COALESCE(CAST(BIT_COUNT(u.day_mask_{i}) AS BIGINT), 0)" for i in range(n))


def _rate(numerator: str, denominator: str) -> str:
    return f"CAST(u.{numerator} AS DOUBLE) / NULLIF(u.{denominator}, 0)"


def _output_features(t: dt.datetime, fs: FeatureSpec) -> list[str]:
    """Output expressions; profiles without events get counts 0 and recency NULL."""
    by_type = {f.event_type: f.count for f in EVENT_FEATURES}
    sent, opened, clicked = (by_type[f"directMarketing.{e}"] for e in ("emailSent", "emailOpened", "emailClicked"))
    derived = {
        "active_days": _active_days(fs.lookback_days),
        "email_open_rate": _rate(opened, sent),
        "email_click_rate": _rate(clicked, opened),
        "tenure_days": f"CAST(DATEDIFF(CAST({ts_literal(t)} AS DATE), CAST(p.signup_ts AS DATE)) AS BIGINT)",
    }
    nullable = {f.recency for f in EVENT_FEATURES} | {"minutes_since_last_event", "minutes_since_first_event"}
    profile = set(fspec.PROFILE_NUMERIC) | set(fspec.PROFILE_CATEGORICAL)
    exprs = []
    for col in fspec.feature_columns(fs):
        if col in derived:
            expr = derived[col]
        elif col in profile:
            expr = f"p.{col}"
        elif col in nullable:
            expr = f"u.{col}"
        else:  # a count: 0 for a profile without events
            expr = f"COALESCE(u.{col}, 0)"
        exprs.append(f"{expr} AS {col}")
    return exprs


def pit_sql(kind: str, events: str, profiles: str, tenant: str, snapshot: dt.datetime | dt.date,
            fs: FeatureSpec = FeatureSpec()) -> str:
    """Spark SQL of the point-in-time training set (with ``label``) or scoring set at ``snapshot``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    t = utc(snapshot)
    training = kind == TRAINING
    t_lit, t_us = ts_literal(t), unix_micros(t)
    end = t + dt.timedelta(days=fs.outcome_days) if training else t
    conv = _conversion_code()
    label_agg = (f"COUNT(CASE WHEN k = {conv} AND us > {t_us} AND us <= {unix_micros(end)} THEN 1 END) "
                 f"AS conversions_after{_INDENT}") if training else ""
    # 1 if the profile converted in (T, T + W]; 0 otherwise, also for a profile without events
    label_col = (f"CAST(LEAST(COALESCE(u.conversions_after, 0), 1) AS INT) AS {LABEL_COLUMN}{_COL_INDENT}"
                 if training else "")
    return _template("features.sql").substitute(
        events=quote_table(events), profiles=quote_table(profiles), tenant=tenant_root(tenant),
        t=t_lit, t_us=str(t_us), lookback_us=str(unix_micros(t - dt.timedelta(days=fs.lookback_days))),
        day_us=str(_DAY_US), scan_end=ts_literal(end), conversion=_string(CONVERSION_EVENT),
        conversion_code=str(conv), event_code=_event_code(),
        label_aggregate=label_agg, label_column=label_col,
        event_aggregates=_INDENT.join(_event_aggregates(fs, t_us)),
        feature_columns=_COL_INDENT.join(_output_features(t, fs)),
    )


# --- the notebooks' framing ------------------------------------------------------------
def cmle_sql(events: str, tenant: str, seed: int = fspec.DEFAULT_CMLE_SEED) -> str:
    """Spark SQL of the CMLE notebooks' training set (see ``cmle/sql/features_cmle.sql``)."""
    running: list[str] = []
    for f in NOTEBOOK_FEATURES:
        is_type = f"event_type = '{_string(f.event_type)}'"
        running.append(f"COUNT(CASE WHEN {is_type} THEN 1 END) OVER running AS {f.count}")
        running.append(f"{_minutes_between('ts', f'MAX(CASE WHEN {is_type} THEN ts END) OVER running')} "
                       f"AS {f.recency}")
    return _template("features_cmle.sql").substitute(
        events=quote_table(events), tenant=tenant_root(tenant), conversion=_string(CONVERSION_EVENT),
        seed=str(int(seed)), running_features=_INDENT.join(running),
        feature_columns=_COL_INDENT.join(fspec.notebook_feature_columns()),
    )


# --- one entry point for every engine --------------------------------------------------
def feature_query(kind: str, events: str, profiles: str, tenant: str, snapshot: dt.datetime | dt.date | None = None,
                  fs: FeatureSpec = FeatureSpec(), framing: str = "pit",
                  seed: int = fspec.DEFAULT_CMLE_SEED) -> FeatureQuery:
    """The feature query of a training set (``pit`` or ``cmle`` framing) or the scoring set.

    ``snapshot`` is T for ``pit`` (required) and ignored by ``cmle``, which has no snapshot.
    """
    if framing not in fspec.FRAMINGS:
        raise ValueError(f"framing must be one of {fspec.FRAMINGS}, not {framing!r}")
    if framing == "cmle":
        if kind != TRAINING:
            raise ValueError("the cmle framing defines a training set only; score with the pit scoring set")
        return FeatureQuery(
            sql=cmle_sql(events, tenant, seed), tables={"events": events},
            columns=(ID_COLUMN, SNAPSHOT_COLUMN, LABEL_COLUMN, *fspec.notebook_feature_columns()),
            kind=kind, framing=framing, params={"seed": seed})
    if snapshot is None:
        raise ValueError("a point-in-time feature query needs the snapshot time T")
    meta = (ID_COLUMN, SNAPSHOT_COLUMN, LABEL_COLUMN) if kind == TRAINING else (ID_COLUMN, SNAPSHOT_COLUMN)
    return FeatureQuery(
        sql=pit_sql(kind, events, profiles, tenant, snapshot, fs),
        tables={"events": events, "profiles": profiles},
        columns=(*meta, *fspec.feature_columns(fs)), kind=kind, framing=framing, snapshot=utc(snapshot),
        params={"lookback_days": fs.lookback_days, "outcome_days": fs.outcome_days,
                "windows": list(fs.recent_windows)})


__all__ = ["FeatureQuery", "KINDS", "SCORING", "TRAINING", "cmle_sql", "feature_query", "pit_sql",
           "quote_table", "tenant_root", "ts_literal", "unix_micros", "utc"]
