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

import logging
import time

import mlflow

from cmle import ingestion, modelspec, naming, storage, tracking
from cmle.context import Context
from cmle.engines import uses_spark
from cmle.errors import DataCheckError
from cmle.exports import newest_feature_export
from cmle.registry import Registry
from cmle.scoring import alignment, batch, model_ref
from cmle.scoring.summary import histogram_figure
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)


def factor_job(loaded, ref: model_ref.ModelRef, k: int, method: str, rows: int) -> batch.FactorJob | None:
    """The explainer ``score`` runs next to the model (None when ``k`` is 0)."""
    if k <= 0:
        return None
    from cmle.explain.factors import SAMPLE_ROWS, GlobalView, for_version, is_explainable

    if not is_explainable(loaded):
        log.warning("score: %s is not a cmle propensity model (no fitted pipeline to explain): scoring without "
                    "influential factors", ref.uri)
        mlflow.set_tag("cmle.factors", "none: the model is not a cmle propensity model")
        return None
    explainer = for_version(loaded, ref, method)
    explainer.check()  # a model it cannot explain fails here, before anything is scored
    view = GlobalView(features=tuple(explainer.spec.columns), sample_rate=min(1.0, 2 * SAMPLE_ROWS / max(rows, 1)))
    return batch.FactorJob(explainer=explainer, k=k, view=view)


def check_windows(ctx: Context, ref: model_ref.ModelRef) -> None:
    """Refuse a scoring set whose look-back is not the model's (:mod:`cmle.scoring.alignment`)."""
    mine = alignment.model_lookback(Registry.current().version(ref.name, ref.version).tags)
    ds = ctx.platform.find_dataset(naming.scoring_set(ctx.owner))
    theirs = alignment.scoring_set_lookback(ingestion.dataset_version(ctx.platform, ds.id)) if ds else None
    if alignment.mismatch(mine, theirs):
        raise DataCheckError("score: " + alignment.advice(ref.name, ref.version, mine, theirs))


def score(ctx: Context, model: str = "champion", batch_rows: int = batch.DEFAULT_BATCH_ROWS,
          rescore: bool = False, factors: int = 3, factors_method: str = "fast", spec: str = "") -> dict:
    settings = ctx.settings
    ref = model_ref.resolve(modelspec.model_name(settings, modelspec.spec_for(settings, spec)), model)
    source = newest_feature_export(ctx, "scoring")
    check_windows(ctx, ref)
    root, path, folder = settings.storage_url, settings.cloud.import_path, naming.scores_folder(ctx.owner)
    run, job = None, None
    if not rescore:
        newest = batch.find_score_run(root, path, folder)
        if newest is not None and batch.same_run(newest, ref, source, factors):
            run = batch.read_run(newest.url, newest.export_time)
    started = time.perf_counter()
    if run is None:
        loaded = model_ref.load(ref)
        job = factor_job(loaded, ref, factors, factors_method, storage.count_rows(source.url))
    if run is None and uses_spark(settings):  # engine = spark: the same files through spark_udf
        from cmle.engines import spark_scoring

        run = spark_scoring.score_export(ref, source, root, path, folder, compression=settings.cloud.compression_type,
                                         model=loaded, explain=job, factors_asked=factors)
    elif run is None:
        run = batch.score_export(loaded, ref, source, root, path, folder, batch_rows=batch_rows,
                                 compression=settings.cloud.compression_type, explain=job, factors_asked=factors)
    seconds = time.perf_counter() - started
    _log_summary(run, ref)
    if job is not None:
        _log_factors(job, ref, run.rows, seconds)
    return {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_uri": ref.uri,
        "scores_url": run.url,
        "export_time": run.export_time,
        "rows": run.rows,
        "scoring_export": source.url,
        "reused": run.reused,
        "factors": run.factors,
    }


def _log_factors(job: batch.FactorJob, ref: model_ref.ModelRef, rows: int, seconds: float) -> None:
    """The global view of the factors: mean |contribution| per feature, a beeswarm plot, the time spent."""
    import matplotlib.pyplot as plt

    descriptions = job.explainer.descriptions
    table = job.view.table(descriptions)
    tracking.log_table(table, "factors/global_importance.csv")
    fig = job.view.beeswarm(descriptions, f"Contributions to the margin of {ref.name} v{ref.version} "
                                          f"({job.explainer.family}, {job.explainer.method})")
    try:
        tracking.log_figure(fig, "factors/beeswarm.png")
    finally:
        plt.close(fig)
    mlflow.log_metrics({"explain_seconds": job.seconds, "score_seconds": max(seconds - job.seconds, 0.0),
                        "factors_per_profile": float(job.k)})
    mlflow.set_tags({"cmle.factors_method": f"{job.explainer.family}:{job.explainer.method}",
                     "cmle.top_factor": str(table["feature"].iloc[0]) if len(table) else ""})


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
        Param("factors", int, 3, "influential factors per profile (the features that pushed its propensity up "
                                 "most, with value and contribution); 0 = none", min=0),
        Param("factors_method", str, "fast", "fast: exact for logistic regression, shap's path attribution for "
              "trees (about the cost of scoring); exact: Tree SHAP (much slower for tree models)",
              choices=("fast", "exact")),
        SPEC_PARAM,
    ),
    help="Score the newest scoring-set export with one registered model version into Parquet score files "
         "under the import path (atomic, bounded memory).",
)
