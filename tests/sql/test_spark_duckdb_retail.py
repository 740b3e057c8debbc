"""The retail spec's feature SQL (identityMap identity, a goal condition, productListItems
array sums, a tenant order value, profile dates) gives the same rows on Spark and on DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cmle.features import render
from cmle.features.plan import make_plan
from cmle.ingestion import ingest_tables
from cmle.modelspec import data as specdata, load_spec
from cmle.synthetic import retail
from tests.sql.test_spark_duckdb import _assert_same

RETAIL = Path(__file__).resolve().parents[2] / "conf" / "models" / "retail.yaml"


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["training", "scoring"])
def test_retail_features_are_the_same_on_spark_and_duckdb(spark, platform, tmp_path, kind):
    from cmle.spark import run_sql

    tenant = platform.tenant_id
    data = retail.generate(users=250, weeks=13, seed=11, tenant=tenant)
    paths = {}
    datasets = {}
    for name, table, cls in (("Luma web events", data.events, "experienceevent"),
                             ("Luma CRM profiles", data.profiles, "profile")):
        ds = platform.get_or_create_loaded_dataset(name, cls)
        ingest_tables(platform, ds.id, [table], key=name)
        paths[ds.table] = str(tmp_path / f"{ds.table}.parquet")
        pq.write_table(table, paths[ds.table])
        datasets[name] = ds
    spec = load_spec(RETAIL)
    events, profiles = datasets["Luma web events"], datasets["Luma CRM profiles"]
    t = dt.datetime(2025, 5, 2, tzinfo=dt.timezone.utc)
    auto = specdata.top_event_types(platform, spec, events, tenant, t - dt.timedelta(days=60), t, 7)
    plan = make_plan(spec, tenant, auto_types=tuple(auto))
    assert plan.auto_types  # the auto event types take part
    when = t if kind == "training" else dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    query = render.feature_query(kind, events.table, profiles.table, tenant, when, plan=plan)

    duck = platform.read_dataset(platform.create_table_as(f"cmle_test_retail_{kind}", query.sql).id).to_pandas()
    spk = run_sql(spark, query.sql, {t_: paths[t_] for t_ in query.tables.values()}).toPandas()
    assert list(duck.columns) == list(query.columns)
    _assert_same(duck, spk)
    assert duck["cart_value_sum"].sum() > 0 and duck["order_value_max"].notna().any()
    if kind == "training":
        assert 0 < duck["label"].sum() < len(duck)
