"""Stage ``train``: tune, fit, calibrate, evaluate, log and register the propensity model.

Reads the newest training-set export; splits it (stratified, seeded) into train /
validation / holdout; searches the model families with TPE, one nested run per trial,
selecting on validation only; refits the chosen point on train and calibrates it on
validation; evaluates once on the holdout (metrics, lift/gains, calibration, figures);
compares with the synthetic oracle and (``framing = both``, the default, when the cmle set
was exported) with the same model trained on the notebooks' ``cmle`` framing; logs the
pyfunc model from code and registers it with alias ``challenger``. The holdout rows are
stored with the run (``holdout/holdout.parquet``) so ``promote`` can score challenger and
champion on the same data.

The holdout is stable across retrains: the profiles whose hash (with a salt kept on the
registered model) falls below ``holdout_fraction`` (:mod:`cmle.model.holdout`), so the
promotion gate can compare versions on profiles none of them trained on. Before anything is
fitted the labels are checked, and before registering the model is checked for leakage
(:mod:`cmle.model.train_checks`); a flagged version is registered with tag ``cmle.leakage``
naming what was found, and ``promote`` refuses it unless told otherwise.

Idempotent by content: a version trained from the same rows with the same parameters (its
``cmle.fingerprint`` tag, a hash of the training set's content, not of the export's time)
is reused rather than trained again, unless ``retrain`` is set; re-exporting unchanged data
trains nothing new. The version is created with all its tags in one call, under a lock, and
the fingerprint is looked up again under that lock, so neither a kill during registration
nor two runs at once leave a second version of the same training.

With ``distiller = logistic_reg`` (AEP only), Data Distiller's own model is trained on the
same training rows through Query Service and evaluated on the same holdout, and its metrics
are logged in the same run, next to cmle's (:mod:`cmle.distiller.challenger`); it is left
out of the training's fingerprint, so asking for the comparison never retrains cmle's model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from cmle import __version__, failpoints, ingestion, locks, modelspec, storage, tracking
from cmle.columns import ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN
from cmle.context import Context
from cmle.distiller import challenger
from cmle.errors import CmleError, NotFoundError, ParameterError
from cmle.exports import feature_set_name, newest_feature_export
from cmle.model import artifact, budget, evaluation, fit, metrics, scoring, space, train_checks, tuning
from cmle.model.holdout import describe as describe_split
from cmle.model.preprocess import FeatureSpec, nonfinite_counts
from cmle.monitoring import reference as drift_reference
from cmle.platform.base import BATCH_SUCCESS
from cmle.registry import CHALLENGER, CHAMPION, TAG_PREFIX, Registry
from cmle.scoring import alignment
from cmle.stages import SPEC_PARAM, Param, Stage
from cmle.stages.featurize import FRAMING_CHOICES, SET_VERSION_TAG
from cmle.synthetic import oracle as synthetic_oracle

log = logging.getLogger(__name__)

HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
FINGERPRINT_TAG = f"{TAG_PREFIX}fingerprint"
HOLDOUT_TAG = f"{TAG_PREFIX}holdout_uri"
SPLIT_TAG = f"{TAG_PREFIX}split"
REFERENCE_TAG = f"{TAG_PREFIX}reference_uri"  # the drift reference monitor compares against
OUTCOME_DAYS_TAG = f"{TAG_PREFIX}outcome_days"  # the label's outcome window, for realised outcomes
MIN_TUNE_ROWS = 50
METRIC_TAGS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_decile_1")


@dataclass
class Source:
    """The training set as read: its export folder, dataset id and rows."""

    folder: storage.ExportFolder
    dataset_id: str
    frame: pd.DataFrame


def read_training_set(ctx: Context, framing: str) -> Source:
    """The newest export of the ``framing`` training set as a DataFrame."""
    folder = newest_feature_export(ctx, "training", framing)
    dataset = ctx.platform.find_dataset(feature_set_name(ctx, "training", framing))
    frame = storage.read_export(folder.url).to_pandas()
    return Source(folder=folder, dataset_id=dataset.id if dataset else "", frame=frame)


def content_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of a table's content: its columns, their types and its rows in any order
    (a re-export of the same rows, even in another order or file layout, gives the same)."""
    cols = sorted(frame.columns)
    rows = np.sort(pd.util.hash_pandas_object(frame[cols], index=False).to_numpy())
    digest = hashlib.sha256(json.dumps([(c, str(frame[c].dtype)) for c in cols]).encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()[:20]


def feature_manifest(ctx: Context, source: Source, spec: modelspec.ModelSpec) -> dict | None:
    """What the featurize run that built this training set logged about its features (names,
    kinds, descriptions, goal), or, without one, the spec's own plan when it has exactly the
    set's columns; None when neither is known."""
    from cmle.columns import feature_columns
    from cmle.features.plan import make_plan

    columns = feature_columns(source.frame.columns)
    manifest = _logged_manifest(ctx, source)
    if manifest is None:
        try:
            manifest = make_plan(spec, ctx.platform.tenant_id).manifest()
        except CmleError:
            return None
    if [f["name"] for f in manifest.get("features", [])] != columns:
        log.warning("train: the feature list of spec %s does not match the training set's columns; typing the "
                    "features from the data instead", spec.name)
        return None
    return manifest


def _logged_manifest(ctx: Context, source: Source) -> dict | None:
    """The manifest artifact of the featurize run that wrote this version of the training set."""
    if not source.dataset_id or mlflow.active_run() is None:
        return None
    try:
        version = ingestion.dataset_version(ctx.platform, source.dataset_id)
    except CmleError as exc:  # lineage is best effort; the spec's plan is the fallback
        log.debug("training set version unknown: %s", exc)
        return None
    return tracking.featurize_manifest(SET_VERSION_TAG, version)


def fingerprint(source: Source, params: dict[str, Any]) -> str:
    """Identity of a training: the training set's content, parameters (not ``retrain``) and
    package version."""
    data = {"content": content_fingerprint(source.frame), "cmle": __version__,
            "params": {k: v for k, v in sorted(params.items()) if k != "retrain"}}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cpu_threads(load: float | None = None) -> int:
    """Threads for OpenMP / BLAS / joblib while training.

    ``OMP_NUM_THREADS`` (or the core count) is the cap; on a machine already busy it drops
    to what is free, down to 1: histogram GBDT with 2 OpenMP threads on 2 cores shared with
    other work ran 6-8x slower than with 1 thread here (threads wait for each other at every
    barrier), while a free machine gains from every core.
    """
    cores = os.cpu_count() or 1
    try:
        cap = max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        cap = cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cap, cores - int(load)))


def _xy(spec: FeatureSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return spec.prepare(frame), fit.labels(frame)


@dataclass
class Trained:
    """What one training produced, up to (not including) registration."""

    spec: FeatureSpec
    parts: fit.Split
    search: tuning.TuningResult
    estimator: object
    reference: scoring.Reference
    holdout: evaluation.Evaluation
    oracle: dict
    plan: budget.TrainingPlan | None = None
    seconds: float = 0.0
    baselines: dict = field(default_factory=dict)
    drift: drift_reference.DriftReference | None = None


def train(ctx: Context, max_evals: int = budget.AUTO, families: str = space.DEFAULT_FAMILIES, seed: int = 42,
          metric: str = "roc_auc", holdout_fraction: float = 0.2, validation_fraction: float = 0.2,
          framing: str = "both", calibration: str = "sigmoid", max_tune_rows: int = budget.AUTO,
          retrain: str = "false", spec: str = "", distiller: str = "off",
          min_label_rate: float = train_checks.DEFAULT_MIN_LABEL_RATE,
          max_label_rate: float = train_checks.DEFAULT_MAX_LABEL_RATE,
          leakage_auc: float = train_checks.DEFAULT_LEAKAGE_AUC,
          max_holdout_auc: float = train_checks.DEFAULT_MAX_HOLDOUT_AUC) -> dict:
    """The stage: train (or reuse) and register a challenger; returns its version and metrics.

    ``retrain``: ``false`` reuses a version trained the same way; ``true`` trains anyway;
    ``auto`` trains only when the monitoring history says retraining is due or there is no
    champion yet (otherwise it returns the champion with ``skipped``)."""
    retrain = {True: "true", False: "false"}.get(retrain, retrain)  # type: ignore[arg-type]
    settings = ctx.settings
    challenger.require_aep(ctx.platform, distiller)  # before any work: the option needs AEP
    model_spec = modelspec.spec_for(settings, spec)
    params = dict(max_evals=max_evals, families=families, seed=seed, metric=metric,
                  holdout_fraction=holdout_fraction, validation_fraction=validation_fraction, framing=framing,
                  calibration=calibration, max_tune_rows=max_tune_rows, spec=model_spec.fingerprint,
                  min_label_rate=min_label_rate, max_label_rate=max_label_rate, leakage_auc=leakage_auc,
                  max_holdout_auc=max_holdout_auc)
    chosen = space.parse_families(families)
    fit.check_fractions(holdout_fraction, validation_fraction)
    train_checks.check_parameters(min_label_rate, max_label_rate, leakage_auc, max_holdout_auc)
    if 0 < max_tune_rows < MIN_TUNE_ROWS:
        raise ParameterError(f"train: max_tune_rows = {max_tune_rows} is too few rows to tune on (a stratified "
                             f"sample needs both classes); use 0 (follow the data size) or at least {MIN_TUNE_ROWS}")
    # "both": the model is trained on the point-in-time set and compared with the same model
    # trained on the notebooks' framing; "pit" / "cmle": that set alone.
    trained_on = "cmle" if framing == "cmle" else "pit"
    registry = Registry.current()
    name = modelspec.model_name(settings, model_spec)
    if retrain == "auto":
        skip = _auto_skip(registry, name)
        if skip is not None:
            return skip
    source = read_training_set(ctx, trained_on)
    fp = fingerprint(source, params)
    _log_lineage(source, trained_on, fp)
    manifest = feature_manifest(ctx, source, model_spec) if trained_on == "pit" else None
    mlflow.set_tags({f"{TAG_PREFIX}spec": model_spec.name, f"{TAG_PREFIX}goal": model_spec.goal.phrase()[:250]})
    if manifest is not None:
        tracking.log_dict(manifest, tracking.FEATURE_MANIFEST_ARTIFACT)
    labels = train_checks.check_labels(source.frame, _rows_written(ctx, source), min_label_rate, max_label_rate,
                                       where=f"the {trained_on} training set ({source.folder.url})")
    tracking.log_dict(labels.as_dict(), "checks/labels.json")
    if retrain != "true":
        existing = registry.find_by_tag(name, FINGERPRINT_TAG, fp)
        if existing is not None:
            return _reuse(registry, name, existing) | _distiller(ctx, distiller, source, trained_on, model_spec,
                                                                  existing=existing)

    with locks.registry_lock(settings, name):
        salt = registry.split_salt(name)
    threads = cpu_threads()
    mlflow.log_param("threads", threads)
    with fit.limited_threads(threads):
        trained = fit_and_evaluate(settings, source.frame, chosen, max_evals=max_evals, seed=seed, metric=metric,
                                   holdout_fraction=holdout_fraction, validation_fraction=validation_fraction,
                                   calibration=calibration, max_tune_rows=max_tune_rows, threads=threads,
                                   manifest=manifest, oracle=model_spec.notebooks_goal, salt=salt)
        leakage = _check_leakage(trained, seed, leakage_auc, max_holdout_auc)
        comparison = {}
        if framing == "both" and model_spec.notebooks_goal:
            comparison = _compare_cmle(ctx, trained, seed, holdout_fraction, validation_fraction, calibration,
                                       threads)
    info = {"family": trained.search.best.params["family"], "params": space.loggable(trained.search.best.params),
            "metric": metric, f"validation_{metric}": trained.search.best.score, "calibration": calibration,
            "seed": seed, "framing": trained_on, "export_url": source.folder.url,
            "export_time": source.folder.export_time, "dataset_id": source.dataset_id,
            "training_run_id": mlflow.active_run().info.run_id, "spec": model_spec.name,
            "spec_fingerprint": model_spec.fingerprint, "goal": model_spec.goal.phrase(),
            "feature_manifest": manifest, "split": describe_split(salt, holdout_fraction).to_json(),
            "leakage": leakage.tag_value() if leakage.flagged else ""}
    with locks.registry_lock(settings, name):
        existing = None if retrain == "true" else registry.find_by_tag(name, FINGERPRINT_TAG, fp)
        if existing is not None:  # another run registered the same training meanwhile
            return _reuse(registry, name, existing)
        version = register(registry, name, trained, info, fp)
    holdout = trained.holdout.metrics
    log.info("train: %s v%s (%s) holdout ROC-AUC %.4f, ECE %.4f in %.1f s", name, version, info["family"],
             holdout["roc_auc"], holdout["ece"], trained.seconds)
    dd = _distiller(ctx, distiller, source, trained_on, model_spec, trained=trained)
    return dd | {"model_name": name, "model_version": version, "model_uri": f"models:/{name}/{version}",
            "alias": CHALLENGER, "training_run_id": info["training_run_id"], "family": info["family"],
            "holdout_roc_auc": holdout["roc_auc"], "holdout_ece": holdout["ece"],
            "auc_ratio": (trained.oracle.get("metrics") or {}).get("auc_ratio"),
            "train_seconds": round(trained.seconds, 2), "trials": len(trained.search.trials),
            "training_export": source.folder.url, "reused": False, "spec_name": model_spec.name,
            "leakage": leakage.summary() if leakage.flagged else "",
            **{k: trained.baselines[k] for k in ("baseline_roc_auc", "auc_margin", "log_loss_skill")
               if k in trained.baselines}, **comparison}


def fit_and_evaluate(settings, frame: pd.DataFrame, families: tuple[str, ...], *, max_evals: int, seed: int,
                     metric: str, holdout_fraction: float, validation_fraction: float, calibration: str,
                     max_tune_rows: int, threads: int, manifest: dict | None = None, oracle: bool = True,
                     salt: str | None = None) -> Trained:
    """Split (the holdout by profile hash with ``salt``), tune, refit and calibrate, then
    evaluate once on the holdout; log it all.

    The features and their kinds come from ``manifest`` (the spec's feature list) when given,
    else from the data's types."""
    started = time.perf_counter()
    parts = fit.split(frame, holdout_fraction, validation_fraction, seed, salt=salt)
    spec = FeatureSpec.from_manifest(manifest) if manifest else FeatureSpec.infer(frame)
    nonfinite = nonfinite_counts(frame[list(spec.numeric)].astype("float64"))
    mlflow.log_metric("nonfinite_values", float(sum(nonfinite.values())))  # treated as missing by prepare()
    mlflow.log_params({"n_features": len(spec.columns), "n_numeric": len(spec.numeric),
                       "n_categorical": len(spec.categorical)})
    mlflow.log_metrics({k: float(v) for k, v in parts.sizes().items()}
                       | {"train_base_rate": float(fit.labels(parts.train).mean())})
    train_xy, valid_xy = _xy(spec, parts.train), _xy(spec, parts.valid)
    # How much tuning, on which rows, and which final fit, follow the data size (budget.py).
    plan = budget.plan_training(len(train_xy[1]), int(train_xy[1].sum()), len(valid_xy[1]), int(valid_xy[1].sum()),
                                max_evals=max_evals, max_tune_rows=max_tune_rows)
    log.info("train: %s", plan.reason)
    tracking.log_params(plan.loggable(), prefix="plan.")
    mlflow.set_tag(f"{TAG_PREFIX}training_plan", plan.reason)
    tune_xy = fit.sample_rows(*train_xy, plan.tune_rows, seed)
    mlflow.log_metric("tune_rows", len(tune_xy[0]) + (len(valid_xy[0]) if plan.cv_folds > 1 else 0))
    result = tuning.tune(tune_xy, valid_xy, spec, families, max_evals=plan.max_evals, seed=seed, metric=metric,
                         n_jobs=threads, cv_folds=plan.cv_folds)
    _log_tuning(result)
    estimator = fit.fit_calibrated(result.best.params, spec, train_xy, valid_xy, seed=seed,
                                   calibration=calibration, n_jobs=threads, cv_folds=plan.cv_folds)
    mlflow.log_metric("fit_seconds", time.perf_counter() - started)

    # The holdout is touched here, once, after every choice has been made.
    holdout_x, holdout_y = _xy(spec, parts.holdout)
    propensity = estimator.predict_proba(holdout_x)[:, 1]
    reference = scoring.Reference.from_propensities(propensity)
    result_eval = evaluation.evaluate(holdout_y, scoring.outputs(propensity, reference))
    baselines = metrics.trivial_baselines(holdout_y, propensity, parts.holdout)
    mlflow.log_metrics({k: float(v) for k, v in baselines.items() if np.isfinite(v)})
    oracle = _oracle_comparison(settings, parts.holdout, holdout_y, propensity) if oracle else {}
    # on the validation rows (with k folds the ensemble has seen them: a drop still ranks inputs)
    importance = fit.feature_importance(estimator, *valid_xy, seed=seed)
    evaluation.log_evaluation(result_eval, importance, oracle=oracle.get("propensity"))
    if oracle.get("metrics"):
        mlflow.log_metrics(oracle["metrics"])
    # What monitor measures drift against: bins and shares of every feature over the whole
    # training set, and of the holdout propensities (no rows).
    drift = drift_reference.build(spec.prepare(frame), spec.categorical, propensity)
    seconds = time.perf_counter() - started
    mlflow.log_metric("train_seconds", seconds)
    return Trained(spec=spec, parts=parts, search=result, estimator=estimator, reference=reference,
                   holdout=result_eval, oracle=oracle, plan=plan, seconds=seconds, baselines=baselines, drift=drift)


def register(registry: Registry, name: str, trained: Trained, info: dict, fp: str) -> str:
    """Log the pyfunc and its holdout, register it, tag it, point ``challenger`` at it."""
    holdout_uri = _log_holdout(trained.parts.holdout, trained.spec)
    reference_uri = _log_reference(trained.drift) if trained.drift is not None else ""
    example = artifact.input_example(trained.spec, trained.parts.holdout)
    model_info = artifact.log_model(trained.estimator, trained.spec, trained.reference, example, info)
    holdout = trained.holdout.metrics
    oracle = trained.oracle.get("metrics") or {}
    tags = {f"{TAG_PREFIX}holdout_{k}": f"{holdout[k]:.6f}" for k in METRIC_TAGS}
    tags |= {f"{TAG_PREFIX}{k}": f"{v:.6f}" for k, v in oracle.items() if np.isfinite(v)}
    tags |= {SPLIT_TAG: info["split"]}
    if info.get("leakage"):
        tags[train_checks.LEAKAGE_TAG] = info["leakage"]
    tags |= {REFERENCE_TAG: reference_uri} if reference_uri else {}
    outcome_days = (info.get("feature_manifest") or {}).get("outcome_days")
    tags |= {OUTCOME_DAYS_TAG: str(outcome_days)} if outcome_days else {}
    lookback_days = (info.get("feature_manifest") or {}).get("lookback_days")
    tags |= {alignment.LOOKBACK_TAG: str(lookback_days)} if lookback_days else {}
    tags |= {FINGERPRINT_TAG: fp, HOLDOUT_TAG: holdout_uri, f"{TAG_PREFIX}family": info["family"],
             f"{TAG_PREFIX}training_run_id": info["training_run_id"], f"{TAG_PREFIX}export_url": info["export_url"],
             f"{TAG_PREFIX}export_time": info["export_time"], f"{TAG_PREFIX}dataset_id": info["dataset_id"],
             f"{TAG_PREFIX}framing": info["framing"], f"{TAG_PREFIX}seed": info["seed"],
             f"{TAG_PREFIX}version": __version__, f"{TAG_PREFIX}spec": info.get("spec", ""),
             f"{TAG_PREFIX}spec_fingerprint": info.get("spec_fingerprint", ""),
             f"{TAG_PREFIX}goal": str(info.get("goal", ""))[:250]}
    tags |= {f"{TAG_PREFIX}{k}": f"{trained.baselines[k]:.6f}" for k in ("baseline_roc_auc", "auc_margin")
             if np.isfinite(trained.baselines.get(k, float("nan")))}
    failpoints.hit("register.logged")
    # The fingerprint and every other tag are set AT creation: a version without them never exists.
    version = registry.create_version(name, model_info.model_uri, tags)
    failpoints.hit("register.created")
    registry.append_description(name, version, _description(info, holdout, oracle))
    registry.set_alias(name, CHALLENGER, version)
    mlflow.set_tags({f"{TAG_PREFIX}model_version": version, f"{TAG_PREFIX}family": info["family"]})
    return version


def _rows_written(ctx: Context, source: Source) -> int | None:
    """How many rows the platform recorded writing into the training set (featurize's CTAS),
    when the export read is of that content; None when unknown or the export is older."""
    if not source.dataset_id:
        return None
    try:
        batches = [b for b in ctx.platform.list_batches(source.dataset_id) if b.status == BATCH_SUCCESS]
    except Exception as exc:  # noqa: BLE001 - the check is skipped, not the training
        log.debug("train: could not list the training set's batches: %s", exc)
        return None
    if not batches or any(b.records <= 0 for b in batches):
        return None
    if max(b.created for b in batches) >= source.folder.time.timestamp() + 1.0:  # exportTime is to the second
        log.warning("train: the training set changed after its newest export (%s); training on that export. Run "
                    "`cmle export` to train on the current set", source.folder.url)
        return None
    return sum(b.records for b in batches)


def _check_leakage(trained: Trained, seed: int, leakage_auc: float, max_holdout_auc: float):
    """Leakage findings on the rows the model learnt from; logged to the run (table, tag, warning)."""
    learnt = pd.concat([trained.parts.train, trained.parts.valid])
    report, table = train_checks.leakage_report(learnt, trained.spec, trained.holdout.metrics["roc_auc"],
                                                leakage_auc, max_holdout_auc, seed=seed)
    tracking.log_table(table, "checks/single_feature_auc.csv")
    mlflow.log_metric("max_single_feature_auc", float(table["auc"].max()) if len(table) else 0.5)
    if report.flagged:
        mlflow.set_tag(train_checks.LEAKAGE_TAG, report.summary()[:5000])
        log.warning("train: possible leakage: %s. The version is registered with tag %s and promote refuses it "
                    "unless allow_leakage=true", report.summary(), train_checks.LEAKAGE_TAG)
    return report


def _auto_skip(registry: Registry, name: str) -> dict | None:
    """With ``retrain=auto``: the outputs of a skipped training (the champion stays) when a
    champion exists and the newest monitoring window does not say retraining is due; None
    when training should go ahead."""
    from cmle.monitoring import history

    champion = registry.by_alias(name, CHAMPION, required=False)
    if champion is None:
        log.info("train: retrain=auto and %s has no champion yet: training", name)
        return None
    due = history.retrain_due(name)
    if due:
        log.info("train: retrain=auto and the monitoring history says retraining is due: training")
        mlflow.set_tag(f"{TAG_PREFIX}retrain_reason", "monitoring: retraining due")
        return None
    why = ("no monitoring window yet" if due is None else "the newest monitoring window says it is not due")
    log.info("train: retrain=auto: %s; keeping champion v%s (nothing trained)", why, champion.version)
    mlflow.set_tags({f"{TAG_PREFIX}skipped": f"retrain=auto: {why}"})
    return {"model_name": name, "model_version": str(champion.version),
            "model_uri": f"models:/{name}/{champion.version}", "alias": CHAMPION, "skipped": True,
            "skip_reason": why, "reused": True}


def _reuse(registry: Registry, name: str, existing) -> dict:
    """Point ``challenger`` at an existing version trained the same way; train nothing."""
    tags = existing.tags or {}
    registry.set_alias(name, CHALLENGER, existing.version)
    mlflow.set_tags({f"{TAG_PREFIX}reused_version": existing.version})
    log.info("train: version %s of %s was trained from the same export with the same parameters; reusing it "
             "(set retrain=true to train again)", existing.version, name)

    def number(key: str):
        value = tags.get(f"{TAG_PREFIX}{key}")
        return float(value) if value not in (None, "") else None

    return {"model_name": name, "model_version": str(existing.version),
            "model_uri": f"models:/{name}/{existing.version}", "alias": CHALLENGER,
            "training_run_id": tags.get(f"{TAG_PREFIX}training_run_id", existing.run_id),
            "family": tags.get(f"{TAG_PREFIX}family"), "holdout_roc_auc": number("holdout_roc_auc"),
            "holdout_ece": number("holdout_ece"), "auc_ratio": number("auc_ratio"),
            "training_export": tags.get(f"{TAG_PREFIX}export_url"), "reused": True}


def _distiller(ctx: Context, distiller: str, source: Source, framing: str, spec: modelspec.ModelSpec,
               trained: Trained | None = None, existing=None) -> dict:
    """Data Distiller's model on the same rows as ``trained`` (or as the ``existing`` version,
    from its stored holdout), logged in this run; nothing when ``distiller`` is off."""
    if distiller == "off":
        return {}
    if trained is not None:
        holdout, propensity, fspec = trained.parts.holdout, trained.holdout.propensity, trained.spec
    else:
        holdout, propensity = challenger.registered_holdout((existing.tags or {}).get(HOLDOUT_TAG, ""),
                                                            f"models:/{existing.name}/{existing.version}")
        fspec = FeatureSpec.infer(holdout)
    return challenger.compare(ctx, distiller, source.frame, holdout, propensity, fspec.numeric, fspec.categorical,
                              framing, spec.events.identity.namespace)


def _log_lineage(source: Source, framing: str, fp: str) -> None:
    """Which export (URL, time, dataset, snapshot), framing, and the featurize run's parameters
    (the seed and every other train parameter are the run's own params)."""
    mlflow.set_tags({f"{TAG_PREFIX}export_url": source.folder.url,
                     f"{TAG_PREFIX}export_time": source.folder.export_time,
                     f"{TAG_PREFIX}dataset_id": source.dataset_id, f"{TAG_PREFIX}framing": framing,
                     FINGERPRINT_TAG: fp})
    snapshots = source.frame[SNAPSHOT_COLUMN].drop_duplicates() if SNAPSHOT_COLUMN in source.frame else []
    snapshot = str(snapshots.iloc[0]) if len(snapshots) == 1 else f"{len(snapshots)} distinct (row-level)"
    tracking.log_params({"export_time": source.folder.export_time, "dataset_id": source.dataset_id,
                         "training_rows": len(source.frame), "snapshot_ts": snapshot}, prefix="lineage.")
    run = _featurize_run(source.folder)
    if run is not None:
        mlflow.set_tag(f"{TAG_PREFIX}featurize_run_id", run.info.run_id)
        tracking.log_params({k: v for k, v in run.data.params.items() if not k.startswith("config.")},
                            prefix="featurize.")


def _featurize_run(folder: storage.ExportFolder):
    """The newest finished featurize run that ended before the export was written, if any."""
    active = mlflow.active_run()
    if active is None:
        return None
    try:
        runs = mlflow.search_runs(experiment_ids=[active.info.experiment_id], output_format="list",
                                  filter_string="tags.`cmle.stage` = 'featurize' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=20)
    except Exception as exc:  # noqa: BLE001 - lineage is best effort
        log.debug("featurize run lookup failed: %s", exc)
        return None
    export_ms = folder.time.timestamp() * 1000 + 999
    return next((r for r in runs if (r.info.end_time or 0) <= export_ms), None)


def _log_tuning(result: tuning.TuningResult) -> None:
    from cmle.model import plots

    best = result.best
    tracking.log_params({"best_trial": best.number, **space.loggable(best.params)}, prefix="best.")
    mlflow.log_metric(f"best_val_{result.metric}", best.score)
    tracking.log_table(result.table(), "tuning/trials.csv")
    tracking.log_figure(plots.trials_figure(result.table(), result.metric), "tuning/trials.png")


def _oracle_comparison(settings, holdout: pd.DataFrame, y: np.ndarray, propensity: np.ndarray) -> dict:
    """Model AUC vs the synthetic oracle's AUC on the same holdout rows; a logged note when
    there is no oracle (real data) or when it is not a valid reference (legacy generator)."""
    status = oracle_status(settings)
    if status is None:
        mlflow.set_tag(f"{TAG_PREFIX}oracle", "absent: no synthetic oracle file (real data); comparison skipped")
        return {}
    valid, note = status
    if not valid:
        mlflow.set_tag(f"{TAG_PREFIX}oracle", f"not valid, no ratio: {note}"[:5000])
        log.warning("oracle: no model-vs-oracle ratio: %s", note)
        return {}
    latent = oracle_propensity(settings, holdout)
    known = ~np.isnan(latent)
    if known.sum() < len(latent):
        log.warning("oracle: %d of %d holdout profiles have no latent propensity; compared on the rest",
                    int((~known).sum()), len(latent))
    values = metrics.oracle_comparison(y[known], propensity[known], latent[known])
    mlflow.set_tag(f"{TAG_PREFIX}oracle", "present")
    return {"metrics": values, "propensity": np.where(known, latent, 0.0)}


def _oracle_file(settings) -> Path | None:
    """The synthetic oracle file, or None when there is none (real AEP data, or the synthetic
    stage did not run)."""
    path = Path(synthetic_oracle.oracle_path(settings))
    return path if path.exists() else None


def oracle_status(settings) -> tuple[bool, str] | None:
    """``(valid, note)`` of the synthetic oracle (valid: its latent propensity at the snapshot
    is a reference for the model); None when there is no oracle."""
    path = _oracle_file(settings)
    return None if path is None else synthetic_oracle.oracle_validity(path)


def oracle_propensity(settings, frame: pd.DataFrame) -> np.ndarray | None:
    """The latent propensity of each row's profile at the row's snapshot time (NaN if unknown);
    None when there is no oracle. Whether it is a valid reference: :func:`oracle_status`."""
    path = _oracle_file(settings)
    if path is None:
        return None
    users = frame[ID_COLUMN].astype(str).unique().tolist()
    table = pd.read_parquet(path, filters=[(ID_COLUMN, "in", users)])
    out = pd.Series(np.nan, index=frame.index)
    for snapshot, rows in frame.groupby(SNAPSHOT_COLUMN, sort=False):
        latent = synthetic_oracle.latent_propensity_at(table[table[ID_COLUMN].isin(rows[ID_COLUMN])], snapshot)
        mapped = rows[ID_COLUMN].map(latent.set_index(ID_COLUMN)["propensity"])
        out.loc[rows.index] = mapped.to_numpy(dtype="float64")
    return out.to_numpy(dtype="float64")


def _compare_cmle(ctx: Context, trained: Trained, seed: int, holdout_fraction: float,
                  validation_fraction: float, calibration: str, threads: int) -> dict:
    """The chosen model trained on the notebooks' ``cmle`` framing, scored on the PIT holdout.

    Profiles in the PIT holdout are removed from the cmle set first, so the comparison is
    on profiles neither model saw. Logs ``cmle_framing_*`` metrics; returns them.
    """
    params, holdout, holdout_y = trained.search.best.params, trained.parts.holdout, trained.holdout.y
    latent = trained.oracle.get("propensity")
    try:
        source = read_training_set(ctx, "cmle")
    except NotFoundError as exc:
        mlflow.set_tag(f"{TAG_PREFIX}cmle_framing", f"skipped: {exc}")
        return {}
    frame = source.frame[~source.frame[ID_COLUMN].isin(holdout[ID_COLUMN])]
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, holdout_fraction, validation_fraction, seed)
    estimator = fit.fit_calibrated(params, spec, _xy(spec, parts.train), _xy(spec, parts.valid), seed=seed,
                                   calibration=calibration, n_jobs=threads,
                                   cv_folds=trained.plan.cv_folds if trained.plan else 0)
    own_x, own_y = _xy(spec, parts.holdout)
    values = {"cmle_framing_own_holdout_roc_auc": metrics.roc_auc(own_y, estimator.predict_proba(own_x)[:, 1])}
    missing = [c for c in spec.columns if c not in holdout.columns]
    if missing:
        mlflow.set_tag(f"{TAG_PREFIX}cmle_framing", f"not scored on the PIT holdout: it lacks {missing}")
    else:
        p = estimator.predict_proba(spec.prepare(holdout))[:, 1]
        values |= {"cmle_framing_roc_auc": metrics.roc_auc(holdout_y, p),
                   "cmle_framing_ece": metrics.expected_calibration_error(holdout_y, p),
                   "cmle_framing_ece_quantile": metrics.expected_calibration_error(holdout_y, p, strategy="quantile"),
                   "cmle_framing_log_loss": metrics.log_loss(holdout_y, p)}
        if latent is not None:
            values["cmle_framing_auc_ratio"] = values["cmle_framing_roc_auc"] / metrics.roc_auc(holdout_y, latent)
        mlflow.set_tag(f"{TAG_PREFIX}cmle_framing", f"export {source.folder.url}")
    values = {k: float(v) for k, v in values.items() if np.isfinite(v)}
    mlflow.log_metrics(values)
    return values


def _holdout_columns(holdout: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The holdout rows as stored: ids, snapshot, label and the features."""
    columns = [c for c in (ID_COLUMN, SNAPSHOT_COLUMN, LABEL_COLUMN) if c in holdout.columns] + list(spec.columns)
    return holdout[columns].reset_index(drop=True)


def _log_holdout(holdout: pd.DataFrame, spec: FeatureSpec) -> str:
    """Store the holdout rows with the run; returns their ``runs:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(HOLDOUT_ARTIFACT).name
        _holdout_columns(holdout, spec).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(HOLDOUT_ARTIFACT).parent))
    return f"runs:/{mlflow.active_run().info.run_id}/{HOLDOUT_ARTIFACT}"


def _log_reference(drift: drift_reference.DriftReference) -> str:
    """Store the drift reference with the run; returns its ``runs:/`` URI."""
    tracking.log_dict(drift.to_dict(), drift_reference.REFERENCE_ARTIFACT)
    return f"runs:/{mlflow.active_run().info.run_id}/{drift_reference.REFERENCE_ARTIFACT}"


def _description(info: dict, holdout: dict, oracle: dict | None) -> str:
    line = (f"Trained by cmle train (run {info['training_run_id']}) from {info['export_url']}: "
            f"{info['family']} {json.dumps(info['params'], sort_keys=True)}, calibration {info['calibration']}, "
            f"seed {info['seed']}, framing {info['framing']}. Holdout ROC-AUC {holdout['roc_auc']:.4f}, "
            f"PR-AUC {holdout['pr_auc']:.4f}, ECE {holdout['ece']:.4f}")
    if oracle:
        line += f"; oracle ROC-AUC {oracle['oracle_auc']:.4f} (ratio {oracle['auc_ratio']:.4f})"
    return line + "."


STAGE = Stage(
    name="train",
    func=train,
    params=(
        Param("max_evals", int, budget.AUTO, "hyperopt evaluations (TPE; one nested run each); 0: follow the "
              f"data size (now {budget.DEFAULT_MAX_EVALS} at every size)", min=0),
        Param("families", str, space.DEFAULT_FAMILIES, "model families to search, comma separated: logreg, rf, hgb"),
        Param("seed", int, 42, "random seed (split, TPE, estimators)"),
        Param("metric", str, "roc_auc", "validation metric that selects the model",
              choices=tuple(metrics.SELECTION_METRICS)),
        Param("holdout_fraction", float, 0.2, "share of rows held out for the final evaluation", min=0.01),
        Param("validation_fraction", float, 0.2, "share of rows for model selection and calibration", min=0.01),
        Param("framing", str, "both", "training set: pit (point in time), cmle (the notebooks'), or both: train "
              "on pit and log the same model trained on cmle (when exported) on the same holdout",
              choices=FRAMING_CHOICES),
        Param("calibration", str, "sigmoid", "probability calibration on the validation split",
              choices=fit.CALIBRATIONS),
        Param("max_tune_rows", int, budget.AUTO, "training rows each trial fits on (a stratified sample; the chosen "
              "model is refitted on every training row); 0: follow the data size (every row, with k-fold selection "
              f"and a k-fold ensemble, up to {budget.CV_MAX_ROWS:,} train + validation rows; else "
              f"{budget.TUNE_ROWS:,})", min=0),
        Param("retrain", str, "false", "false: reuse a version trained from the same data and parameters; true: "
              "train anyway; auto: train only when monitoring says retraining is due or there is no champion",
              choices=("false", "true", "auto")),
        SPEC_PARAM,
        Param("distiller", str, "off", "AEP only: also train Data Distiller's own model (MODEL_TYPE) on the same "
              "training rows in Query Service, evaluate it on the same holdout and log its metrics next to "
              "cmle's (docs/data-distiller.md)", choices=challenger.CHOICES),
        Param("min_label_rate", float, train_checks.DEFAULT_MIN_LABEL_RATE,
              "refuse a training set whose label rate is below this (a label join that lost the converters)",
              min=0.0),
        Param("max_label_rate", float, train_checks.DEFAULT_MAX_LABEL_RATE,
              "refuse a training set whose label rate is above this (a label join that lost the non-converters)",
              min=0.0),
        Param("leakage_auc", float, train_checks.DEFAULT_LEAKAGE_AUC,
              "flag features that alone reach this ROC-AUC (promote refuses a flagged version)", min=0.5),
        Param("max_holdout_auc", float, train_checks.DEFAULT_MAX_HOLDOUT_AUC,
              "flag a model whose holdout ROC-AUC is above this (too good to be true: leakage)", min=0.5),
    ),
    help="Tune (hyperopt, nested runs), fit, calibrate and evaluate the propensity model on the newest "
         "training-set export; register it with alias challenger.",
)
