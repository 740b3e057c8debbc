"""featurize with engine = spark: the same SQL text on Spark builds the same sets as DuckDB.

(The SQL-level equality over every framing is tests/sql/test_spark_duckdb.py; this runs
the stage end to end through the engine seam.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from cmle import naming
from cmle.engines import spark_features
from cmle.errors import NotFoundError
from cmle.features import render
from cmle.runner import run_stage
from tests.features.eventdata import put_data, random_data
from tests.sql.test_spark_duckdb import _assert_same

pytestmark = pytest.mark.spark

SMALL = {"min_positives": 5, "min_negatives": 5, "framing": "pit"}
SETS = (naming.training_set("cmle"), naming.scoring_set("cmle"))


def _engine(settings, engine: str):
    return replace(settings, platform=replace(settings.platform, engine=engine))


def _sets(platform) -> dict:
    return {n: platform.read_dataset(platform.find_dataset(n).id).to_pandas() for n in SETS}


@pytest.mark.slow
def test_featurize_on_spark_builds_the_sets_duckdb_builds(settings, platform, spark):
    rows, profiles = random_data(150, seed=7)
    events, profs = put_data(platform, "cmle", rows, profiles)
    on_duckdb = run_stage("featurize", _engine(settings, "local"), SMALL)
    duck = _sets(platform)
    on_spark = run_stage("featurize", _engine(settings, "spark"), SMALL)
    spk = _sets(platform)
    for name in SETS:
        _assert_same(duck[name], spk[name])
    same = ("snapshot_ts", "scoring_ts", "training_rows", "training_positives", "scoring_rows")
    assert {k: on_spark[k] for k in same} == {k: on_duckdb[k] for k in same}
    left = {t.name for t in spark.catalog.listTables()}
    assert not left & {events.table, profs.table}  # the staged sources leave no temporary view behind


def test_spark_reads_a_catalog_table_of_the_same_name_instead_of_the_platform(settings, platform, spark, ctx):
    rows, profiles = random_data(40, seed=8)
    events, profs = put_data(platform, "cmle", rows, profiles)
    query = render.feature_query(render.SCORING, events.table, profs.table, platform.tenant_id,
                                 rows[0][1].replace(year=2025, month=3, day=12, hour=0, minute=0, second=0,
                                                    microsecond=0))
    spark.sql(f"CREATE OR REPLACE VIEW {events.table} AS SELECT 1 AS x")  # a catalog object, not a temp view
    try:
        assert spark_features._in_catalog(spark, events.table)
        staged = spark_features.stage_sources(spark, ctx, query, settings.local_root)
        assert list(staged) == [profs.table]  # events come from the catalog table, profiles are staged
    finally:
        spark.sql(f"DROP VIEW IF EXISTS {events.table}")


def test_a_table_in_neither_place_is_a_clear_error(settings, platform, spark, ctx):
    query = render.feature_query(render.SCORING, "cmle_nowhere_events", "cmle_nowhere_profiles", "cmle",
                                 render.utc(__import__("datetime").datetime(2025, 3, 1)))
    with pytest.raises(NotFoundError, match="cmle_nowhere_events.*neither a table in the Spark catalog"):
        spark_features.stage_sources(spark, ctx, query, settings.local_root)


def test_engine_spark_moves_featurize_only_on_the_embedded_platform(settings):
    assert not spark_features.runs_features(settings)
    assert spark_features.runs_features(_engine(settings, "spark"))
    aep = replace(settings, platform=replace(settings.platform, engine="spark", backend="aep"))
    assert not spark_features.runs_features(aep)  # Query Service runs it next to the data


def test_realised_outcomes_on_spark_equal_the_embedded_platforms(settings, platform, spark, ctx, mlflow_store):
    """The outcome SQL of `monitor` on Spark (score files as a view) gives the cells DuckDB gives."""
    import datetime as dt

    import pyarrow as pa

    from cmle.scoring import batch
    from cmle.stages import monitor
    from tests.scoring.toy import make_scores, write_score_run

    rows, profiles = random_data(150, seed=4)
    events, _ = put_data(platform, "cmle", rows, profiles)
    users = sorted({r[0] for r in rows})
    scores = make_scores(len(users), ids=users)
    export_time = write_score_run(settings, pa.Table.from_pandas(scores, preserve_index=False))
    run = batch.find_score_run(settings.storage_url, settings.cloud.import_path, naming.scores_folder("cmle"),
                               export_time)
    t = dt.datetime(2025, 2, 20, tzinfo=dt.timezone.utc)
    from cmle.context import Context

    spark_ctx = Context(_engine(settings, "spark"))
    try:
        on_spark, status = monitor.realised_cells(spark_ctx, _spec(), events, run, t, 14, 60)
    finally:
        spark_ctx.close()
    flat = platform.put_table("flat_scores", pa.Table.from_pandas(scores[["userid", "propensity", "bucket", "decile"]]))
    sql = render.outcome_sql(events.table, platform.tenant_id, t, 14, f"SELECT * FROM {flat.table}", spec=_spec())
    local = platform.query(sql)
    key = ["bucket", "decile", "p_bin"]
    a = local.sort_values(key).reset_index(drop=True)
    b = on_spark.sort_values(key).reset_index(drop=True)
    assert status == "ripe" and len(a) == len(b) > 10 and int(b["positives"].sum()) > 0
    for c in ("profiles", "positives"):
        assert a[c].astype(int).tolist() == b[c].astype(int).tolist()
    assert a["propensity_sum"].astype(float).round(9).tolist() == b["propensity_sum"].astype(float).round(9).tolist()


def _spec():
    from cmle.modelspec import spec_for_synthetic

    return spec_for_synthetic()
