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
from cmle.features.plan import FeaturePlan, make_plan
from cmle.features.spec import NOTEBOOK_FEATURES, FeatureSpec
from cmle.modelspec import ModelSpec, spec_for_synthetic
from cmle.modelspec.paths import event_type_literal

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


def _type_list(types) -> str:
    return ", ".join(event_type_literal(t) for t in types)


def _type_test(expr: str, types) -> str:
    """``expr = 'a'`` or ``expr IN ('a', 'b')``."""
    types = list(types)
    return f"{expr} = {event_type_literal(types[0])}" if len(types) == 1 else f"{expr} IN ({_type_list(types)})"


class _Sql:
    """The pieces of one point-in-time query, from a :class:`FeaturePlan`."""

    def __init__(self, plan: FeaturePlan, kind: str, t: dt.datetime, profiles_table: str | None):
        self.plan, self.kind, self.t, self.profiles_table = plan, kind, t, profiles_table
        spec = plan.spec
        self.spec, self.goal, self.elig, self.f = spec, spec.goal, spec.eligibility, spec.features
        tenant = plan.tenant
        self.identity = spec.events.identity.resolve(tenant).sql()
        self.ts = spec.events.timestamp.resolve(tenant).sql()
        self.etype = spec.events.event_type.resolve(tenant).sql()
        self.t_us = unix_micros(t)
        self.training = kind == TRAINING
        self.end = t + dt.timedelta(days=plan.windows.outcome_days) if self.training else t
        # k: feature types first (their index), then the goal's types when the goal is types only
        self.types = [f.event_type for f in plan.event_features]
        if self.goal.condition is None:
            self.types += [g for g in self.goal.event_types if g not in self.types]
        self.code = {ty: i for i, ty in enumerate(self.types)}

    # --- per event -------------------------------------------------------------------------
    def event_code(self) -> str:
        if not self.types:
            return "-1"
        whens = " ".join(f"WHEN {event_type_literal(ty)} THEN {i}" for i, ty in enumerate(self.types))
        return f"CASE {self.etype} {whens} ELSE -1 END"

    def goal_raw(self) -> str | None:
        """The goal as a predicate on the event row (None: any event)."""
        g, tenant = self.goal, self.plan.tenant
        parts = []
        if g.event_types:
            parts.append(_type_test(self.etype, g.event_types))
        if g.condition is not None:
            parts.append(f"({g.condition.sql(tenant)})")
        return " AND ".join(parts) if parts else None

    def event_columns(self) -> list[tuple[str, str]]:
        """(alias, expression) of the per-event extras: g (goal flag), e (eligibility flag), v0..."""
        tenant = self.plan.tenant
        cols = []
        if self.goal.condition is not None:
            cols.append(("g", f"CASE WHEN {self.goal_raw()} THEN 1 ELSE 0 END"))
        if self.elig.event_condition is not None:
            cols.append(("e", f"CASE WHEN {self.elig.event_condition.sql(tenant)} THEN 1 ELSE 0 END"))
        for i, n in enumerate(self.f.numeric):
            value = n.field.resolve(tenant).sql()
            if not n.field.has_array:
                value = f"CAST({value} AS DOUBLE)"
            if n.event_types:
                value = f"CASE WHEN {_type_test(self.etype, n.event_types)} THEN {value} END"
            cols.append((f"v{i}", value))
        return cols

    def scan_after_t(self) -> str:
        raw = self.goal_raw()
        if raw is None:  # any event is the goal: read every event up to the scan's end
            return ""
        # after T only goal events matter (the label); other events there are left out early
        return f"\n    AND ({self.ts} < {ts_literal(self.t)} OR {raw})"

    # --- per profile ------------------------------------------------------------------------
    def goal_agg(self) -> str | None:
        """The goal as a predicate on ev_days (None: any event)."""
        if self.goal.condition is not None:
            return "g = 1"
        if self.goal.event_types:
            codes = [str(self.code[g]) for g in self.goal.event_types]
            return f"k = {codes[0]}" if len(codes) == 1 else f"k IN ({', '.join(codes)})"
        return None

    def goals_after(self) -> str:
        """The per-profile count of goal events in the outcome window (T, T + W]: what the label reads."""
        window = self._when(self.goal_agg(), f"us > {self.t_us}", f"us <= {unix_micros(self.end)}")
        return f"COUNT(CASE WHEN {window} THEN 1 END) AS goals_after"

    def goal_columns(self) -> list[tuple[str, str]]:
        """The per-event goal flag ``g`` (only when the goal has a field condition)."""
        return [(a, e) for a, e in self.event_columns() if a == "g"]

    def _when(self, *parts: str | None) -> str:
        return " AND ".join(p for p in parts if p)

    def user_aggregates(self) -> list[str]:
        t_us, goal = self.t_us, self.goal_agg()
        aggs = ["MIN(us) AS first_seen_us"]
        if self.elig.exclude_goal_reached:
            aggs.append(f"COUNT(CASE WHEN {self._when(goal, f'us <= {t_us}')} THEN 1 END) AS goals_before")
        if self.training:
            aggs.append(self.goals_after())
        if self.elig.active_within_days:
            aggs.append(f"MAX(CASE WHEN us < {t_us} THEN us END) AS last_us")
        if self.elig.event_condition is not None:
            aggs.append("COUNT(CASE WHEN e = 1 AND d IS NOT NULL THEN 1 END) AS eligible_events")
        windows = self.plan.recent_windows
        for f in self.plan.event_features:
            is_type = f"k = {self.code[f.event_type]}"
            aggs.append(f"COUNT(CASE WHEN {is_type} THEN d END) AS {f.count}")
            aggs += [f"COUNT(CASE WHEN {is_type} AND d < {w} THEN 1 END) AS {f.count}_{w}d" for w in windows]
            if self.f.recency:
                aggs.append(f"{_minutes_before(t_us, f'MAX(CASE WHEN {is_type} THEN look_us END)')} AS {f.recency}")
        if self.f.activity:
            aggs.append("COUNT(d) AS events")
            aggs += [f"COUNT(CASE WHEN d < {w} THEN 1 END) AS events_{w}d" for w in windows]
            aggs += _active_day_masks(self.plan.windows.lookback_days)
            aggs.append(f"{_minutes_before(t_us, 'MAX(look_us)')} AS minutes_since_last_event")
            aggs.append(f"{_minutes_before(t_us, 'MIN(look_us)')} AS minutes_since_first_event")
        for i, n in enumerate(self.f.numeric):
            for agg, col in zip(n.aggregations, n.columns()):
                fn = {"sum": "SUM", "avg": "AVG", "max": "MAX", "min": "MIN", "count": "COUNT"}[agg]
                aggs.append(f"{fn}(CASE WHEN d IS NOT NULL THEN v{i} END) AS {col}")
        return aggs

    def profile_parts(self) -> tuple[str, str, str]:
        """(the prof CTE, the join, the output identity) — empty CTE and join without profiles."""
        prof = self.spec.profiles
        if prof is None:
            return "", "", "u.userid"
        if not self.profiles_table:
            raise ValueError("the spec has a profiles section: name the profiles table")
        tenant = self.plan.tenant
        ident = prof.identity.resolve(tenant).sql()
        cols = [f"{ident} AS userid"]
        self.attr, self.known = {}, ""
        aliases: dict[str, str] = {}  # aggregate -> its alias: the same aggregate is computed once
        for i, a in enumerate(prof.attributes):
            agg = f"{'MIN' if a.kind == 'date' else 'MAX'}({a.field.resolve(tenant).sql()})"
            if agg not in aliases:
                aliases[agg] = f"a{i}"
                cols.append(f"{agg} AS a{i}")
            self.attr[a.name] = (aliases[agg], a)
        if prof.known_from is not None:
            agg = f"MIN({prof.known_from.resolve(tenant).sql()})"
            self.known = aliases.get(agg, "known_ts")
            if agg not in aliases:
                cols.append(f"{agg} AS known_ts")
        if self.elig.profile_condition is not None:
            cols.append(f"MAX(CASE WHEN {self.elig.profile_condition.sql(tenant)} THEN 1 ELSE 0 END) "
                        "AS eligible_profile")
        # One row per profile even if the profiles dataset holds several records of one.
        cte = (",\nprof AS (\n  SELECT\n    " + _INDENT.join(cols) + f"\n  FROM {quote_table(self.profiles_table)}\n  WHERE {ident} IS NOT NULL\n"
               f"  GROUP BY {ident}\n)")
        return cte, "\nFULL OUTER JOIN prof p ON u.userid = p.userid", "COALESCE(u.userid, p.userid)"

    # --- the output --------------------------------------------------------------------------
    def label_column(self) -> str:
        if not self.training:
            return ""
        if self.goal.churn:  # 1 when no goal event happened in (T, T + W]
            expr = "CASE WHEN COALESCE(u.goals_after, 0) = 0 THEN 1 ELSE 0 END"
        else:  # 1 when the goal happened in (T, T + W]; 0 otherwise, also for a profile without events
            expr = "LEAST(COALESCE(u.goals_after, 0), 1)"
        return f"CAST({expr} AS INT) AS {LABEL_COLUMN}{_COL_INDENT}"

    def feature_columns(self) -> list[str]:
        counts = {f.event_type: f.count for f in self.plan.event_features}
        lookback = self.plan.windows.lookback_days
        out = []
        for info in self.plan.infos:
            col = info.name
            if info.group == "profile":
                alias, attr = self.attr[col]
                if attr.kind == "date":  # days since the date; NULL for a date after T (no look-ahead)
                    t_date, date = f"CAST({ts_literal(self.t)} AS DATE)", f"CAST(p.{alias} AS DATE)"
                    expr = f"CASE WHEN {date} <= {t_date} THEN CAST(DATEDIFF({t_date}, {date}) AS BIGINT) END"
                else:
                    expr = f"p.{alias}"
            elif info.group == "ratio":
                r = next(x for x in self.f.ratios if x.name == col)
                expr = _rate(counts[r.numerator], counts[r.denominator])
            elif col == "active_days" and info.group == "activity":
                expr = _active_days(lookback)
            elif info.group == "event_recency" or (info.group == "activity" and col.startswith("minutes_since")):
                expr = f"u.{col}"
            elif info.group == "numeric_field" and not col.endswith(("_sum", "_count")):
                expr = f"u.{col}"
            else:  # a count or a sum: 0 for a profile without events
                expr = f"COALESCE(u.{col}, 0)"
            out.append(f"{expr} AS {col}")
        return out

    def eligible(self) -> str:
        t_us = self.t_us
        conds = []
        if self.elig.exclude_goal_reached:
            conds.append("COALESCE(u.goals_before, 0) = 0")
        known = f"u.first_seen_us < {t_us}"
        prof = self.spec.profiles
        if prof is not None:  # known at T: an event before T, or a profile that existed at T
            since = f" AND (p.{self.known} IS NULL OR p.{self.known} < {ts_literal(self.t)})" if self.known else ""
            known = f"({known} OR (p.userid IS NOT NULL{since}))"
        conds.append(known)
        if self.elig.active_within_days:
            conds.append(f"u.last_us >= {t_us - self.elig.active_within_days * _DAY_US}")
        if self.elig.event_condition is not None:
            conds.append("u.eligible_events > 0")
        if self.elig.profile_condition is not None:
            conds.append("p.eligible_profile = 1")
        return "\n  AND ".join(conds)


def pit_sql(kind: str, events: str, profiles: str | None, tenant: str, snapshot: dt.datetime | dt.date,
            fs: FeatureSpec | None = None, spec: ModelSpec | None = None, plan: FeaturePlan | None = None) -> str:
    """Spark SQL of the point-in-time training set (with ``label``) or scoring set at ``snapshot``.

    The set is what ``plan`` says (default: the plan of ``spec``, default the synthetic spec,
    with the windows ``fs``, default the spec's).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    plan = plan or make_plan(spec or spec_for_synthetic(), tenant, fs)
    t = utc(snapshot)
    q = _Sql(plan, kind, t, profiles)
    cte, join, user_id = q.profile_parts()
    extra = q.event_columns()
    return _template("features.sql").substitute(
        events=quote_table(events), identity=q.identity, ts=q.ts,
        t=ts_literal(t), t_us=str(q.t_us), lookback_us=str(unix_micros(t - dt.timedelta(days=plan.windows.lookback_days))),
        day_us=str(_DAY_US), scan_end=ts_literal(q.end), scan_after_t=q.scan_after_t(),
        event_code=q.event_code(), event_columns="".join(f",\n    {e} AS {a}" for a, e in extra),
        day_columns="".join(f"\n    {a}," for a, _ in extra),
        user_aggregates=_INDENT.join(q.user_aggregates()), profile_cte=cte, profile_join=join, user_id=user_id,
        label_column=q.label_column(), feature_columns=_COL_INDENT.join(q.feature_columns()),
        eligible=q.eligible(),
    )


def outcome_sql(events: str, tenant: str, snapshot: dt.datetime | dt.date, outcome_days: int, scores: str,
                spec: ModelSpec | None = None) -> str:
    """Spark SQL of the realised outcomes of a score run made at ``snapshot`` (T): the scored
    profiles of the SELECT ``scores`` (userid, propensity, bucket, decile) with the label the
    training set would give them at T with an outcome window of ``outcome_days`` (the same
    goal, window and label expression), grouped into cells (``cmle/sql/outcomes.sql``)."""
    spec = spec or spec_for_synthetic()
    plan = make_plan(spec, tenant, FeatureSpec(lookback_days=max(spec.features.lookback_days, 1),
                                               outcome_days=outcome_days, windows=()))
    t = utc(snapshot)
    q = _Sql(plan, TRAINING, t, None)
    raw = q.goal_raw()
    return _template("outcomes.sql").substitute(
        events=quote_table(events), identity=q.identity, ts=q.ts, event_code=q.event_code(),
        goal_columns="".join(f",\n    {e} AS {a}" for a, e in q.goal_columns()),
        t=ts_literal(t), scan_end=ts_literal(q.end), goal_filter=f" AND ({raw})" if raw else "",
        goals_after=q.goals_after(), scores=scores.strip(), label_column=q.label_column().rstrip().rstrip(","),
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
def feature_query(kind: str, events: str, profiles: str | None, tenant: str,
                  snapshot: dt.datetime | dt.date | None = None, fs: FeatureSpec | None = None, framing: str = "pit",
                  seed: int = fspec.DEFAULT_CMLE_SEED, spec: ModelSpec | None = None,
                  plan: FeaturePlan | None = None) -> FeatureQuery:
    """The feature query of a training set (``pit`` or ``cmle`` framing) or the scoring set.

    ``snapshot`` is T for ``pit`` (required) and ignored by ``cmle``, which has no snapshot.
    What the set holds is ``plan``, else the plan of ``spec`` (default: the synthetic spec)
    with the windows ``fs`` (default: the spec's). The ``cmle`` framing exists for the
    synthetic data only.
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
    plan = plan or make_plan(spec or spec_for_synthetic(), tenant, fs)
    meta = (ID_COLUMN, SNAPSHOT_COLUMN, LABEL_COLUMN) if kind == TRAINING else (ID_COLUMN, SNAPSHOT_COLUMN)
    w = plan.windows
    tables = {"events": events} | ({"profiles": profiles} if plan.spec.profiles is not None else {})
    return FeatureQuery(
        sql=pit_sql(kind, events, profiles, tenant, snapshot, plan=plan), tables=tables,
        columns=(*meta, *plan.feature_columns), kind=kind, framing=framing, snapshot=utc(snapshot),
        params={"lookback_days": w.lookback_days, "outcome_days": w.outcome_days, "windows": list(w.recent_windows),
                "spec": plan.spec.name, "auto_event_types": list(plan.auto_types)})


__all__ = ["FeatureQuery", "KINDS", "SCORING", "TRAINING", "cmle_sql", "feature_query", "outcome_sql", "pit_sql",
           "quote_table", "tenant_root", "ts_literal", "unix_micros", "utc"]
