"""Scoring with mlflow.pyfunc.spark_udf on a local Spark: the same score files as the pandas path."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import naming, storage
from cmle.engines import spark_scoring
from cmle.errors import DataCheckError, RegistryError
from cmle.exports import newest_feature_export
from cmle.runner import run_stage
from cmle.scoring import batch, model_ref
from cmle.scoring.summary import ScoreSummary
from tests.scoring.toy import make_scores, put_scoring_set, scoring_table

pytestmark = pytest.mark.spark


def _where(settings):
    return settings.storage_url, settings.cloud.import_path, naming.scores_folder(settings.platform.owner)


def _rows(run) -> pd.DataFrame:
    return storage.read_export(run.url).to_pandas().sort_values("userid").reset_index(drop=True)


def test_spark_udf_scores_equal_pandas_scores_row_for_row(settings, platform, champion, spark, ctx):
    put_scoring_set(platform, settings, scoring_table(n=700, seed=3))
    source = newest_feature_export(ctx, "scoring")
    local = batch.score_export(model_ref.load(champion), champion, source, *_where(settings), batch_rows=64)
    on_spark = spark_scoring.score_export(champion, source, *_where(settings), spark=spark, rows_per_file=250)

    a, b = _rows(local), _rows(on_spark)
    assert len(b) == 700 and b["userid"].is_unique
    pd.testing.assert_frame_equal(a.drop(columns="score_date"), b.drop(columns="score_date"))
    run_time = pd.Timestamp(pd.to_datetime(on_spark.export_time, format=storage.EXPORT_TIME_FORMAT), tz="UTC")
    assert (b["score_date"] == run_time).all()  # every row carries its run's time, as on the local path
    # the same files: schema, Parquet metadata (what `score` uses to recognise a run), summary
    assert len(on_spark.files) == 3  # 700 rows at most 250 per file
    for f in on_spark.files:
        assert pq.read_schema(f) == pq.read_schema(local.files[0])
    again = batch.read_run(on_spark.url, on_spark.export_time)
    assert (again.model_name, again.model_version, again.source_dataset, again.source_export_time) == (
        local.model_name, local.model_version, local.source_dataset, local.source_export_time)
    assert batch.same_run(again, champion, source)
    # a later export of the same content is recognised too: both engines record its fingerprint
    assert again.source_fingerprint == on_spark.source_fingerprint == local.source_fingerprint != ""
    assert on_spark.summary.metrics() == pytest.approx(local.summary.metrics())
    assert list(on_spark.summary.score_counts) == list(local.summary.score_counts)


def test_the_one_column_double_path_gives_the_propensity(settings, platform, champion, spark, ctx):
    put_scoring_set(platform, settings, scoring_table(n=300, seed=4))
    source = newest_feature_export(ctx, "scoring")
    model = model_ref.load(champion)
    inputs = batch.check_columns(batch.export_schema(source.url), model, champion.uri)
    assert spark_scoring.result_type(model, ("propensity",)) == "double"
    assert spark_scoring.result_type(model) == ("propensity double, score bigint, percentile bigint, "
                                                "decile bigint, bucket string")
    fast = spark_scoring.score_frame(spark, model, champion, source.url, inputs, ("propensity",))
    assert dict(fast.dtypes) == {"userid": "string", "propensity": "double"}
    full = spark_scoring.score_frame(spark, model, champion, source.url, inputs)
    a = fast.toPandas().sort_values("userid").reset_index(drop=True)
    b = full.toPandas().sort_values("userid").reset_index(drop=True)
    pd.testing.assert_series_equal(a["propensity"], b["propensity"])


def test_score_stage_with_engine_spark_writes_the_score_run(settings, platform, champion, spark):
    spark_settings = replace(settings, platform=replace(settings.platform, engine="spark"))
    put_scoring_set(platform, settings, scoring_table(n=120, seed=5))
    out = run_stage("score", spark_settings)
    assert (out["rows"], out["model_version"], out["reused"]) == (120, "1", False)
    again = run_stage("score", spark_settings)  # same export, same version: reused, nothing written
    assert again["reused"] and again["scores_url"] == out["scores_url"]
    local = run_stage("score", settings, {"rescore": True})  # the pandas path scores the same rows
    pd.testing.assert_frame_equal(
        storage.read_export(out["scores_url"]).to_pandas().drop(columns="score_date").sort_values("userid")
        .reset_index(drop=True),
        storage.read_export(local["scores_url"]).to_pandas().drop(columns="score_date").sort_values("userid")
        .reset_index(drop=True))
    run = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'score'",
                             order_by=["attributes.start_time ASC"]).iloc[0]
    assert run["metrics.rows"] == 120


def test_a_scoring_set_without_the_models_columns_writes_nothing(settings, platform, champion, spark, ctx):
    put_scoring_set(platform, settings, scoring_table(n=20, drop=("visits",)))
    source = newest_feature_export(ctx, "scoring")
    with pytest.raises(DataCheckError, match=r"missing: \['visits'\]"):
        spark_scoring.score_export(champion, source, *_where(settings), spark=spark)
    assert storage.list_exports(*_where(settings)) == []


def test_an_error_raised_in_a_spark_task_comes_back_as_the_same_cmle_error():
    exc = RuntimeError("PythonException: An exception was thrown from the Python worker.\n"
                       "Traceback ...\ncmle.errors.RegistryError: model m version 2 returned score outside 0-100 "
                       "(0 .. 140)\n\tat org.apache.spark...")
    rebuilt = spark_scoring._task_error(exc)
    assert isinstance(rebuilt, RegistryError) and str(rebuilt) == "model m version 2 returned score outside 0-100 (0 .. 140)"
    assert spark_scoring._task_error(RuntimeError("java.lang.OutOfMemoryError")) is None


def test_summaries_of_partitions_merge_to_the_whole():
    rows = pa.Table.from_pandas(make_scores(n=90), preserve_index=False)
    whole, parts = ScoreSummary(), [ScoreSummary(), ScoreSummary(), ScoreSummary()]
    whole.add(rows)
    for i, part in enumerate(parts):
        part.add(rows.slice(i * 30, 30))
    merged = spark_scoring.merge_summaries(parts)
    assert merged.metrics() == pytest.approx(whole.metrics())
    assert list(merged.score_counts) == list(whole.score_counts)


def test_factors_on_spark_equal_the_local_factors(settings, platform, spark, ctx, mlflow_store):
    """Each Spark task explains its rows with the same explainer: the same factors, the same global view."""
    from tests.model import fabricate
    from cmle.scoring.model_ref import ModelRef
    from cmle.stages.score import factor_job

    name = settings.cloud.model_name
    version = fabricate.register_version(name, fabricate.training_frame(1500), alias="champion")
    mv = mlflow.MlflowClient().get_model_version(name, version)
    ref = ModelRef(name=name, version=version, requested="champion", run_id=mv.run_id)
    put_scoring_set(platform, settings, fabricate.arrow(fabricate.features(600, seed=4)))
    source = newest_feature_export(ctx, "scoring")
    model = model_ref.load(ref)
    local_job, spark_job = (factor_job(model, ref, 2, "fast", 600) for _ in range(2))
    local = batch.score_export(model, ref, source, *_where(settings), batch_rows=128, explain=local_job)
    on_spark = spark_scoring.score_export(ref, source, *_where(settings), spark=spark, model=model,
                                          explain=spark_job)
    a, b = _rows(local), _rows(on_spark)
    assert a["factors"].map(len).sum() > 600  # most profiles have two positive factors
    fa, fb = ([list(map(dict, r)) for r in x["factors"]] for x in (a, b))
    assert fa == fb
    assert on_spark.factors == 2 and batch.read_run(on_spark.url, on_spark.export_time).factors_asked == 2
    assert spark_job.view.rows == local_job.view.rows == 600
    assert spark_job.view.abs_sum == pytest.approx(local_job.view.abs_sum)
