"""The exploration's SQL, rendered for an events table and a tenant.

Every query is written once in the Spark SQL dialect that AEP Query Service accepts (the
embedded platform translates it for DuckDB) and aggregates inside the engine, so each
result has at most a few hundred rows, far under Query Service's 50,000-row interactive
cap; no query returns raw events.

What the CMLE notebooks got wrong and these queries do instead (reference §2.5):

* users are counted by the identity ``_{tenant}.userid``, not by the event id ``_id``;
* the funnel counts users who reached each step *after* the previous one, next to the
  users who had the step's event at all;
* co-occurrence joins one row per user and event type (first and last time) instead of
  self-joining every event, so its cost grows with users × types, not events²;
* the correlation uses the event types found in the data (no misspelled types that are
  always 0, no duplicates).

Which fields hold the identity, the time and the event type, and what the goal is, come
from the model spec (:class:`Columns`); a tenant id alone means the synthetic data's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cmle.columns import CONVERSION_EVENT
from cmle.errors import DataCheckError, ParameterError
from cmle.modelspec.paths import EVENT_TYPE

# The email funnel of the notebooks, in order; it ends in the conversion event.
FUNNEL_STEPS = (
    "directMarketing.emailSent",
    "directMarketing.emailOpened",
    "directMarketing.emailClicked",
    CONVERSION_EVENT,
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value or ""):
        raise ParameterError(f"{what} {value!r} is not a plain SQL identifier (letters, digits, _)")
    return value


def event_literal(event_type: str) -> str:
    """``event_type`` as a SQL string literal; DataCheckError for a name no XDM event type has."""
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise DataCheckError(f"event type {event_type!r} is not a dotted XDM event type name; "
                             "fix the eventType values of the events dataset")
    return f"'{event_type}'"


def _in_list(event_types) -> str:
    return ", ".join(event_literal(e) for e in event_types)


@dataclass(frozen=True)
class Columns:
    """Spark SQL of the fields the exploration reads: the identity, the event time, the event
    type, and the goal (a predicate on an event row)."""

    user: str
    ts: str
    event_type: str
    goal: str

    @classmethod
    def of(cls, spec, tenant: str) -> "Columns":
        """The columns a model spec names, for ``tenant``."""
        from cmle.modelspec.data import goal_predicate

        ev = spec.events
        return cls(user=ev.identity.resolve(tenant).sql(), ts=ev.timestamp.resolve(tenant).sql(),
                   event_type=ev.event_type.resolve(tenant).sql(), goal=goal_predicate(spec, tenant))


def columns(tenant_or_columns) -> Columns:
    """:class:`Columns` as given, or the synthetic spec's for a tenant id."""
    if isinstance(tenant_or_columns, Columns):
        return tenant_or_columns
    from cmle.modelspec import spec_for_synthetic

    return Columns.of(spec_for_synthetic(), _identifier(tenant_or_columns, "tenant id"))


def user_column(tenant) -> str:
    """The identity expression of an events table (the synthetic data's: ``_{tenant}.userid``)."""
    return columns(tenant).user


def totals_sql(table: str, tenant: str) -> str:
    """One row: ``events``, ``users`` (distinct identities), ``converted_users`` (users with
    the conversion event), ``first_event``, ``last_event``."""
    c = columns(tenant)
    uid = c.user
    return (
        f"SELECT COUNT(*) AS events,\n"
        f"       COUNT(DISTINCT {uid}) AS users,\n"
        f"       COUNT(DISTINCT CASE WHEN {c.goal} THEN {uid} END) AS converted_users,\n"
        f"       MIN({c.ts}) AS first_event,\n"
        f"       MAX({c.ts}) AS last_event\n"
        f"FROM {_identifier(table, 'table')}"
    )


def event_mix_sql(table: str, tenant: str) -> str:
    """One row per event type: ``event_type``, ``users`` (distinct identities with it),
    ``events``; most frequent first."""
    c = columns(tenant)
    uid = c.user
    return (
        f"SELECT {c.event_type} AS event_type,\n"
        f"       COUNT(DISTINCT {uid}) AS users,\n"
        f"       COUNT(*) AS events\n"
        f"FROM {_identifier(table, 'table')}\n"
        f"WHERE {uid} IS NOT NULL\n"
        f"GROUP BY {c.event_type}\n"
        f"ORDER BY events DESC, event_type"
    )


def funnel_sql(table: str, tenant: str, steps=FUNNEL_STEPS) -> str:
    """One row per funnel step, in order: ``step`` (1-based), ``event_type``, ``users``
    (distinct users with the step's event, in any order), ``users_in_order`` (users whose
    step-k event came at or after the time they reached step k-1; step 1 = their first
    step-1 event), ``conversion_from_previous`` and ``conversion_from_first`` (ratios of
    ``users_in_order``; NULL for step 1's previous)."""
    if len(steps) < 2 or len(set(steps)) != len(steps):
        raise ParameterError(f"a funnel needs at least two distinct steps, got {list(steps)}")
    c = columns(tenant)
    uid = c.user
    ctes = [
        f"step_events AS (\n"
        f"  SELECT {uid} AS userid, {c.event_type} AS event_type, {c.ts} AS ts\n"
        f"  FROM {_identifier(table, 'table')}\n"
        f"  WHERE {c.event_type} IN ({_in_list(steps)}) AND {uid} IS NOT NULL\n)",
        "any_order AS (\n"
        "  SELECT event_type, COUNT(DISTINCT userid) AS users FROM step_events GROUP BY event_type\n)",
        f"reached_1 AS (\n"
        f"  SELECT userid, MIN(ts) AS ts FROM step_events WHERE event_type = {event_literal(steps[0])}"
        f" GROUP BY userid\n)",
    ]
    # Each step starts from the time the user reached the previous one, so a click logged
    # before any open does not count as the open -> click transition.
    for k, step in enumerate(steps[1:], start=2):
        ctes.append(
            f"reached_{k} AS (\n"
            f"  SELECT r.userid, MIN(s.ts) AS ts\n"
            f"  FROM reached_{k - 1} r JOIN step_events s\n"
            f"    ON s.userid = r.userid AND s.event_type = {event_literal(step)} AND s.ts >= r.ts\n"
            f"  GROUP BY r.userid\n)")
    ordered = "\n  UNION ALL ".join(
        f"SELECT {k} AS step, {event_literal(step)} AS event_type, COUNT(*) AS users_in_order FROM reached_{k}"
        for k, step in enumerate(steps, start=1))
    ctes.append(f"ordered AS (\n  {ordered}\n)")
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        "SELECT o.step, o.event_type,\n"
        "       COALESCE(a.users, 0) AS users,\n"
        "       o.users_in_order,\n"
        "       CAST(o.users_in_order AS DOUBLE)\n"
        "         / NULLIF(LAG(o.users_in_order) OVER (ORDER BY o.step), 0) AS conversion_from_previous,\n"
        "       CAST(o.users_in_order AS DOUBLE)\n"
        "         / NULLIF(FIRST_VALUE(o.users_in_order) OVER (ORDER BY o.step), 0) AS conversion_from_first\n"
        "FROM ordered o LEFT JOIN any_order a ON a.event_type = o.event_type\n"
        "ORDER BY o.step"
    )


def cooccurrence_sql(table: str, tenant: str, event_types) -> str:
    """One row per (``first_type``, ``later_type``) pair of ``event_types`` (the full grid):
    ``users`` = users with an event of ``later_type`` at or after their first ``first_type``
    event (for the same type: a second event of it), ``first_users`` = users with
    ``first_type``, ``probability`` = P(later | first) = users / first_users.

    A pair (a, b) of events with a.timestamp <= b.timestamp exists exactly when the user's
    first ``first_type`` time is <= their last ``later_type`` time, so one row per user and
    type replaces the notebooks' self-join of all events.
    """
    types = list(dict.fromkeys(event_types))
    if not types:
        raise ParameterError("co-occurrence needs at least one event type")
    c = columns(tenant)
    uid = c.user
    return (
        f"WITH per_type AS (\n"
        f"  SELECT {uid} AS userid, {c.event_type} AS event_type,\n"
        f"         MIN({c.ts}) AS first_ts, MAX({c.ts}) AS last_ts, COUNT(*) AS n\n"
        f"  FROM {_identifier(table, 'table')}\n"
        f"  WHERE {c.event_type} IN ({_in_list(types)}) AND {uid} IS NOT NULL\n"
        f"  GROUP BY {uid}, {c.event_type}\n"
        f"),\n"
        f"type_users AS (\n"
        f"  SELECT event_type, COUNT(*) AS users FROM per_type GROUP BY event_type\n"
        f"),\n"
        f"pairs AS (\n"
        f"  SELECT a.event_type AS first_type, b.event_type AS later_type, COUNT(*) AS users\n"
        f"  FROM per_type a JOIN per_type b ON a.userid = b.userid\n"
        f"  WHERE (a.event_type <> b.event_type AND a.first_ts <= b.last_ts)\n"
        f"     OR (a.event_type = b.event_type AND a.n > 1)\n"
        f"  GROUP BY a.event_type, b.event_type\n"
        f")\n"
        f"SELECT f.event_type AS first_type, l.event_type AS later_type,\n"
        f"       COALESCE(p.users, 0) AS users,\n"
        f"       f.users AS first_users,\n"
        f"       CAST(COALESCE(p.users, 0) AS DOUBLE) / NULLIF(f.users, 0) AS probability\n"
        f"FROM type_users f CROSS JOIN type_users l\n"
        f"LEFT JOIN pairs p ON p.first_type = f.event_type AND p.later_type = l.event_type\n"
        f"ORDER BY first_type, later_type"
    )


def correlation_sql(table: str, tenant: str, event_types, sample_users: int = 0) -> str:
    """One row: ``users``, ``converted_users`` and, for the i-th of ``event_types``,
    ``corr_{i}`` = Pearson correlation between users' counts of that type and conversion
    (1 if the user has the conversion event), ``mean_converted_{i}`` and ``mean_other_{i}``
    (mean count among converted and other users). Columns are numbered, not named after
    the types, because event types are not SQL identifiers.

    With ``sample_users`` > 0 only that many users take part, chosen by the order of
    ``md5(userid)``: the same users on every run and on every engine (Spark and DuckDB
    compute the same MD5).
    """
    types = list(event_types)
    if not types or len(set(types)) != len(types):
        raise ParameterError(f"correlation needs distinct event types, got {types}")
    if sample_users < 0:
        raise ParameterError(f"sample_users must be 0 (all users) or positive, got {sample_users}")
    c = columns(tenant)
    uid = c.user
    table = _identifier(table, "table")
    ctes = []
    where = f"  WHERE {uid} IS NOT NULL\n"
    if sample_users:
        ctes.append(
            f"sampled AS (\n"
            f"  SELECT userid FROM (SELECT DISTINCT {uid} AS userid FROM {table} WHERE {uid} IS NOT NULL) u\n"
            f"  ORDER BY md5(userid), userid\n"
            f"  LIMIT {int(sample_users)}\n)")
        where = f"  WHERE {uid} IN (SELECT userid FROM sampled)\n"
    counts = ",\n".join(
        f"    SUM(CASE WHEN {c.event_type} = {event_literal(e)} THEN 1 ELSE 0 END) AS n_{i}" for i, e in enumerate(types))
    ctes.append(
        f"per_user AS (\n"
        f"  SELECT {uid} AS userid,\n{counts},\n"
        f"    MAX(CASE WHEN {c.goal} THEN 1 ELSE 0 END) AS converted\n"
        f"  FROM {table}\n{where}"
        f"  GROUP BY {uid}\n)")
    stats = ",\n".join(
        f"       CORR(CAST(n_{i} AS DOUBLE), CAST(converted AS DOUBLE)) AS corr_{i},\n"
        f"       AVG(CASE WHEN converted = 1 THEN CAST(n_{i} AS DOUBLE) END) AS mean_converted_{i},\n"
        f"       AVG(CASE WHEN converted = 0 THEN CAST(n_{i} AS DOUBLE) END) AS mean_other_{i}"
        for i in range(len(types)))
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        "SELECT COUNT(*) AS users, SUM(converted) AS converted_users,\n"
        f"{stats}\n"
        "FROM per_user"
    )
