"""Stage ``score``: score the newest scoring-set export with one registered model version.

Resolves ``model`` (an alias such as ``champion``, a version number or ``latest``) to one
concrete version at start and uses it for every row, reads the scoring set in record
batches of ``batch_rows`` rows, and writes the score files atomically to
``{storage_url}/{import_path}/{scores_folder}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``.
When the newest score run already scored the same data (the same export, or a re-export of
unchanged rows) with the same version, it is reused (nothing is written) unless ``rescore``
is set. With ``[Platform] engine = spark`` the rows are scored with
``mlflow.pyfunc.spark_udf`` (:mod:`cmle.engines.spark_scoring`) into the same score files.
"""

from __future__ import annotations

import mlflow

from cmle import modelspec, naming, tracking
from cmle.context import Context
from cmle.engines import uses_spark
from cmle.exports import newest_feature_export
from cmle.scoring import batch, model_ref
from cmle.scoring.summary import histogram_figure
from cmle.stages import SPEC_PARAM, Param, Stage


def score(ctx: Context, model: str = "champion", batch_rows: int = batch.DEFAULT_BATCH_ROWS,
          rescore: bool = False, spec: str = "") -> dict:
    settings = ctx.settings
    ref = model_ref.resolve(modelspec.model_name(settings, modelspec.spec_for(settings, spec)), model)
    source = newest_feature_export(ctx, "scoring")
    root, path, folder = settings.storage_url, settings.cloud.import_path, naming.scores_folder(ctx.owner)
    run = None
    if not rescore:
        newest = batch.find_score_run(root, path, folder)
        if newest is not None and batch.same_run(newest, ref, source):
            run = batch.read_run(newest.url, newest.export_time)
    if run is None and uses_spark(settings):  # engine = spark: the same files through spark_udf
        from cmle.engines import spark_scoring

        run = spark_scoring.score_export(ref, source, root, path, folder, compression=settings.cloud.compression_type)
    elif run is None:
        run = batch.score_export(model_ref.load(ref), ref, source, root, path, folder, batch_rows=batch_rows,
                                 compression=settings.cloud.compression_type)
    _log_summary(run, ref)
    return {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_uri": ref.uri,
        "scores_url": run.url,
        "export_time": run.export_time,
        "rows": run.rows,
        "scoring_export": source.url,
        "reused": run.reused,
    }


def _log_summary(run: batch.ScoreRun, ref: model_ref.ModelRef) -> None:
    mlflow.set_tags({"cmle.model_name": ref.name, "cmle.model_version": ref.version,
                     "cmle.scores_export_time": run.export_time})
    tracking.log_params({"model_version": ref.version})
    mlflow.log_metrics(run.summary.metrics())
    tracking.log_table(run.summary.buckets_frame(), "scores/buckets.csv")
    tracking.log_figure(histogram_figure(run.summary, f"{run.rows:,} profiles scored by {ref.name} "
                                                      f"v{ref.version}"), "scores/score_histogram.png")


STAGE = Stage(
    name="score",
    func=score,
    params=(
        Param("model", str, "champion",
              "alias (champion, challenger), version number or 'latest' of the registered model; "
              "resolved to one version at start"),
        Param("batch_rows", int, batch.DEFAULT_BATCH_ROWS, "rows per record batch: bounds memory", min=1),
        Param("rescore", bool, False,
              "score again even when the newest score run scored the same data with the same model version"),
        SPEC_PARAM,
    ),
    help="Score the newest scoring-set export with one registered model version into Parquet score files "
         "under the import path (atomic, bounded memory).",
)
