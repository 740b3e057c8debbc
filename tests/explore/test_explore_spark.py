"""The exploration SQL runs unchanged on Spark SQL and gives the same rows as on the embedded
platform (DuckDB after translation): the queries are written once for both."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cmle.explore import queries
from tests.explore.handmade_events import AC, C, F, IMP, O, PV, S, events_table, put_events

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TYPES = [S, O, C, PV, IMP, AC]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        left, right = a[col].reset_index(drop=True), b[col].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            pd.testing.assert_series_equal(left.astype(float), right.astype(float), check_names=False)
        elif pd.api.types.is_datetime64_any_dtype(left) or pd.api.types.is_datetime64_any_dtype(right):
            assert list(pd.to_datetime(left, utc=True)) == list(pd.to_datetime(right, utc=True))
        else:
            assert list(left) == list(right), col


def test_queries_give_the_same_rows_on_spark_and_on_the_embedded_platform(spark, platform, settings, tmp_path):
    ds = put_events(platform, settings.platform.owner)
    path = tmp_path / "events.parquet"
    pq.write_table(events_table(platform.tenant_id), path)
    spark.read.parquet(str(path)).createOrReplaceTempView(ds.table)
    tenant = platform.tenant_id
    for sql in (queries.totals_sql(ds.table, tenant), queries.event_mix_sql(ds.table, tenant),
                queries.funnel_sql(ds.table, tenant), queries.cooccurrence_sql(ds.table, tenant, [*TYPES, F]),
                queries.correlation_sql(ds.table, tenant, TYPES),
                queries.correlation_sql(ds.table, tenant, TYPES, sample_users=4)):
        _same(spark.sql(sql).toPandas(), platform.query(sql))
