"""Stage ``featurize``: point-in-time training set, scoring set, and the notebooks' framing.

Every set is a CTAS run by the platform's query engine (Data Distiller on AEP, DuckDB
locally; Spark with ``engine = spark``) from the feature SQL in ``cmle/sql/``. A set is
first built as a *candidate* dataset and checked (:mod:`cmle.features.checks`); only a set
that passes replaces the accepted one, so a failed run never leaves a bad set for
``export`` to pick up, and re-running replaces, never appends.

What the sets hold comes from the model spec (``spec``, else ``[Model] spec``;
:mod:`cmle.modelspec`): the datasets and their identity and timestamp fields, the goal and
its outcome window, who is eligible, the features. Before anything is built the spec is
checked against the data (its fields exist, the goal happens, the window fits), with
errors naming the spec's line.

Times are UTC. "Now" (the scoring snapshot) is the midnight that ends the day of the last
event; the default training snapshot T is ``outcome_days`` before it, so the outcome
window (T, T + W] ends with the data. Before any feature query, the windows are checked
against the history the events hold, and windows left at 0 follow it
(:mod:`cmle.features.windows`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import mlflow
import pandas as pd

from cmle import governance, ingestion, naming, tracking
from cmle.context import Context
from cmle.engines import spark_features
from cmle.errors import CmleError, DataCheckError, ParameterError
from cmle.features import checks, render
from cmle.features import spec as fspec
from cmle.features.plan import FeaturePlan, make_plan
from cmle.modelspec import ModelSpec, data as specdata, spec_for
from cmle.modelspec.data import DataRange
from cmle.features import windows as windows_check
from cmle.platform.base import Dataset, Resource
from cmle.scoring import alignment
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)

FRAMING_CHOICES = ("pit", "cmle", "both")
# Tag of the featurize run with the version of the training set it built (train reads its manifest).
SET_VERSION_TAG = "cmle.training_set_version"


def data_range(ctx: Context, events: Dataset, timeout_s: float, spec: ModelSpec | None = None) -> DataRange:
    """First and last event time, the event count and the goal events, by a query on the platform."""
    from cmle.modelspec import spec_for_synthetic

    return specdata.data_range(ctx.platform, spec or spec_for_synthetic(), events, ctx.platform.tenant_id, timeout_s)


def parse_snapshot(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` (its midnight) or an ISO timestamp, as UTC; ParameterError if neither."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ParameterError(f"featurize: snapshot_date = {text!r} is not a date (YYYY-MM-DD) or an ISO "
                             "timestamp (YYYY-MM-DDTHH:MM:SS, UTC unless an offset is given)") from None
    return render.utc(when)


def resolve_windows(snapshot_date: str, rng: DataRange, lookback_days: int, outcome_days: int,
                    recent: tuple[int, ...]) -> windows_check.WindowPlan:
    """T and the windows for these data (windows at 0 follow the history), checked against
    the history before any feature query runs; warnings and choices are logged."""
    snapshot = parse_snapshot(snapshot_date) if snapshot_date.strip() else None
    plan = windows_check.plan_windows(rng.first, rng.end, lookback_days, outcome_days, snapshot, recent)
    for message in plan.info:
        log.info("%s", message)
    for message in plan.warnings:
        log.warning("%s", message)
    return plan


def parse_windows(text: str) -> tuple[int, ...] | None:
    """``"7,14,28"`` -> (7, 14, 28); ``none`` -> no recent windows; empty -> None (the spec's);
    ParameterError otherwise."""
    if not text.strip():
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        windows = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        windows = (0,)
    if not windows or any(w < 1 for w in windows):
        raise ParameterError(f"featurize: windows = {text!r} must be whole days, comma-separated, e.g. 7,14,28 "
                             "(none: no recent windows; empty: the spec's)")
    return windows


def feature_windows(spec: ModelSpec, snapshot_date: str, rng: DataRange, lookback_days: int, outcome_days: int,
                    windows: str) -> tuple[fspec.FeatureSpec, dt.datetime]:
    """The windows and the snapshot T of this run: a parameter left at 0 / empty takes the spec's
    value; a look-back the spec leaves out follows the history. Checked against the history
    before any feature query runs (:func:`resolve_windows`); the choices are logged."""
    parsed = parse_windows(windows)
    recent = spec.features.windows if parsed is None else parsed
    plan = resolve_windows(snapshot_date, rng, lookback_days or spec.features.lookback_days,
                           outcome_days or spec.goal.window_days, recent)
    try:
        fs = fspec.FeatureSpec(lookback_days=plan.lookback_days, outcome_days=plan.outcome_days, windows=recent)
    except ValueError as exc:
        raise ParameterError(f"featurize: {exc}") from None
    if mlflow.active_run() is not None:
        tracking.log_params({"lookback_days": plan.lookback_days, "outcome_days": plan.outcome_days,
                             "history_days": plan.history_days}, prefix="resolved.")
        mlflow.log_text("\n".join(plan.info + plan.warnings) + "\n", "featurize/windows.txt")
    return fs, plan.snapshot


def _log_set(key: str, query: render.FeatureQuery, stats: checks.SetStats, results: list[checks.CheckResult]) -> None:
    """Checks, NULL rates, SQL and counts of one set, logged to the active MLflow run."""
    if mlflow.active_run() is None:
        return
    tracking.log_table(pd.DataFrame([r.as_row() for r in results]), f"featurize/checks_{key}.csv")
    rates = stats.null_rates()
    tracking.log_table(pd.DataFrame({"feature": list(rates), "null_rate": list(rates.values())}),
                       f"featurize/null_rates_{key}.csv")
    mlflow.log_text(query.sql, f"featurize/{key}.sql")
    metrics = {f"{key}_rows": stats.rows, f"{key}_checks_failed": len(checks.failed(results))}
    if query.kind == render.TRAINING:
        metrics |= {f"{key}_positives": stats.positives, f"{key}_negatives": stats.negatives,
                    f"{key}_positive_rate": stats.positives / stats.rows if stats.rows else 0.0}
    mlflow.log_metrics(metrics)


def build_set(ctx: Context, name: str, key: str, query: render.FeatureQuery, *, min_positives: int = 0,
              min_negatives: int = 0, max_null_rate: float = checks.DEFAULT_MAX_NULL_RATE,
              timeout_s: float = 600.0, sources: tuple[Dataset, ...] = (),
              empty_error: CmleError | None = None) -> tuple[Dataset, checks.SetStats]:
    """Build ``query`` as a candidate, check it, and make it the dataset ``name`` if it passes.

    A set that fails raises DataCheckError after its checks are logged (``empty_error``
    instead when the set has no row at all); the accepted dataset ``name`` is then left as
    it was and the candidate kept for inspection.
    """
    platform = ctx.platform
    labelled = query.kind == render.TRAINING
    if spark_features.runs_features(ctx.settings):  # engine = spark: the same SQL text on Spark
        cand = spark_features.create_table_as(ctx, naming.candidate(name), query, sources)
    else:
        cand = platform.create_table_as(naming.candidate(name), query.sql, timeout_s=timeout_s)
    stats = checks.collect_stats(platform, cand.table, query.feature_columns, labelled, timeout_s)
    results = checks.evaluate(stats, labelled, min_positives, min_negatives, max_null_rate,
                              check_nulls=labelled)
    _log_set(key, query, stats, results)
    if stats.rows == 0 and empty_error is not None:
        raise empty_error
    problem = checks.failures_message(f"featurize: the {key} set", results)
    if problem:
        raise DataCheckError(f"{problem}. The rejected set is kept as dataset {cand.name} for inspection; "
                             f"{name} was not changed")
    ds = platform.create_table_as(name, f"SELECT * FROM {render.quote_table(cand.table)}", timeout_s=timeout_s)
    platform.delete_resource(Resource(kind="dataset", id=cand.id, name=cand.name))
    log.info("%s: %d rows%s", name, stats.rows,
             f", {stats.positives} positives, {stats.negatives} negatives" if labelled else "")
    return ds, stats


def featurize(ctx: Context, snapshot_date: str = "", lookback_days: int = 0, outcome_days: int = 0,
              windows: str = "", framing: str = "both", min_positives: int = fspec.DEFAULT_MIN_POSITIVES,
              min_negatives: int = fspec.DEFAULT_MIN_NEGATIVES, max_null_rate: float = checks.DEFAULT_MAX_NULL_RATE,
              cmle_seed: int = fspec.DEFAULT_CMLE_SEED, timeout_s: float = 600.0, rebuild: bool = False,
              spec: str = "") -> dict:
    """Build the feature sets, or find them current: when the events, profiles, spec, parameters
    and feature SQL are those of an earlier run whose sets are unchanged, its outputs are
    returned and nothing is rebuilt (``rebuild`` forces a rebuild)."""
    model = spec_for(ctx.settings, spec)
    params = dict(snapshot_date=snapshot_date, lookback_days=lookback_days, outcome_days=outcome_days,
                  windows=windows, framing=framing, min_positives=min_positives, min_negatives=min_negatives,
                  max_null_rate=max_null_rate, cmle_seed=cmle_seed)
    events, profiles = specdata.datasets(ctx.platform, model, ctx.owner)
    sources = [d for d in (events, profiles) if d is not None]
    key = tracking.cache_key(params, model.fingerprint, [ingestion.dataset_version(ctx.platform, d.id) for d in sources],
                             _sql_fingerprint(), ctx.settings.platform.engine)
    cached = None if rebuild else tracking.cached_outputs("featurize", key)
    if cached is not None and _still_current(ctx, cached.get("set_versions", {})):
        log.info("featurize: events, profiles, spec and parameters unchanged; the feature sets are current")
        tracking.mark_cached(key)
        return {**cached, "reused": True}
    out = _build_sets(ctx, model, events, profiles, timeout_s=timeout_s, **params)
    out["set_versions"] = {ds_id: ingestion.dataset_version(ctx.platform, ds_id)
                           for k, ds_id in out.items() if k.endswith("_dataset_id")}
    if mlflow.active_run() is not None:  # how train (and score) find this run's feature manifest
        mlflow.set_tags({SET_VERSION_TAG: out["set_versions"][out["training_dataset_id"]],
                         alignment.SCORING_SET_TAG: out["set_versions"][out["scoring_dataset_id"]]})
    out["reused"] = False
    tracking.mark_cached(key)
    return out


def _sql_fingerprint() -> str:
    """A hash of the feature SQL and its renderer: a code change invalidates cached sets."""
    import hashlib
    from importlib import resources

    digest = hashlib.sha256()
    for name in sorted(p.name for p in resources.files("cmle.sql").iterdir() if p.name.endswith(".sql")):
        digest.update(resources.files("cmle.sql").joinpath(name).read_bytes())
    for module in ("render", "spec", "plan", "windows"):  # the windows decide the sets as much as the SQL
        digest.update(resources.files("cmle.features").joinpath(module + ".py").read_bytes())
    return digest.hexdigest()[:16]


def _still_current(ctx: Context, versions: dict) -> bool:
    """True when every dataset still holds exactly the content recorded in ``versions``."""
    try:
        return bool(versions) and all(ingestion.dataset_version(ctx.platform, ds_id) == v
                                      for ds_id, v in versions.items())
    except CmleError:
        return False


def check_spec(ctx: Context, spec: ModelSpec, events: Dataset, profiles: Dataset | None,
               timeout_s: float) -> DataRange:
    """The spec against the data: its fields, its goal, its window; the data's range."""
    platform, tenant = ctx.platform, ctx.platform.tenant_id
    specdata.check_fields(platform, spec, events, specdata.event_fields(spec, tenant), timeout_s)
    if profiles is not None:
        specdata.check_fields(platform, spec, profiles, specdata.profile_fields(spec, tenant), timeout_s)
    rng = specdata.data_range(platform, spec, events, tenant, timeout_s)
    specdata.check_goal(spec, rng, events)
    return rng


def plan_for(ctx: Context, spec: ModelSpec, events: Dataset, t: dt.datetime, fs: fspec.FeatureSpec,
             timeout_s: float) -> FeaturePlan:
    """The feature plan of this run: ``features.auto`` picks its event types from the look-back
    before the training snapshot T (so training and scoring sets get the same columns)."""
    auto: tuple[str, ...] = ()
    if spec.features.auto_top:
        tenant = ctx.platform.tenant_id
        auto = tuple(specdata.top_event_types(ctx.platform, spec, events, tenant,
                                              t - dt.timedelta(days=fs.lookback_days), t,
                                              spec.features.auto_top + len(spec.features.event_types), timeout_s))
        explicit = {f.event_type for f in spec.features.event_types}
        auto = tuple(x for x in auto if x not in explicit)[: spec.features.auto_top]
        log.info("features.auto: the %d event types with the most users before T: %s", len(auto), ", ".join(auto))
    return make_plan(spec, ctx.platform.tenant_id, fs, auto)


def _nobody(spec: ModelSpec, t: dt.datetime, kind: str) -> CmleError:
    where = ("eligibility",) if spec.eligibility.restricted and "eligibility" in spec.document else ("events",)
    return spec.error(where, f"no profile is eligible for the {kind} set at {t:%Y-%m-%d %H:%M} UTC: the eligibility "
                             "rules (and the data before the snapshot) leave nobody. Loosen eligibility "
                             "(active_within_days, exclude_goal_reached, the conditions) or choose another snapshot")


def _build_sets(ctx: Context, spec: ModelSpec, events: Dataset, profiles: Dataset | None, snapshot_date: str,
                lookback_days: int, outcome_days: int, windows: str, framing: str, min_positives: int,
                min_negatives: int, max_null_rate: float, cmle_seed: int, timeout_s: float) -> dict:
    """Build the training set(s) of ``framing`` and the scoring set; return ids and counts."""
    if not 0.0 < max_null_rate <= 1.0:
        raise ParameterError(f"featurize: max_null_rate = {max_null_rate} must be in (0, 1]")
    owner = ctx.owner
    if framing == "cmle" and not spec.notebooks_goal:
        raise ParameterError(f"featurize: framing = cmle is the CMLE notebooks' training set (subscription on the "
                             f"synthetic data); the spec {spec.name!r} asks another question: use framing pit")
    rng = check_spec(ctx, spec, events, profiles, timeout_s)
    fs, t = feature_windows(spec, snapshot_date, rng, lookback_days, outcome_days, windows)
    plan = plan_for(ctx, spec, events, t, fs, timeout_s)
    tenant = ctx.platform.tenant_id
    sources = tuple(d for d in (events, profiles) if d is not None)
    limits = dict(min_positives=min_positives, min_negatives=min_negatives, max_null_rate=max_null_rate,
                  timeout_s=timeout_s, sources=sources)
    out: dict = {"spec_name": spec.name, "snapshot_ts": t.isoformat(), "scoring_ts": rng.end.isoformat(),
                 "first_event_ts": rng.first.isoformat(), "last_event_ts": rng.last.isoformat(),
                 "n_events": rng.events, "lookback_days": fs.lookback_days, "outcome_days": fs.outcome_days}
    built: list[Dataset] = []
    framings = ("pit", "cmle") if framing == "both" and spec.notebooks_goal else ("pit",) if framing == "both" \
        else (framing,)
    profiles_table = profiles.table if profiles is not None else None
    for fr in framings:
        key = "training" if fr == "pit" else "cmle_training"
        query = render.feature_query(render.TRAINING, events.table, profiles_table, tenant, t, framing=fr,
                                     seed=cmle_seed, plan=plan)
        started = time.perf_counter()
        ds, stats = build_set(ctx, naming.training_set(owner, fr), key, query,
                              empty_error=_nobody(spec, t, "training"), **limits)
        seconds = time.perf_counter() - started
        built.append(ds)
        out |= {f"{key}_dataset_id": ds.id, f"{key}_rows": stats.rows, f"{key}_positives": stats.positives,
                f"{key}_negatives": stats.negatives, f"{key}_features": len(query.feature_columns),
                f"{key}_seconds": round(seconds, 3)}
        if mlflow.active_run() is not None:  # build + checks + copy, per event of the dataset
            mlflow.log_metric(f"{key}_events_per_second", rng.events / max(seconds, 1e-9))
    query = render.feature_query(render.SCORING, events.table, profiles_table, tenant, rng.end, plan=plan)
    started = time.perf_counter()
    ds, stats = build_set(ctx, naming.scoring_set(owner), "scoring", query,
                          empty_error=_nobody(spec, rng.end, "scoring"), **limits)
    built.append(ds)
    out |= {"scoring_dataset_id": ds.id, "scoring_rows": stats.rows,
            "scoring_seconds": round(time.perf_counter() - started, 3)}
    for target in built:  # derived data keeps the usage labels of its sources
        governance.propagate_labels(ctx.platform, list(sources), target)
    if mlflow.active_run() is not None:
        manifest = plan.manifest() | {"snapshot_ts": out["snapshot_ts"], "scoring_ts": out["scoring_ts"],
                                      "categorical": plan.categorical_columns,
                                      "cmle_features": fspec.notebook_feature_columns() if spec.notebooks_goal else []}
        tracking.log_dict(manifest, tracking.FEATURIZE_MANIFEST_ARTIFACT)
        if spec.source and spec.source != "<spec>":
            mlflow.log_text(yaml_text(spec), "featurize/model_spec.yaml")
        mlflow.set_tags({"cmle.spec": spec.name, "cmle.spec_fingerprint": spec.fingerprint})
    return out


def yaml_text(spec: ModelSpec) -> str:
    """The spec as the stage read it (its file, or the packaged synthetic spec)."""
    from pathlib import Path

    from cmle.modelspec import packaged_spec_text

    path = Path(spec.source)
    return path.read_text(encoding="utf-8") if path.is_file() else packaged_spec_text()


STAGE = Stage(
    name="featurize",
    func=featurize,
    params=(
        Param("snapshot_date", str, "", "training snapshot T, YYYY-MM-DD (midnight UTC) or an ISO timestamp; "
              "empty: outcome_days before the end of the last event's day"),
        Param("lookback_days", int, windows_check.AUTO, "days of events before T that features use; 0: the "
              "spec's features.lookback_days, and where the spec leaves it out, follow the history (every whole "
              "day before T, at most 365; 56 with 10 weeks of data)", min=0),
        Param("outcome_days", int, windows_check.AUTO, "outcome window W: the label looks at the goal in (T, T+W]; "
              "0: the spec's goal.window_days", min=0),
        Param("windows", str, "", "recent-activity windows in days (counts per event type in each), "
              "comma-separated; none: only the whole look-back; empty: the spec's features.windows"),
        Param("framing", str, "both", "training set framing: pit (point in time), cmle (the notebooks' "
              "definition, for comparison) or both", choices=FRAMING_CHOICES),
        Param("min_positives", int, fspec.DEFAULT_MIN_POSITIVES, "refuse a training set with fewer positives",
              min=0),
        Param("min_negatives", int, fspec.DEFAULT_MIN_NEGATIVES, "refuse a training set with fewer negatives",
              min=0),
        Param("max_null_rate", float, checks.DEFAULT_MAX_NULL_RATE, "refuse a training set with a feature "
              "NULL in at least this share of rows (1.0: only an always-NULL feature)"),
        Param("cmle_seed", int, fspec.DEFAULT_CMLE_SEED, "seed of the cmle framing's random negative row"),
        Param("timeout_s", float, 600.0, "seconds each query may run", min=1),
        Param("rebuild", bool, False, "rebuild the sets even when their inputs and parameters are unchanged"),
        SPEC_PARAM,
    ),
    help="Build the point-in-time training set (and the notebooks' framing for comparison) and the scoring "
         "set with the feature SQL, after data checks.",
)
