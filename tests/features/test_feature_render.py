"""Rendering of the feature SQL: parameters, identifiers, columns, dialect."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlglot

from cmle.features import render, spec
from cmle.features.spec import FeatureSpec
from cmle.sql import to_duckdb

T = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def test_timestamp_literals_are_utc():
    assert render.ts_literal(T) == "TIMESTAMP '2025-03-01 00:00:00'"
    assert render.ts_literal(dt.date(2025, 3, 1)) == "TIMESTAMP '2025-03-01 00:00:00'"
    plus_two = dt.datetime(2025, 3, 1, 2, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert render.ts_literal(plus_two) == "TIMESTAMP '2025-03-01 00:00:00.000005'"


@pytest.mark.parametrize("bad", ["t; DROP TABLE x", "a-b", "", "`x`", "a..b", "1abc"])
def test_table_names_are_checked(bad):
    with pytest.raises(ValueError):
        render.quote_table(bad)


def test_qualified_table_names_are_quoted_per_part():
    assert render.quote_table("main.cmle.events") == "`main`.`cmle`.`events`"
    assert render.tenant_root("cmle") == "_cmle" == render.tenant_root("_cmle")
    with pytest.raises(ValueError):
        render.tenant_root("cm le")


def test_columns_follow_the_spec():
    q = render.feature_query("training", "ev", "pr", "cmle", T)
    assert q.columns[:3] == ("userid", "snapshot_ts", "label")
    assert q.feature_columns == spec.feature_columns(FeatureSpec())
    assert len(set(q.columns)) == len(q.columns)
    # the notebooks' 14 features are among the point-in-time ones, under the same names
    assert set(spec.notebook_feature_columns()) <= set(q.feature_columns)
    s = render.feature_query("scoring", "ev", "pr", "cmle", T)
    assert s.columns == ("userid", "snapshot_ts", *q.feature_columns)
    assert s.tables == {"events": "ev", "profiles": "pr"}


def test_windows_not_shorter_than_the_lookback_are_dropped():
    fs = FeatureSpec(lookback_days=14, windows=(28, 7, 14, 7))
    assert fs.recent_windows == (7,)
    cols = spec.feature_columns(fs)
    assert "emailsReceived_7d" in cols and "emailsReceived_14d" not in cols and "events_28d" not in cols


@pytest.mark.parametrize("kwargs", [dict(lookback_days=0), dict(outcome_days=0), dict(windows=(0,))])
def test_spec_refuses_empty_windows(kwargs):
    with pytest.raises(ValueError):
        FeatureSpec(**kwargs)


def test_label_window_and_scan_bounds():
    sql = render.pit_sql("training", "ev", "pr", "cmle", T, FeatureSpec(outcome_days=10))
    t_us, end_us = render.unix_micros(T), render.unix_micros(T + dt.timedelta(days=10))
    assert end_us - t_us == 10 * 86_400 * 1_000_000
    assert f"us > {t_us} AND us <= {end_us}" in sql
    assert "`timestamp` <= TIMESTAMP '2025-03-11 00:00:00'" in sql
    scoring = render.pit_sql("scoring", "ev", "pr", "cmle", T)
    assert "`timestamp` <= TIMESTAMP '2025-03-01 00:00:00'" in scoring and " AS label" not in scoring


@pytest.mark.parametrize("framing,kind", [("pit", "training"), ("pit", "scoring"), ("cmle", "training")])
def test_sql_is_spark_and_translates_to_duckdb(framing, kind):
    q = render.feature_query(kind, "cmle_events", "cmle_profiles", "cmle", T, framing=framing)
    assert "${" not in q.sql and "--" not in q.sql
    sqlglot.parse_one(q.sql, read="spark")  # raises on anything that is not Spark SQL
    duck = to_duckdb(q.sql)
    assert "EPOCH_US" in duck and "`" not in duck


def test_cmle_framing_is_training_only_and_needs_no_snapshot():
    q = render.feature_query("training", "ev", "pr", "cmle", framing="cmle", seed=7)
    assert q.tables == {"events": "ev"} and q.snapshot is None
    assert "MD5(CONCAT(_id, '7'))" in q.sql
    assert q.feature_columns == spec.notebook_feature_columns()
    with pytest.raises(ValueError):
        render.feature_query("scoring", "ev", "pr", "cmle", framing="cmle")
    with pytest.raises(ValueError):
        render.feature_query("training", "ev", "pr", "cmle", framing="other")
    with pytest.raises(ValueError):
        render.feature_query("training", "ev", "pr", "cmle", None)
