"""Stage ``featurize``: point-in-time training set, scoring set, and the notebooks' framing.

Every set is a CTAS run by the platform's query engine (Data Distiller on AEP, DuckDB
locally; Spark with ``engine = spark``) from the feature SQL in ``cmle/sql/``. A set is
first built as a *candidate* dataset and checked (:mod:`cmle.features.checks`); only a set
that passes replaces the accepted one, so a failed run never leaves a bad set for
``export`` to pick up, and re-running replaces, never appends.

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
from dataclasses import dataclass

import mlflow
import pandas as pd

from cmle import governance, ingestion, naming, tracking
from cmle.context import Context
from cmle.engines import spark_features
from cmle.errors import CmleError, DataCheckError, NotFoundError, ParameterError
from cmle.features import checks, render
from cmle.features import spec as fspec
from cmle.features import windows as windows_check
from cmle.platform.base import Dataset, Resource
from cmle.stages import Param, Stage

log = logging.getLogger(__name__)

FRAMING_CHOICES = ("pit", "cmle", "both")


@dataclass(frozen=True)
class DataRange:
    """What the events dataset spans."""

    first: dt.datetime
    last: dt.datetime
    events: int

    @property
    def end(self) -> dt.datetime:
        """"Now": the midnight (UTC) that ends the day of the last event."""
        return dt.datetime.combine(self.last.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)


def _when(value) -> dt.datetime:
    return render.utc(pd.Timestamp(value).to_pydatetime())


def data_range(ctx: Context, events: Dataset, timeout_s: float) -> DataRange:
    """First and last event time and the event count, by a query on the platform."""
    sql = (f"SELECT MIN(`timestamp`) AS first_ts, MAX(`timestamp`) AS last_ts, COUNT(*) AS n "
           f"FROM {render.quote_table(events.table)}")
    row = ctx.platform.query(sql, timeout_s=timeout_s, max_rows=1).iloc[0]
    if not row["n"] or pd.isna(row["last_ts"]):
        raise DataCheckError(f"the events dataset {events.name} holds no event; run the synthetic stage "
                             "(or ingest events) first")
    return DataRange(first=_when(row["first_ts"]), last=_when(row["last_ts"]), events=int(row["n"]))


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


def parse_windows(text: str) -> tuple[int, ...]:
    """``"7,14,28"`` -> (7, 14, 28); empty -> no recent windows; ParameterError otherwise."""
    try:
        windows = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        windows = (0,)
    if any(w < 1 for w in windows):
        raise ParameterError(f"featurize: windows = {text!r} must be whole days, comma-separated, e.g. 7,14,28")
    return windows


def _dataset(ctx: Context, name: str, what: str) -> Dataset:
    ds = ctx.platform.find_dataset(name)
    if ds is None:
        raise NotFoundError(f"the {what} dataset {name!r} does not exist; run the synthetic stage first")
    return ds


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
              timeout_s: float = 600.0) -> tuple[Dataset, checks.SetStats]:
    """Build ``query`` as a candidate, check it, and make it the dataset ``name`` if it passes.

    A set that fails raises DataCheckError after its checks are logged; the accepted
    dataset ``name`` is then left as it was and the candidate kept for inspection.
    """
    platform = ctx.platform
    labelled = query.kind == render.TRAINING
    if spark_features.runs_features(ctx.settings):  # engine = spark: the same SQL text on Spark
        cand = spark_features.create_table_as(ctx, naming.candidate(name), query)
    else:
        cand = platform.create_table_as(naming.candidate(name), query.sql, timeout_s=timeout_s)
    stats = checks.collect_stats(platform, cand.table, query.feature_columns, labelled, timeout_s)
    results = checks.evaluate(stats, labelled, min_positives, min_negatives, max_null_rate,
                              check_nulls=labelled)
    _log_set(key, query, stats, results)
    problem = checks.failures_message(f"featurize: the {key} set", results)
    if problem:
        raise DataCheckError(f"{problem}. The rejected set is kept as dataset {cand.name} for inspection; "
                             f"{name} was not changed")
    ds = platform.create_table_as(name, f"SELECT * FROM {render.quote_table(cand.table)}", timeout_s=timeout_s)
    platform.delete_resource(Resource(kind="dataset", id=cand.id, name=cand.name))
    log.info("%s: %d rows%s", name, stats.rows,
             f", {stats.positives} positives, {stats.negatives} negatives" if labelled else "")
    return ds, stats


def featurize(ctx: Context, snapshot_date: str = "", lookback_days: int = windows_check.AUTO,
              outcome_days: int = windows_check.AUTO, windows: str = "7,14,28", framing: str = "both",
              min_positives: int = fspec.DEFAULT_MIN_POSITIVES, min_negatives: int = fspec.DEFAULT_MIN_NEGATIVES,
              max_null_rate: float = checks.DEFAULT_MAX_NULL_RATE, cmle_seed: int = fspec.DEFAULT_CMLE_SEED,
              timeout_s: float = 600.0, rebuild: bool = False) -> dict:
    """Build the feature sets, or find them current: when the events, profiles, parameters and
    feature SQL are those of an earlier run whose sets are unchanged, its outputs are returned
    and nothing is rebuilt (``rebuild`` forces a rebuild)."""
    params = dict(snapshot_date=snapshot_date, lookback_days=lookback_days, outcome_days=outcome_days,
                  windows=windows, framing=framing, min_positives=min_positives, min_negatives=min_negatives,
                  max_null_rate=max_null_rate, cmle_seed=cmle_seed)
    owner = ctx.owner
    sources = [_dataset(ctx, naming.events_dataset(owner), "events"),
               _dataset(ctx, naming.profiles_dataset(owner), "profiles")]
    key = tracking.cache_key(params, [ingestion.dataset_version(ctx.platform, d.id) for d in sources],
                             _sql_fingerprint(), ctx.settings.platform.engine)
    cached = None if rebuild else tracking.cached_outputs("featurize", key)
    if cached is not None and _still_current(ctx, cached.get("set_versions", {})):
        log.info("featurize: events, profiles and parameters unchanged; the feature sets are current")
        tracking.mark_cached(key)
        return {**cached, "reused": True}
    out = _build_sets(ctx, timeout_s=timeout_s, **params)
    out["set_versions"] = {ds_id: ingestion.dataset_version(ctx.platform, ds_id)
                           for k, ds_id in out.items() if k.endswith("_dataset_id")}
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
    for module in (render, fspec, windows_check):  # the windows decide the sets as much as the SQL
        digest.update(resources.files("cmle.features").joinpath(module.__name__.rsplit(".", 1)[1] + ".py").read_bytes())
    return digest.hexdigest()[:16]


def _still_current(ctx: Context, versions: dict) -> bool:
    """True when every dataset still holds exactly the content recorded in ``versions``."""
    try:
        return bool(versions) and all(ingestion.dataset_version(ctx.platform, ds_id) == v
                                      for ds_id, v in versions.items())
    except CmleError:
        return False


def _build_sets(ctx: Context, snapshot_date: str, lookback_days: int, outcome_days: int, windows: str,
                framing: str, min_positives: int, min_negatives: int, max_null_rate: float, cmle_seed: int,
                timeout_s: float) -> dict:
    """Build the training set(s) of ``framing`` and the scoring set; return ids and counts."""
    if not 0.0 < max_null_rate <= 1.0:
        raise ParameterError(f"featurize: max_null_rate = {max_null_rate} must be in (0, 1]")
    owner = ctx.owner
    events = _dataset(ctx, naming.events_dataset(owner), "events")
    profiles = _dataset(ctx, naming.profiles_dataset(owner), "profiles")
    recent = parse_windows(windows)
    rng = data_range(ctx, events, timeout_s)
    plan = resolve_windows(snapshot_date, rng, lookback_days, outcome_days, recent)
    lookback_days, outcome_days, t = plan.lookback_days, plan.outcome_days, plan.snapshot
    fs = fspec.FeatureSpec(lookback_days=lookback_days, outcome_days=outcome_days, windows=recent)
    if mlflow.active_run() is not None:
        tracking.log_params({"lookback_days": lookback_days, "outcome_days": outcome_days,
                             "history_days": plan.history_days}, prefix="resolved.")
        mlflow.log_text("\n".join(plan.info + plan.warnings) + "\n", "featurize/windows.txt")
    tenant = ctx.platform.tenant_id
    limits = dict(min_positives=min_positives, min_negatives=min_negatives, max_null_rate=max_null_rate,
                  timeout_s=timeout_s)
    out: dict = {"snapshot_ts": t.isoformat(), "scoring_ts": rng.end.isoformat(),
                 "first_event_ts": rng.first.isoformat(), "last_event_ts": rng.last.isoformat(),
                 "n_events": rng.events, "lookback_days": lookback_days, "outcome_days": outcome_days}
    built: list[Dataset] = []
    framings = ("pit", "cmle") if framing == "both" else (framing,)
    for fr in framings:
        key = "training" if fr == "pit" else "cmle_training"
        query = render.feature_query(render.TRAINING, events.table, profiles.table, tenant, t, fs,
                                     framing=fr, seed=cmle_seed)
        started = time.perf_counter()
        ds, stats = build_set(ctx, naming.training_set(owner, fr), key, query, **limits)
        seconds = time.perf_counter() - started
        built.append(ds)
        out |= {f"{key}_dataset_id": ds.id, f"{key}_rows": stats.rows, f"{key}_positives": stats.positives,
                f"{key}_negatives": stats.negatives, f"{key}_features": len(query.feature_columns),
                f"{key}_seconds": round(seconds, 3)}
        if mlflow.active_run() is not None:  # build + checks + copy, per event of the dataset
            mlflow.log_metric(f"{key}_events_per_second", rng.events / max(seconds, 1e-9))
    query = render.feature_query(render.SCORING, events.table, profiles.table, tenant, rng.end, fs)
    started = time.perf_counter()
    ds, stats = build_set(ctx, naming.scoring_set(owner), "scoring", query, **limits)
    built.append(ds)
    out |= {"scoring_dataset_id": ds.id, "scoring_rows": stats.rows,
            "scoring_seconds": round(time.perf_counter() - started, 3)}
    for target in built:  # derived data keeps the usage labels of its sources
        governance.propagate_labels(ctx.platform, [events, profiles], target)
    if mlflow.active_run() is not None:
        tracking.log_dict({"snapshot_ts": out["snapshot_ts"], "scoring_ts": out["scoring_ts"],
                           "lookback_days": lookback_days, "outcome_days": outcome_days,
                           "windows": list(fs.recent_windows), "features": fspec.feature_columns(fs),
                           "categorical": fspec.categorical_columns(),
                           "cmle_features": fspec.notebook_feature_columns()}, "featurize/feature_spec.json")
    return out


STAGE = Stage(
    name="featurize",
    func=featurize,
    params=(
        Param("snapshot_date", str, "", "training snapshot T, YYYY-MM-DD (midnight UTC) or an ISO timestamp; "
              "empty: outcome_days before the end of the last event's day"),
        Param("lookback_days", int, windows_check.AUTO, "days of events before T that features use; 0: follow "
              "the history (every whole day before T, at most 365; 56 with 10 weeks of data)", min=0),
        Param("outcome_days", int, windows_check.AUTO, "outcome window W: label = converted in (T, T+W]; 0: "
              "follow the history (14 days, or half the history when shorter)", min=0),
        Param("windows", str, ",".join(map(str, fspec.DEFAULT_WINDOWS)), "recent-activity windows in days "
              "(counts per event type in each), comma-separated; empty: only the whole look-back"),
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
    ),
    help="Build the point-in-time training set (and the notebooks' framing for comparison) and the scoring "
         "set with the feature SQL, after data checks.",
)
