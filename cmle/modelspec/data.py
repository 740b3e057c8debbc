"""A model spec against the data: its datasets, its fields, its goal and windows.

Everything here runs through the platform's query engine (DuckDB locally, Query Service on
AEP), reads nothing row by row, and turns a mismatch into a :class:`SpecError` naming the
spec line: a field the dataset does not have, a goal that never happens, an outcome window
longer than the data.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd

from cmle import naming
from cmle.errors import DataCheckError, NotFoundError, QueryError
from cmle.modelspec.model import DatasetRef, ModelSpec
from cmle.modelspec.paths import PathError, event_type_literal
from cmle.platform.base import Dataset, Platform

log = logging.getLogger(__name__)


def quote_table(name: str) -> str:
    from cmle.features.render import quote_table as q

    return q(name)


# --- datasets ---------------------------------------------------------------------------------
def find_dataset(platform: Platform, ref: DatasetRef) -> Dataset | None:
    if ref.id:
        try:
            return platform.get_dataset(ref.id)
        except NotFoundError:
            return None
    return platform.find_dataset(ref.name)


def dataset_of(platform: Platform, spec: ModelSpec, owner: str, section: str) -> Dataset | None:
    """The spec's ``events`` or ``profiles`` dataset (None: a spec without profiles); a clear
    error naming the spec line when it does not exist."""
    if section == "profiles" and spec.profiles is None:
        return None
    if section == "profiles" and spec.profiles.union:
        return profile_union(platform, spec, owner)
    if spec.synthetic:
        ref = DatasetRef(name=(naming.events_dataset if section == "events" else naming.profiles_dataset)(owner))
    else:
        ref = spec.events.dataset if section == "events" else spec.profiles.dataset
    ds = find_dataset(platform, ref)
    if ds is None:
        if spec.synthetic:
            raise NotFoundError(f"the {section} dataset {ref.describe()} does not exist; run the synthetic stage first")
        raise spec.error((section, "dataset"), f"the {section} dataset {ref.describe()} does not exist on the "
                                               f"{platform.backend} platform; load your export with `cmle load` "
                                               "(embedded platform), or check the name against the platform's datasets")
    return ds


def union_fields(spec: ModelSpec, tenant: str) -> list[str]:
    """The dotted XDM paths a spec reads from profiles (what a profile union must hold): its
    identity field (an identityMap identity is always there), ``known_from``, the attributes
    and the fields of the eligibility's profile condition."""
    p = spec.profiles
    paths = [p.identity.field] if p.identity.field is not None else []
    paths += [p.known_from] if p.known_from is not None else []
    paths += [a.field for a in p.attributes]
    if spec.eligibility.profile_condition is not None:
        paths += list(spec.eligibility.profile_condition.fields())
    return sorted({f.resolve(tenant).text for f in paths})


def profile_union(platform: Platform, spec: ModelSpec, owner: str) -> Dataset:
    """The spec's profile union as a dataset of the owner (get-or-create; see
    :meth:`cmle.platform.base.Platform.profile_union`). Fresh enough to reuse: made from the same
    fields and merge policy after the newest batch of the events dataset arrived, so the profiles
    are at least as recent as the events the features count."""
    from cmle.platform.union import union_key

    fields = union_fields(spec, platform.tenant_id)
    events = dataset_of(platform, spec, owner, "events")
    newest = max((b.created for b in platform.list_batches(events.id) if b.status == "success"), default=0.0)
    name = naming.profile_union_dataset(owner, union_key(fields, spec.profiles.merge_policy))
    try:
        return platform.profile_union(name, fields, spec.profiles.merge_policy, fresh_after=newest)
    except NotFoundError as exc:  # e.g. a merge policy the sandbox does not have
        raise spec.error(("profiles", "merge_policy" if spec.profiles.merge_policy else "union"), str(exc)) from None


def datasets(platform: Platform, spec: ModelSpec, owner: str) -> tuple[Dataset, Dataset | None]:
    """The spec's events dataset and profiles dataset (None without a profiles section)."""
    return dataset_of(platform, spec, owner, "events"), dataset_of(platform, spec, owner, "profiles")


# --- fields ------------------------------------------------------------------------------------
def event_fields(spec: ModelSpec, tenant: str) -> list[tuple[tuple, str, str]]:
    """(spec path, field text, Spark SQL) of every events field the spec reads."""
    ev = spec.events
    out = [(("events", "identity"), ev.identity.text, ev.identity.resolve(tenant).sql()),
           (("events", "timestamp"), ev.timestamp.text, ev.timestamp.resolve(tenant).sql()),
           (("events", "event_type"), ev.event_type.text, ev.event_type.resolve(tenant).sql())]
    for where, cond in ((("goal", "condition"), spec.goal.condition),
                        (("eligibility", "event_condition"), spec.eligibility.event_condition)):
        if cond is not None:
            out += [(where, f.text, f.resolve(tenant).sql()) for f in cond.fields()]
    for i, n in enumerate(spec.features.numeric):
        out.append((("features", "numeric", i, "field"), n.field.text, n.field.resolve(tenant).sql()))
    return out


def profile_fields(spec: ModelSpec, tenant: str) -> list[tuple[tuple, str, str]]:
    p = spec.profiles
    if p is None:
        return []
    out = [(("profiles", "identity"), p.identity.text, p.identity.resolve(tenant).sql())]
    if p.known_from is not None:
        out.append((("profiles", "known_from"), p.known_from.text, p.known_from.resolve(tenant).sql()))
    index = {"numeric": 0, "categorical": 0, "date": 0}
    for a in p.attributes:
        key = {"date": "dates"}.get(a.kind, a.kind)
        out.append((("profiles", key, index[a.kind]), a.field.text, a.field.resolve(tenant).sql()))
        index[a.kind] += 1
    if spec.eligibility.profile_condition is not None:
        out += [(("eligibility", "profile_condition"), f.text, f.resolve(tenant).sql())
                for f in spec.eligibility.profile_condition.fields()]
    return out


def check_fields(platform: Platform, spec: ModelSpec, ds: Dataset, fields: list[tuple[tuple, str, str]],
                 timeout_s: float = 600.0) -> None:
    """Every field reads on the dataset (one ``LIMIT 0`` query; one per field only when it fails)."""
    if not fields:
        return
    table = quote_table(ds.table)

    def probe(exprs: list[str]) -> None:
        cols = ", ".join(f"{e} AS c{i}" for i, e in enumerate(exprs))
        platform.query(f"SELECT {cols} FROM {table} LIMIT 0", timeout_s=timeout_s, max_rows=1)

    try:
        probe([sql for _, _, sql in fields])
        return
    except QueryError:
        pass
    for where, text, sql in fields:
        try:
            probe([sql])
        except QueryError as exc:
            detail = str(exc).split("\n")[0][:300]
            raise spec.error(where, f"the field {text} cannot be read from dataset {ds.name!r}: it is missing or "
                                    f"has another shape there ({detail}). Check the path against the dataset's "
                                    "fields (`cmle explore` lists them)") from None


# --- what the events span, and the goal in them ----------------------------------------------
@dataclass(frozen=True)
class DataRange:
    """What the events dataset spans, and how many goal events it holds."""

    first: dt.datetime
    last: dt.datetime
    events: int
    goal_events: int = 0

    @property
    def end(self) -> dt.datetime:
        """"Now": the midnight (UTC) that ends the day of the last event."""
        return dt.datetime.combine(self.last.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)

    @property
    def days(self) -> float:
        return (self.end - self.first).total_seconds() / 86_400


def _utc(value) -> dt.datetime:
    t = pd.Timestamp(value).to_pydatetime()
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def goal_predicate(spec: ModelSpec, tenant: str) -> str:
    """The goal as a predicate on an event row (TRUE for any event)."""
    g = spec.goal
    parts = []
    if g.event_types:
        etype = spec.events.event_type.resolve(tenant).sql()
        parts.append(f"{etype} IN ({', '.join(event_type_literal(t) for t in g.event_types)})")
    if g.condition is not None:
        parts.append(f"({g.condition.sql(tenant)})")
    return " AND ".join(parts) or "TRUE"


def data_range(platform: Platform, spec: ModelSpec, ds: Dataset, tenant: str, timeout_s: float = 600.0) -> DataRange:
    """First and last event time, the event count and the goal events, in one query."""
    ts = spec.events.timestamp.resolve(tenant).sql()
    sql = (f"SELECT MIN({ts}) AS first_ts, MAX({ts}) AS last_ts, COUNT(*) AS n, "
           f"COUNT(CASE WHEN {goal_predicate(spec, tenant)} THEN 1 END) AS goal_events "
           f"FROM {quote_table(ds.table)}")
    row = platform.query(sql, timeout_s=timeout_s, max_rows=1).iloc[0]
    if not row["n"] or pd.isna(row["last_ts"]):
        raise DataCheckError(f"the events dataset {ds.name} holds no event; "
                             + ("run the synthetic stage first" if spec.synthetic else
                                "load your events (`cmle load`) or check the spec's events.dataset"))
    return DataRange(first=_utc(row["first_ts"]), last=_utc(row["last_ts"]), events=int(row["n"]),
                     goal_events=int(row["goal_events"] or 0))


def check_goal(spec: ModelSpec, rng: DataRange, ds: Dataset) -> None:
    """The goal happens in the data, and its outcome window fits in it."""
    g = spec.goal
    if not g.any_event and rng.goal_events == 0:
        where = ("goal", "condition") if g.condition is not None else ("goal", "event_types")
        raise spec.error(where, f"no event of dataset {ds.name!r} matches the goal ({g.phrase()}): check the "
                                "event types and condition against `cmle explore`'s event types and fields")
    if g.window_days >= rng.days:
        raise spec.error(("goal", "window_days"),
                         f"the outcome window of {g.window_days} days is not shorter than the data, which spans "
                         f"{rng.days:.1f} days ({rng.first:%Y-%m-%d} to {rng.last:%Y-%m-%d}): no snapshot leaves a "
                         "history to learn from and a whole window to observe. Use a shorter window_days, or "
                         "more history")


def top_event_types(platform: Platform, spec: ModelSpec, ds: Dataset, tenant: str, since: dt.datetime,
                    until: dt.datetime, n: int, timeout_s: float = 600.0) -> list[str]:
    """The ``n`` event types with the most users in [since, until) (``features.auto``), most first.

    Goal types are left out when profiles that reached the goal are not eligible (their
    counts would be 0 for everyone); types that are not valid XDM names are skipped.
    """
    from cmle.features.render import ts_literal

    ts, etype = spec.events.timestamp.resolve(tenant).sql(), spec.events.event_type.resolve(tenant).sql()
    ident = spec.events.identity.resolve(tenant).sql()
    sql = (f"SELECT {etype} AS event_type, COUNT(DISTINCT {ident}) AS users, COUNT(*) AS events "
           f"FROM {quote_table(ds.table)} WHERE {ts} >= {ts_literal(since)} AND {ts} < {ts_literal(until)} "
           f"AND {etype} IS NOT NULL GROUP BY {etype} ORDER BY users DESC, events DESC, event_type")
    df = platform.query(sql, timeout_s=timeout_s, max_rows=10_000)
    skip = set(spec.goal.event_types) if spec.eligibility.exclude_goal_reached and not spec.goal.condition else set()
    out = []
    for ty in df["event_type"].astype(str):
        if ty in skip:
            continue
        try:
            event_type_literal(ty)
        except PathError:
            log.warning("features.auto: skipping event type %r (not a dotted XDM event type name)", ty)
            continue
        out.append(ty)
        if len(out) == n:
            break
    return out


__all__ = ["DataRange", "check_fields", "check_goal", "data_range", "dataset_of", "datasets", "event_fields", "find_dataset",
           "goal_predicate", "profile_fields", "profile_union", "top_event_types", "union_fields"]
