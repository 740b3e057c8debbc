"""Exploratory analysis of the events dataset, run through the platform's query engine.

:func:`explore_events` runs the queries of :mod:`cmle.explore.queries` and shapes their
(small, aggregated) results into tables; :mod:`cmle.explore.plots` draws them. Nothing
here reads raw events, so it works the same on the embedded platform and on AEP Query
Service, whose interactive results stop at 50,000 rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from cmle.columns import CONVERSION_EVENT
from cmle.errors import DataCheckError, QueryError
from cmle.explore import queries
from cmle.platform.base import Platform

log = logging.getLogger(__name__)

# Co-occurrence and correlation use at most this many event types (the most frequent), so
# the co-occurrence grid stays far under the 50k-row cap and the plots stay readable.
MAX_EVENT_TYPES = 50
QUERY_ROW_CAP = 50_000


@dataclass(frozen=True)
class Exploration:
    """What :func:`explore_events` found. Tables are small pandas frames."""

    totals: dict  # events, users, converted_users, conversion_rate, events_per_user, first/last_event
    event_mix: pd.DataFrame  # event_type, users, events, event_share, user_share, events_per_user
    funnel: pd.DataFrame  # step, event_type, users, users_in_order, conversion_from_previous/first
    cooccurrence: pd.DataFrame  # first_type, later_type, users, first_users, probability
    correlation: pd.DataFrame  # event_type, correlation, mean_converted, mean_other
    correlation_users: int  # users the correlation was computed over (all, or the sample)
    sql: dict[str, str] = field(default_factory=dict)  # query name -> the Spark SQL that ran

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every result table by name (``totals`` as a one-row table)."""
        return {"totals": pd.DataFrame([self.totals]), "event_mix": self.event_mix, "funnel": self.funnel,
                "cooccurrence": self.cooccurrence, "correlation": self.correlation}


def _run(platform: Platform, name: str, sql: str, timeout_s: float, ran: dict[str, str]) -> pd.DataFrame:
    ran[name] = sql
    df = platform.query(sql, timeout_s=timeout_s, max_rows=QUERY_ROW_CAP)
    if len(df) >= QUERY_ROW_CAP:  # cannot happen for aggregates of <= MAX_EVENT_TYPES types
        raise QueryError(f"explore query {name!r} returned {len(df)} rows, the interactive cap: "
                         "its result would be truncated")
    return df


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def shape_totals(row: pd.Series) -> dict:
    """The totals query's row as JSON-able headline numbers."""
    events, users, converted = int(row["events"]), int(row["users"]), int(row["converted_users"])

    def iso(ts) -> str | None:
        return None if pd.isna(ts) else pd.Timestamp(ts).isoformat()

    return {"events": events, "users": users, "converted_users": converted,
            "conversion_rate": _ratio(converted, users), "events_per_user": _ratio(events, users),
            "first_event": iso(row["first_event"]), "last_event": iso(row["last_event"])}


def shape_event_mix(mix: pd.DataFrame, totals: dict) -> pd.DataFrame:
    """Add each type's share of events and of users, and its events per user who has it."""
    out = mix.astype({"users": "int64", "events": "int64"}).reset_index(drop=True)
    out["event_share"] = out["events"] / totals["events"]
    out["user_share"] = out["users"] / totals["users"]
    out["events_per_user"] = out["events"] / out["users"]
    return out


def shape_correlation(row: pd.Series, event_types: list[str]) -> pd.DataFrame:
    """The correlation query's wide row as one row per event type, strongest first."""
    out = pd.DataFrame({
        "event_type": event_types,
        "correlation": [row[f"corr_{i}"] for i in range(len(event_types))],
        "mean_converted": [row[f"mean_converted_{i}"] for i in range(len(event_types))],
        "mean_other": [row[f"mean_other_{i}"] for i in range(len(event_types))],
    })
    out = out.astype({"correlation": "float64", "mean_converted": "float64", "mean_other": "float64"})
    # Strongest (by absolute value) first, ties by name, undefined (no variance) last.
    # Rounded: DuckDB's parallel sums may differ in the last bits from run to run, and equal
    # correlations must not swap places because of that.
    strength = out["correlation"].abs().round(9).rename("strength")
    order = (pd.concat([strength, out["event_type"]], axis=1)
             .sort_values(["strength", "event_type"], ascending=[False, True], na_position="last").index)
    return out.loc[order].reset_index(drop=True)


def cooccurrence_matrix(cooc: pd.DataFrame) -> pd.DataFrame:
    """P(later | first) as a square frame: rows = first type, columns = later type."""
    return cooc.pivot(index="first_type", columns="later_type", values="probability").astype("float64")


def explore_events(platform: Platform, table: str, tenant, sample_users: int = 0,
                   timeout_s: float = 600.0, funnel=queries.FUNNEL_STEPS,
                   goal_types=(CONVERSION_EVENT,)) -> Exploration:
    """Run every exploration query on the events ``table`` and return the shaped results.

    ``tenant`` is the tenant id (the synthetic data's fields) or the :class:`queries.Columns`
    of a model spec; ``funnel`` its steps (none: no funnel); ``goal_types`` the event types
    that are the goal (left out of the correlation with it). DataCheckError when the table
    holds no event. ``sample_users`` > 0 limits the correlation (the one per-user query) to
    that many hash-chosen users.
    """
    ran: dict[str, str] = {}
    totals = shape_totals(_run(platform, "totals", queries.totals_sql(table, tenant), timeout_s, ran).iloc[0])
    if totals["events"] == 0:
        raise DataCheckError(f"the events table {table} holds no event; run the synthetic stage "
                             "(or load your experience events with `cmle load`) first")
    mix = shape_event_mix(_run(platform, "event_mix", queries.event_mix_sql(table, tenant), timeout_s, ran), totals)
    funnel = (_run(platform, "funnel", queries.funnel_sql(table, tenant, steps=tuple(funnel)), timeout_s, ran)
              if funnel else pd.DataFrame(columns=["step", "event_type", "users", "users_in_order",
                                                   "conversion_from_previous", "conversion_from_first"]))
    types = list(mix["event_type"][:MAX_EVENT_TYPES])
    if len(mix) > MAX_EVENT_TYPES:
        log.warning("%d event types: co-occurrence and correlation use the %d most frequent",
                    len(mix), MAX_EVENT_TYPES)
    cooc = _run(platform, "cooccurrence", queries.cooccurrence_sql(table, tenant, types), timeout_s, ran)
    # The goal correlates with itself by construction: leave it out.
    predictors = [t for t in types if t not in set(goal_types)]
    if predictors:
        row = _run(platform, "correlation",
                   queries.correlation_sql(table, tenant, predictors, sample_users), timeout_s, ran).iloc[0]
        correlation, corr_users = shape_correlation(row, predictors), int(row["users"])
    else:
        correlation = pd.DataFrame(columns=["event_type", "correlation", "mean_converted", "mean_other"])
        corr_users = 0
    return Exploration(totals=totals, event_mix=mix, funnel=funnel, cooccurrence=cooc, correlation=correlation,
                       correlation_users=corr_users, sql=ran)


__all__ = ["Exploration", "explore_events", "cooccurrence_matrix", "MAX_EVENT_TYPES"]
