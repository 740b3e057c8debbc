"""The exploration queries on a hand-made events table with known answers, run through the
embedded platform's query engine; each checked against hand-counted values and against a
brute-force pandas computation over the raw events."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import sqlglot

from cmle.errors import DataCheckError, ParameterError
from cmle.explore import Exploration, cooccurrence_matrix, explore_events, queries
from tests.explore.handmade_events import AC, C, EVENTS, F, IMP, O, PV, S, events_frame, put_events

ALL_TYPES = [S, O, C, F, PV, IMP, AC]


@pytest.fixture
def events(platform, settings):
    """The hand-made events on the platform: (table name, tenant)."""
    ds = put_events(platform, settings.platform.owner)
    return ds.table, platform.tenant_id


@pytest.fixture
def result(platform, events) -> Exploration:
    return explore_events(platform, *events)


# --- brute-force references over the raw events (pandas) ----------------------------------
def reference_cooccurrence(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    """The notebooks' self-join of all events, corrected: pairs of two different events of a
    user with a.timestamp <= b.timestamp; distinct users per (a type, b type) / users of a type."""
    pairs = df.merge(df, on="userid", suffixes=("_a", "_b"))
    pairs = pairs[(pairs["_id_a"] != pairs["_id_b"]) & (pairs["timestamp_a"] <= pairs["timestamp_b"])]
    users = pairs.groupby(["eventType_a", "eventType_b"])["userid"].nunique()
    type_users = df.groupby("eventType")["userid"].nunique()
    return {(a, b): users.get((a, b), 0) / type_users[a] for a in type_users.index for b in type_users.index}


def per_user_counts(df: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab(df["userid"], df["eventType"])
    counts["converted"] = (counts[F] > 0).astype(int)
    return counts


# --- totals and event mix -----------------------------------------------------------------
def test_totals_count_users_by_identity_not_event_id(result):
    assert result.totals == {
        "events": 22, "users": 7, "converted_users": 3,
        "conversion_rate": pytest.approx(3 / 7), "events_per_user": pytest.approx(22 / 7),
        "first_event": "2024-01-01T00:00:00+00:00", "last_event": "2024-01-02T06:00:00+00:00",
    }


def test_event_mix_has_distinct_users_and_events_per_type(result):
    mix = result.event_mix
    # Most events first, ties by name.
    assert list(mix["event_type"]) == [S, C, O, F, PV, AC, IMP]
    assert dict(zip(mix["event_type"], mix["users"])) == {S: 5, O: 4, C: 3, F: 3, PV: 3, IMP: 1, AC: 1}
    assert dict(zip(mix["event_type"], mix["events"])) == {S: 6, O: 4, C: 4, F: 3, PV: 3, IMP: 1, AC: 1}
    df = events_frame()
    expected = df.groupby("eventType").agg(users=("userid", "nunique"), events=("_id", "count"))
    got = mix.set_index("event_type")
    assert (got["users"] == expected["users"].reindex(got.index)).all()
    assert got.loc[S, "event_share"] == pytest.approx(6 / 22)
    assert got.loc[S, "user_share"] == pytest.approx(5 / 7)
    assert got.loc[C, "events_per_user"] == pytest.approx(4 / 3)
    assert got["event_share"].sum() == pytest.approx(1.0)


# --- funnel -------------------------------------------------------------------------------
def test_funnel_counts_users_per_step_in_order_and_any_order(result):
    f = result.funnel
    assert list(f["step"]) == [1, 2, 3, 4]
    assert list(f["event_type"]) == [S, O, C, F]
    assert list(f["users"]) == [5, 4, 3, 3]  # had the event at all
    # u5 clicked before any send (no open), u6 converted before its emails, u2 never clicked,
    # u7 clicked but did not convert: only u1 goes all the way.
    assert list(f["users_in_order"]) == [5, 4, 2, 1]
    assert math.isnan(f["conversion_from_previous"][0])
    assert list(f["conversion_from_previous"][1:]) == pytest.approx([4 / 5, 2 / 4, 1 / 2])
    assert list(f["conversion_from_first"]) == pytest.approx([1.0, 0.8, 0.4, 0.2])


def test_funnel_with_custom_steps_and_bad_steps(platform, events):
    table, tenant = events
    f = platform.query(queries.funnel_sql(table, tenant, steps=(PV, F)))
    # PV then F at or after: u1 (26 -> 27), u3 (2 -> 3); u4 never converts.
    assert list(f["users_in_order"]) == [3, 2]
    with pytest.raises(ParameterError):
        queries.funnel_sql(table, tenant, steps=(S,))
    with pytest.raises(ParameterError):
        queries.funnel_sql(table, tenant, steps=(S, S))


# --- co-occurrence ------------------------------------------------------------------------
def test_cooccurrence_is_p_later_given_first_over_the_full_grid(result):
    cooc = result.cooccurrence
    assert len(cooc) == len(ALL_TYPES) ** 2
    p = {(r.first_type, r.later_type): r.probability for r in cooc.itertuples()}
    # Hand-counted.
    assert p[(S, O)] == pytest.approx(4 / 5)  # u1, u2, u6 (S@10 -> O@20), u7; not u5
    assert p[(F, S)] == pytest.approx(1 / 3)  # u6 only: u1's send came before its form
    assert p[(C, S)] == pytest.approx(1 / 3)  # u5 only
    assert p[(C, F)] == pytest.approx(1 / 3)  # u1 only
    assert p[(S, S)] == pytest.approx(1 / 5)  # a second send: u2
    assert p[(C, C)] == pytest.approx(1 / 3)  # a second click: u7
    assert p[(F, F)] == 0.0  # nobody converts twice
    assert p[(IMP, AC)] == 1.0 and p[(AC, IMP)] == 0.0
    first_users = dict(zip(cooc["first_type"], cooc["first_users"]))
    assert first_users == {S: 5, O: 4, C: 3, F: 3, PV: 3, IMP: 1, AC: 1}
    # And every cell equals the brute-force self-join over all events.
    ref = reference_cooccurrence(events_frame())
    assert set(p) == set(ref)
    for key, value in ref.items():
        assert p[key] == pytest.approx(value), key


def test_cooccurrence_matrix_pivots_rows_first_columns_later(result):
    m = cooccurrence_matrix(result.cooccurrence)
    assert m.shape == (7, 7)
    assert m.loc[S, O] == pytest.approx(0.8)
    assert m.loc[O, S] == pytest.approx(1 / 4)  # u2: O@10 -> S@30


def test_cooccurrence_restricted_to_given_types(platform, events):
    table, tenant = events
    cooc = platform.query(queries.cooccurrence_sql(table, tenant, [S, O]))
    assert sorted(zip(cooc["first_type"], cooc["later_type"])) == sorted(
        [(S, S), (S, O), (O, S), (O, O)])


# --- correlation --------------------------------------------------------------------------
def test_correlation_matches_pandas_pearson_over_real_types(result):
    corr = result.correlation.set_index("event_type")
    # Every event type seen except the conversion event itself; no duplicates.
    assert sorted(corr.index) == sorted(t for t in ALL_TYPES if t != F)
    assert result.correlation_users == 7
    counts = per_user_counts(events_frame())
    for etype in corr.index:
        expected = np.corrcoef(counts[etype], counts["converted"])[0, 1]
        assert corr.loc[etype, "correlation"] == pytest.approx(expected, abs=1e-12), etype
        assert corr.loc[etype, "mean_converted"] == pytest.approx(counts.loc[counts.converted == 1, etype].mean())
        assert corr.loc[etype, "mean_other"] == pytest.approx(counts.loc[counts.converted == 0, etype].mean())
    # Signs worked out by hand: converters sent/clicked less, saw more pages and ads.
    assert corr.loc[S, "correlation"] < 0 and corr.loc[C, "correlation"] < 0
    assert corr.loc[PV, "correlation"] > 0 and corr.loc[IMP, "correlation"] > 0
    # Sent: converters average 2/3 sends, the others 1.
    assert corr.loc[S, "mean_converted"] == pytest.approx(2 / 3) and corr.loc[S, "mean_other"] == 1.0
    # Strongest first.
    strength = result.correlation["correlation"].abs()
    assert list(strength) == sorted(strength, reverse=True)


def test_correlation_on_a_deterministic_hash_sample(platform, events):
    table, tenant = events
    sampled = sorted(EVENTS, key=lambda u: hashlib.md5(u.encode()).hexdigest())[:3]
    r1 = explore_events(platform, table, tenant, sample_users=3)
    r2 = explore_events(platform, table, tenant, sample_users=3)
    assert r1.correlation_users == 3
    pd.testing.assert_frame_equal(r1.correlation, r2.correlation)
    df = events_frame()
    counts = per_user_counts(df[df["userid"].isin(sampled)])
    got = r1.correlation.set_index("event_type")
    for etype in got.index:
        column = counts[etype] if etype in counts else pd.Series(0, index=counts.index)
        if column.std() == 0 or counts["converted"].std() == 0:
            assert math.isnan(got.loc[etype, "correlation"]), etype  # undefined, not 0
        else:
            expected = np.corrcoef(column, counts["converted"])[0, 1]
            assert got.loc[etype, "correlation"] == pytest.approx(expected, abs=1e-12), etype
    # The other results do not depend on the sample.
    assert r1.totals["users"] == 7


# --- errors and SQL hygiene ---------------------------------------------------------------
def test_empty_events_table_is_a_clear_error(platform, settings):
    from tests.explore.handmade_events import events_table

    ds = put_events(platform, settings.platform.owner, events_table().slice(0, 0))
    with pytest.raises(DataCheckError, match="holds no event.*synthetic"):
        explore_events(platform, ds.table, platform.tenant_id)


def test_names_that_are_not_sql_identifiers_or_event_types_are_refused():
    with pytest.raises(ParameterError):
        queries.event_mix_sql("t; DROP TABLE x", "cmle")
    with pytest.raises(ParameterError):
        queries.totals_sql("t", "cm le")
    with pytest.raises(DataCheckError):
        queries.cooccurrence_sql("t", "cmle", ["x' OR '1'='1"])
    with pytest.raises(ParameterError):
        queries.correlation_sql("t", "cmle", [S], sample_users=-1)
    with pytest.raises(ParameterError):
        queries.correlation_sql("t", "cmle", [S, S])


def all_sql(table="cmle_synthetic_experience_events_cmle", tenant="cmle") -> dict[str, str]:
    types = [S, O, C, PV, IMP, AC]
    return {
        "totals": queries.totals_sql(table, tenant),
        "event_mix": queries.event_mix_sql(table, tenant),
        "funnel": queries.funnel_sql(table, tenant),
        "cooccurrence": queries.cooccurrence_sql(table, tenant, [*types, F]),
        "correlation": queries.correlation_sql(table, tenant, types),
        "correlation_sampled": queries.correlation_sql(table, tenant, types, sample_users=1000),
    }


@pytest.mark.parametrize("name", list(all_sql()))
def test_sql_parses_as_spark_sql_and_uses_the_identity(name):
    sql = all_sql()[name]
    statements = sqlglot.parse(sql, read="spark")
    assert len(statements) == 1 and statements[0] is not None
    uid = "`_cmle`.`userid`"
    assert uid in sql and "_id" not in sql.replace(uid, "")
    # It also renders back as Spark SQL (no DuckDB-only construct slipped in).
    assert sqlglot.transpile(sql, read="spark", write="spark")


def test_exploration_sql_is_recorded_per_query(result):
    assert set(result.sql) == {"totals", "event_mix", "funnel", "cooccurrence", "correlation"}
    assert set(result.tables()) == {"totals", "event_mix", "funnel", "cooccurrence", "correlation"}
