"""One feature SQL, two engines: the same rendered Spark SQL gives the same rows on Spark
(pyspark local mode) and, translated by sqlglot, on DuckDB (the local platform)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cmle import naming
from cmle.errors import CmleError
from cmle.features import render
from tests.features.eventdata import put_data, random_data, ts

SNAPSHOT = ts("2025-02-20 00:00")


@pytest.fixture
def sources(platform, tmp_path):
    """Random events and profiles on the local platform, and the same rows as Parquet files."""
    rows, profiles = random_data(120, seed=3)
    events, profs = put_data(platform, "cmle", rows, profiles)
    paths = {}
    for ds in (events, profs):
        path = tmp_path / f"{ds.table}.parquet"
        pq.write_table(platform.read_dataset(ds.id), path)
        paths[ds.table] = str(path)
    return events, profs, paths


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by profile id, timestamps as naive UTC, integers as nullable Int64."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[col] = (s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None else s).astype(
                "datetime64[us]")
        elif pd.api.types.is_integer_dtype(s):
            out[col] = s.astype("Int64")
    return out.sort_values("userid", kind="stable").reset_index(drop=True)


def _values(s: pd.Series) -> list:
    return s.astype(object).where(s.notna(), None).tolist()


def _assert_same(duck: pd.DataFrame, spk: pd.DataFrame) -> None:
    assert list(duck.columns) == list(spk.columns)
    assert len(duck) == len(spk) > 0
    duck, spk = _normalise(duck), _normalise(spk)
    for col in duck.columns:
        a, b = duck[col], spk[col]
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            assert pd.api.types.is_float_dtype(a) and pd.api.types.is_float_dtype(b), col
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-12, atol=0, err_msg=col)
        elif pd.api.types.is_integer_dtype(a) or pd.api.types.is_integer_dtype(b):
            assert pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b), col
            assert a.equals(b), col
        else:
            assert _values(a) == _values(b), col


@pytest.mark.spark
@pytest.mark.parametrize("kind,framing,when", [
    ("training", "pit", SNAPSHOT),
    ("scoring", "pit", ts("2025-03-12 00:00")),
    ("training", "cmle", None),
])
def test_same_rows_on_spark_and_duckdb(spark, platform, sources, kind, framing, when):
    from cmle.spark import run_sql

    events, profs, paths = sources
    query = render.feature_query(kind, events.table, profs.table, platform.tenant_id, when, framing=framing)
    assert set(query.tables.values()) <= set(paths)

    duck_ds = platform.create_table_as(naming.table_name(f"cmle_test_{kind}_{framing}"), query.sql)
    duck = platform.read_dataset(duck_ds.id).to_pandas()
    spk = run_sql(spark, query.sql, {t: paths[t] for t in query.tables.values()}).toPandas()

    assert list(duck.columns) == list(query.columns)
    _assert_same(duck, spk)
    if kind == "training":  # the comparison is not vacuous: both classes are there
        assert 0 < duck["label"].sum() < len(duck)


@pytest.mark.spark
def test_spark_session_is_utc_and_quiet(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.ui.enabled") == "false"


def test_local_session_settings_and_a_clear_error_without_pyspark(monkeypatch):
    from cmle import spark as cmle_spark

    conf = cmle_spark.local_conf("/tmp/wh")
    assert conf["spark.sql.session.timeZone"] == "UTC" and conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.warehouse.dir"] == "/tmp/wh"
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if not installed
    with pytest.raises(CmleError, match=r"pip install 'cmle\[spark\]'"):
        cmle_spark.get_spark()
