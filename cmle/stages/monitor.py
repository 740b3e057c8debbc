"""Stage ``monitor``: drift against the training reference, realised outcomes of earlier
score runs, and whether retraining is due.

1. **Drift** of the newest score run (or the one at ``export_time``): the scoring set it
   scored (features) and its propensities (the score), counted chunk by chunk into the bins
   of the training reference stored with the model version (:mod:`cmle.monitoring.reference`),
   compared with the population stability index. Metrics ``psi_score``,
   ``psi_max_feature``; ``monitor/drift.csv``; ``monitor/drift.png``.
2. **Realised outcomes** of every score run whose outcome window (T, T + W] has passed
   (the events reach T + W): the scored profiles joined with what they did in the window,
   by the model spec's label definition, in the platform's SQL (Query Service on AEP,
   DuckDB locally, Spark with ``engine = spark``); expected against actual per bucket and
   decile with 95 % intervals, ``realised_auc``, ``realised_ece``;
   ``monitor/expected_vs_actual.csv``, ``monitor/expected_vs_actual.png``; runs not ripe
   yet are listed as such (``monitor/score_runs.csv``).
3. **Retraining trigger** (:mod:`cmle.monitoring.trigger`, ``[Monitor]`` of the config)
   over the monitoring history kept in MLflow: tag ``cmle.retrain_due``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import mlflow
import numpy as np
import pandas as pd

from cmle import ingestion, modelspec, naming, storage, tracking
from cmle.columns import ID_COLUMN
from cmle.context import Context
from cmle.engines import uses_spark
from cmle.errors import CmleError, NotFoundError
from cmle.exports import export_root
from cmle.features import render
from cmle.model.preprocess import FeatureSpec
from cmle.modelspec import data as specdata
from cmle.monitoring import history, outcomes, plots, psi, trigger
from cmle.monitoring import reference as drift_reference
from cmle.registry import Registry
from cmle.scoring import batch
from cmle.stages import SPEC_PARAM, Param, Stage
from cmle.stages.train import OUTCOME_DAYS_TAG, REFERENCE_TAG

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
RIPE, NOT_RIPE, NOT_INGESTED, UNKNOWN = "ripe", "not_ripe", "not_ingested", "unknown_snapshot"


def _utc(text: str) -> dt.datetime | None:
    if not text:
        return None
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


# --- drift -------------------------------------------------------------------------------
def scoring_export_url(ctx: Context, run: batch.ScoreRun) -> str:
    """The export folder of the scoring set a score run read."""
    folder = storage.dataset_folder(export_root(ctx), ctx.settings.cloud.export_path, run.source_dataset)
    return storage.join(folder, f"exportTime={run.source_export_time}")


def measure_drift(ctx: Context, run: batch.ScoreRun, ref: drift_reference.DriftReference,
                  descriptions: dict[str, str], chunk_rows: int = CHUNK_ROWS) -> tuple[pd.DataFrame, list[str]]:
    """PSI of every feature (from the run's scoring export) and of the score; notes on what
    could not be measured. Bounded memory: both are read ``chunk_rows`` rows at a time."""
    m = ctx.settings.monitor
    counts = drift_reference.Counts(ref)
    notes: list[str] = []
    url = scoring_export_url(ctx, run)
    present: list[str] = []
    try:
        available = set(batch.export_schema(url).names)
        present = [f.name for f in ref.features if f.name in available]
    except CmleError as exc:
        notes.append(f"feature drift not measured: the scoring export {url} is not readable ({exc})")
    except (FileNotFoundError, OSError):
        notes.append(f"feature drift not measured: the scoring export {url} no longer exists")
    if present:
        spec = FeatureSpec(numeric=tuple(f.name for f in ref.features if f.name in present and f.kind == "numeric"),
                           categorical=tuple(f.name for f in ref.features
                                             if f.name in present and f.kind == "categorical"))
        for rb in storage.iter_export_batches(url, batch_rows=chunk_rows, columns=present):
            counts.add_features(spec.prepare(rb.to_pandas()))
        missing = [f.name for f in ref.features if f.name not in present]
        if missing:
            notes.append(f"the scoring export lacks {len(missing)} feature(s) of the reference: {missing[:10]}")
    for rb in storage.iter_export_batches(run.url, batch_rows=chunk_rows, columns=["propensity"]):
        counts.add_scores(rb.column(0).to_numpy(zero_copy_only=False))
    rows = []
    for binned, actual in ((ref.score, counts.score), *((f, counts.features.get(f.name)) for f in ref.features)):
        if actual is None:
            continue
        value = psi.psi(binned.shares, actual)
        total = max(int(np.sum(actual)), 1)
        rows.append({"variable": binned.name, "kind": "score" if binned is ref.score else binned.kind,
                     "description": "propensity of the model" if binned is ref.score else
                     descriptions.get(binned.name, ""),
                     "psi": value, "level": psi.level(value, m.psi_warn, m.psi_alert),
                     "reference_missing_share": binned.shares[-1] if binned.kind == "numeric" else float("nan"),
                     "actual_missing_share": actual[-1] / total if binned.kind == "numeric" else float("nan"),
                     "rows": int(np.sum(actual))})
    return pd.DataFrame(rows), notes


# --- realised outcomes ---------------------------------------------------------------------
def _scores_select(ctx: Context, run: batch.ScoreRun) -> tuple[str, str]:
    """(a SELECT of the run's scored profiles from the scores dataset, a status): the score
    rows ``ingest`` put on the platform, where Query Service can join them with the events."""
    platform = ctx.platform
    ds = platform.find_dataset(naming.scores_dataset(ctx.owner))
    if ds is None or ingestion.find_batch(platform, ds.id, f"scores:{run.export_time}") is None:
        return "", NOT_INGESTED
    root = f"`_{platform.tenant_id}`"
    when = dt.datetime.strptime(run.export_time, storage.EXPORT_TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
    version = run.model_version.replace("'", "''")
    cols = ", ".join(f"{root}.`{c}` AS {c}" for c in (ID_COLUMN, "propensity", "bucket", "decile"))
    return (f"SELECT {cols} FROM {render.quote_table(ds.table)} WHERE {root}.`score_date` = {render.ts_literal(when)} "
            f"AND {root}.`model_version` = '{version}'"), RIPE


SPARK_SCORES_VIEW = "cmle_monitor_scores"


def realised_cells(ctx: Context, spec, events, run: batch.ScoreRun, t: dt.datetime, days: int,
                   timeout_s: float) -> tuple[pd.DataFrame | None, str]:
    """The cells of a ripe run (:mod:`cmle.monitoring.outcomes`) and a status."""
    tenant = ctx.platform.tenant_id
    if uses_spark(ctx.settings) and ctx.settings.platform.backend == "local":
        from cmle.engines import spark_features

        scores = f"SELECT {ID_COLUMN}, propensity, bucket, decile FROM {SPARK_SCORES_VIEW}"
        sql = render.outcome_sql(events.table, tenant, t, days, scores, spec=spec)
        return spark_features.query(ctx, sql, {"events": events.table}, {SPARK_SCORES_VIEW: run.url},
                                    sources=(events,)), RIPE
    scores, status = _scores_select(ctx, run)
    if status != RIPE:
        return None, status
    sql = render.outcome_sql(events.table, tenant, t, days, scores, spec=spec)
    return ctx.platform.query(sql, timeout_s=timeout_s, max_rows=1_000_000), RIPE


def evaluate_runs(ctx: Context, spec, registry: Registry, timeout_s: float) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Every score run with its status; the expected-vs-actual rows of the ripe ones; the
    summary of each ripe run by export time."""
    settings = ctx.settings
    root, path, folder = settings.storage_url, settings.cloud.import_path, naming.scores_folder(ctx.owner)
    events, _ = specdata.datasets(ctx.platform, spec, ctx.owner)
    rng = specdata.data_range(ctx.platform, spec, events, ctx.platform.tenant_id, timeout_s)
    windows: dict[tuple[str, str], int] = {}
    statuses, tables, summaries, realised = [], [], {}, []
    for folder_ in storage.list_exports(root, path, folder):
        run = batch.read_run(folder_.url, folder_.export_time, summarize=False)
        key = (run.model_name, run.model_version)
        if key not in windows:
            try:
                tag = registry.version(*key).tags.get(OUTCOME_DAYS_TAG)
            except CmleError:
                tag = None
            windows[key] = int(tag) if tag else spec.goal.window_days
        days = windows[key]
        t = _utc(run.snapshot) or _utc(batch.export_snapshot(scoring_export_url(ctx, run)))
        row = {"score_export_time": run.export_time, "model_name": run.model_name, "model_version": run.model_version,
               "profiles": run.rows, "snapshot": t.isoformat() if t else "", "outcome_days": days}
        if t is None:
            statuses.append(row | {"window_end": "", "status": UNKNOWN,
                                   "detail": "the score run does not record its snapshot and its scoring export "
                                             "is gone: its outcome window is unknown"})
            continue
        end = t + dt.timedelta(days=days)
        row["window_end"] = end.isoformat()
        if end > rng.end:
            statuses.append(row | {"status": NOT_RIPE,
                                   "detail": f"the outcome window ends {end:%Y-%m-%d %H:%M} UTC and the events reach "
                                             f"{rng.end:%Y-%m-%d}: monitor again once the data cover it"})
            continue
        cells, status = realised_cells(ctx, spec, events, run, t, days, timeout_s)
        if cells is None:
            statuses.append(row | {"status": status,
                                   "detail": f"the score run is not in the scores dataset: run `cmle ingest "
                                             f"--export_time {run.export_time}`, then monitor again"})
            continue
        table = outcomes.expected_vs_actual(cells)
        summary = outcomes.summary(cells)
        realised.append(outcomes.clean_cells(cells).assign(
            score_export_time=run.export_time, model_version=run.model_version, window_start=t.isoformat(),
            window_end=end.isoformat()))
        tables.append(table.assign(score_export_time=run.export_time, model_version=run.model_version,
                                   window_start=t.isoformat(), window_end=end.isoformat()))
        summaries[run.export_time] = summary | {"model_version": run.model_version, "window_start": t.isoformat(),
                                                "window_end": end.isoformat()}
        statuses.append(row | {"status": RIPE, "detail": f"realised AUC {summary['realised_auc']:.4f}, "
                                                         f"ECE {summary['realised_ece']:.4f}"})
    front = ["score_export_time", "model_version", "window_start", "window_end"]
    ev = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=front)
    ev = ev[front + [c for c in ev.columns if c not in front]]
    if realised:  # the realised cells, per score run: the promotion gate's realised evidence (history.py)
        tracking.log_table(pd.concat(realised, ignore_index=True), history.REALISED_CELLS_ARTIFACT)
    return pd.DataFrame(statuses), ev, summaries


def _evidence_tags(summaries: dict) -> dict[str, str]:
    """Per model version, its newest realised outcome (what the promotion gate can read)."""
    newest: dict[str, tuple[str, dict]] = {}
    for export_time, s in sorted(summaries.items()):
        newest[s["model_version"]] = (export_time, s)
    out = {}
    for version, (export_time, s) in newest.items():
        data = {"realised_auc": s["realised_auc"], "realised_ece": s["realised_ece"],
                "profiles": int(s["realised_profiles"]), "positives": int(s["realised_positives"]),
                "expected_rate": s["realised_expected_rate"], "actual_rate": s["realised_actual_rate"],
                "score_export_time": export_time, "window_start": s["window_start"], "window_end": s["window_end"]}
        out[f"{history.REALISED_TAG}{version}"] = json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v)
                                                                  else v) for k, v in data.items()})
    return out


# --- the stage -----------------------------------------------------------------------------
def monitor(ctx: Context, export_time: str = "", timeout_s: float = 600.0, spec: str = "") -> dict:
    settings = ctx.settings
    model_spec = modelspec.spec_for(settings, spec)
    root, path, folder = settings.storage_url, settings.cloud.import_path, naming.scores_folder(ctx.owner)
    run = batch.find_score_run(root, path, folder, export_time.strip())
    if run is None:
        which = f"at exportTime={export_time.strip()}" if export_time.strip() else "yet"
        raise NotFoundError(f"monitor: no score run {which} under {storage.dataset_folder(root, path, folder)}; "
                            "run `score` first (monitor compares a score run with the training reference and, "
                            "once its outcome window has passed, with what happened)")
    started = time.perf_counter()
    registry = Registry.current()
    mv = registry.version(run.model_name, run.model_version)
    tags = mv.tags or {}
    mlflow.set_tags({history.MODEL_TAG: run.model_name, "cmle.model_version": run.model_version,
                     history.WINDOW_TAG: run.export_time})
    out: dict = {"model_name": run.model_name, "model_version": run.model_version, "score_export_time": run.export_time}
    metrics: dict[str, float] = {}

    # 1. drift
    ref_uri = tags.get(REFERENCE_TAG)
    if not ref_uri:
        note = (f"model {run.model_name} v{run.model_version} has no stored drift reference (trained before cmle "
                "kept one): drift is not measured. Train a new version (`cmle train --retrain true`) to store one")
        log.warning("monitor: %s", note)
        mlflow.set_tag("cmle.drift", note[:250])
        out["drift_note"] = note
    else:
        ref = drift_reference.DriftReference.from_dict(mlflow.artifacts.load_dict(ref_uri))
        drift, notes = measure_drift(ctx, run, ref, tracking.feature_descriptions(mv.run_id))
        for note in notes:
            log.warning("monitor: %s", note)
        tracking.log_table(drift, "monitor/drift.csv")
        m = settings.monitor
        tracking.log_figure(plots.drift_figure(drift, m.psi_warn, m.psi_alert), "monitor/drift.png")
        features = drift[drift["kind"] != "score"]
        score_psi = drift.loc[drift["kind"] == "score", "psi"]
        metrics["psi_score"] = float(score_psi.iloc[0]) if len(score_psi) else float("nan")
        if len(features) and features["psi"].notna().any():
            top = features.loc[features["psi"].idxmax()]
            metrics["psi_max_feature"] = float(top["psi"])
            out["psi_max_feature_name"] = str(top["variable"])
            mlflow.set_tag("cmle.psi_max_feature_name", str(top["variable"]))
        metrics["features_warn"] = float((features["level"] == psi.WARN).sum())
        metrics["features_alert"] = float((features["level"] == psi.ALERT).sum())
        out["drift_level"] = psi.level(max(metrics.get("psi_max_feature", 0.0), metrics["psi_score"]),
                                       m.psi_warn, m.psi_alert)
        out["drift_notes"] = notes
    drift_seconds = time.perf_counter() - started

    # 2. realised outcomes
    statuses, ev, summaries = evaluate_runs(ctx, model_spec, registry, timeout_s)
    tracking.log_table(statuses, "monitor/score_runs.csv")
    out["ripe_runs"] = int((statuses["status"] == RIPE).sum()) if len(statuses) else 0
    out["pending_runs"] = int((statuses["status"] != RIPE).sum()) if len(statuses) else 0
    if len(statuses):
        for _, s in statuses[statuses["status"] != RIPE].iterrows():
            log.info("monitor: score run %s: %s (%s)", s["score_export_time"], s["status"], s["detail"])
    if summaries:
        tracking.log_table(ev, "monitor/expected_vs_actual.csv")
        newest = max(summaries)
        latest = summaries[newest]
        metrics |= {k: float(v) for k, v in latest.items() if k.startswith("realised_")}
        out["realised"] = {"score_export_time": newest, **{k: v for k, v in latest.items()}}
        table = ev[ev["score_export_time"] == newest]
        tracking.log_figure(plots.expected_actual_figure(
            table, f"Score run {newest} (v{latest['model_version']}): expected vs actual"),
            "monitor/expected_vs_actual.png")
        mlflow.set_tags(_evidence_tags(summaries))
    metrics["monitor_seconds"] = time.perf_counter() - started
    metrics["drift_seconds"] = drift_seconds

    # 3. retraining trigger
    m = settings.monitor
    rule = trigger.TriggerRule(m.retrain_metric, m.retrain_threshold, m.retrain_windows, m.retrain_violations)
    past = history.metric_history(run.model_name, rule.metric, exclude_window=run.export_time)
    verdict = trigger.evaluate(rule, [*past, metrics.get(rule.metric)])
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)} | {"retrain_due": float(verdict.due)})
    mlflow.set_tags({history.DUE_TAG: "true" if verdict.due else "false", "cmle.retrain_reason": verdict.reason[:250]})
    log.info("monitor: retraining %s: %s", "DUE" if verdict.due else "not due", verdict.reason)
    out |= {k: (round(v, 6) if np.isfinite(v) else None) for k, v in metrics.items()}
    out |= {"retrain_due": verdict.due, "retrain_reason": verdict.reason}
    return out


STAGE = Stage(
    name="monitor",
    func=monitor,
    params=(
        Param("export_time", str, "",
              "exportTime (YYYYMMDDHHMMSS) of the score run whose drift to measure; empty = the newest"),
        Param("timeout_s", float, 600.0, "timeout of each query, in seconds", min=1),
        SPEC_PARAM,
    ),
    help="Drift of the newest score run against the training reference (PSI per feature and of the score), "
         "expected vs actual for every score run whose outcome window has passed, and whether retraining is due.",
)
