"""Stage ``explore``: the notebooks' exploratory analysis, and discovery on your own dataset.

Runs the queries of :mod:`cmle.explore.queries` on the model spec's events dataset through
the platform's query engine and logs to the active MLflow run, under ``explore/``: each
result as a CSV table, each figure as PNG, the SQL that ran, and headline metrics.

Discovery (:mod:`cmle.explore.discover`), for a dataset you bring: the event types with
their events and users, the fields and how often each is filled, the candidate goals with
their base rates, and a starter spec (``explore/starter_spec.yaml``, and the file
``write_spec`` when given) to edit. With ``dataset`` it explores that dataset instead of
the spec's, before any spec for it exists (``identity`` names who the events belong to;
without it, ECID of ``identityMap`` or a usual id field is looked for).
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd

from cmle import tracking
from cmle.context import Context
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.explore import Exploration, cooccurrence_matrix, discover, explore_events, queries
from cmle.explore.queries import Columns
from cmle.modelspec import ModelSpec, data as specdata, parse_spec, spec_for
from cmle.modelspec.starter import starter_spec
from cmle.platform.base import BATCH_SUCCESS, Dataset
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)

ARTIFACT_DIR = "explore"


def events_dataset(ctx: Context, spec: ModelSpec | None = None, name: str = "") -> Dataset:
    """The events dataset (``name``, else the spec's), checked to hold data; a clear error otherwise."""
    spec = spec or spec_for(ctx.settings)
    if name:
        ds = ctx.platform.find_dataset(name)
        if ds is None:
            raise NotFoundError(f"explore: there is no dataset {name!r} on the {ctx.platform.backend} platform; "
                                "load your events first (`cmle load`) or check the name")
    else:
        ds = specdata.dataset_of(ctx.platform, spec, ctx.owner, "events")
    if not any(b.status == BATCH_SUCCESS for b in ctx.platform.list_batches(ds.id)):
        raise DataCheckError(f"the events dataset {ds.name!r} ({ds.id}) holds no data; run the synthetic "
                             "stage (or load your experience events) first")
    return ds


def log_exploration(result: Exploration) -> None:
    """Log every table, figure, query and headline metric of ``result`` to the active run."""
    from cmle.explore import plots  # matplotlib loads only when a stage draws, not on `import`

    for name, table in result.tables().items():
        tracking.log_table(table, f"{ARTIFACT_DIR}/{name}.csv")
    for name, sql in result.sql.items():
        mlflow.log_text(sql + "\n", f"{ARTIFACT_DIR}/sql/{name}.sql")
    tracking.log_figure(plots.event_mix_figure(result.event_mix), f"{ARTIFACT_DIR}/event_mix.png")
    if len(result.funnel):
        tracking.log_figure(plots.funnel_figure(result.funnel), f"{ARTIFACT_DIR}/funnel.png")
    tracking.log_figure(plots.cooccurrence_figure(cooccurrence_matrix(result.cooccurrence)),
                        f"{ARTIFACT_DIR}/cooccurrence.png")
    if len(result.correlation):
        tracking.log_figure(plots.correlation_figure(result.correlation), f"{ARTIFACT_DIR}/correlation.png")
    totals = result.totals
    mlflow.log_metrics({
        "users": totals["users"], "events": totals["events"], "converted_users": totals["converted_users"],
        "conversion_rate": totals["conversion_rate"], "events_per_user": totals["events_per_user"],
        "event_types": len(result.event_mix), "correlation_users": result.correlation_users,
    })


def _funnel_outputs(result: Exploration) -> dict[str, int]:
    return {str(r.event_type): int(r.users_in_order) for r in result.funnel.itertuples()}


DISCOVERY_WINDOW_DAYS = 30  # outcome window of the candidate goals when neither parameter nor spec has one


def _discovery_spec(ctx: Context, ds: Dataset, identity: str, window_days: int, timeout_s: float) -> ModelSpec:
    """A spec for a dataset with no spec yet: its identity (given or found), the XDM
    timestamp and eventType, and the best candidate goal."""
    platform, tenant = ctx.platform, ctx.platform.tenant_id
    fields = platform.dataset_fields(ds.id)
    ident = (discover.parse_identity(identity) if identity.strip() else
             discover.guess_identity(fields, discover.identity_namespaces(platform, ds.table, timeout_s)
                                     if "identityMap" in fields else pd.DataFrame(), tenant))

    def spec(goal: str) -> ModelSpec:
        body = ", ".join(f"{k}: {v!r}" for k, v in ident.items())
        return parse_spec(f"version: 1\nname: discovery\nevents:\n  dataset: {ds.name!r}\n  identity: {{{body}}}\n"
                          f"goal: {{{goal}}}\n", "<discovery>")

    draft = spec(f"any_event: true, window_days: {window_days or DISCOVERY_WINDOW_DAYS}")
    cols = Columns.of(draft, tenant)
    types = list(platform.query(queries.event_mix_sql(ds.table, cols), timeout_s=timeout_s)["event_type"].astype(str))
    rng = specdata.data_range(platform, draft, ds, tenant, timeout_s)
    window = _window(window_days or DISCOVERY_WINDOW_DAYS, rng)
    best = discover.candidate_goals(platform, ds.table, cols, types, rng.end, window, timeout_s).iloc[0]
    if best["outcome"] == "occurs":
        return spec(f"event_types: [{best['goal']!r}], window_days: {window}")
    return spec(f"any_event: true, outcome: does_not_occur, window_days: {window}")


def _window(days: int, rng: specdata.DataRange) -> int:
    """An outcome window that leaves at least half the data as history."""
    return max(1, min(days, int(rng.days // 2)))


def discover_dataset(ctx: Context, spec: ModelSpec, ds: Dataset, result: Exploration, window_days: int,
                     timeout_s: float) -> dict:
    """Fields, candidate goals and a starter spec; logged under explore/; returns them."""
    platform = ctx.platform
    fields = platform.dataset_fields(ds.id)
    filled = discover.filled_fields(platform, ds.table, fields, timeout_s)
    rng = specdata.data_range(platform, spec, ds, platform.tenant_id, timeout_s)
    window = _window(window_days or spec.goal.window_days, rng)
    cols = Columns.of(spec, platform.tenant_id)
    goals = discover.candidate_goals(platform, ds.table, cols, list(result.event_mix["event_type"].astype(str)),
                                     rng.end, window, timeout_s)
    identity = ({"namespace": spec.events.identity.namespace} if spec.events.identity.in_identity_map else
                {"field": spec.events.identity.field.text, "namespace": spec.events.identity.namespace})
    lookback = max(7, min(spec.features.lookback_days or int(rng.days - window), int(rng.days - window)))
    text = starter_spec(name=spec.name if spec.name != "discovery" else ds.table.removeprefix("cmle_"),
                        dataset=ds.name, identity=identity, goals=goals, fields=filled, window_days=window,
                        lookback_days=lookback, tenant=platform.tenant_id)
    tracking.log_table(filled, f"{ARTIFACT_DIR}/fields.csv")
    tracking.log_table(goals, f"{ARTIFACT_DIR}/candidate_goals.csv")
    mlflow.log_text(text, f"{ARTIFACT_DIR}/starter_spec.yaml")
    return {"fields": filled, "goals": goals, "starter_spec": text}


def _records(df: pd.DataFrame, rounding: dict | None = None) -> list[dict]:
    """A small table as JSON-able rows (what the CLI prints)."""
    out = []
    for row in df.to_dict("records"):
        item = {}
        for k, v in row.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float):
                v = None if v != v else round(v, (rounding or {}).get(k, 6))
            item[k] = v
        out.append(item)
    return out


def _print_discovery(ds: Dataset, result: Exploration, found: dict) -> None:
    """What a user reads in the terminal (the same tables are logged to MLflow)."""
    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.max_colwidth", 48):
        mix = result.event_mix[["event_type", "events", "users", "user_share"]]
        log.info("explore: %s: %d events, %d users\n\nevent types:\n%s\n\nfilled fields:\n%s\n\ncandidate goals:\n%s",
                 ds.name, result.totals["events"], result.totals["users"], mix.head(30).to_string(index=False),
                 found["fields"].head(40).to_string(index=False),
                 found["goals"][["goal", "outcome", "window_days", "users", "positives", "base_rate",
                                 "first_time_rate"]].head(10).to_string(index=False))


def run(ctx: Context, sample_users: int = 0, timeout_s: float = 600.0, spec: str = "", dataset: str = "",
        identity: str = "", window_days: int = 0, write_spec: str = "") -> dict:
    """Explore the events dataset; returns its id and table, the headline numbers and, for
    discovery, the candidate goals and where the starter spec went."""
    model = spec_for(ctx.settings, spec)
    ds = events_dataset(ctx, model, dataset.strip())
    if dataset.strip() and (model.synthetic or model.events.dataset is None or
                            model.events.dataset.name != ds.name or identity.strip()):
        model = _discovery_spec(ctx, ds, identity, window_days, timeout_s)
    tenant = ctx.platform.tenant_id
    cols = Columns.of(model, tenant)
    funnel = model.funnel if not dataset.strip() else ()
    result = explore_events(ctx.platform, ds.table, cols, sample_users=sample_users, timeout_s=timeout_s,
                            funnel=funnel, goal_types=model.goal.event_types)
    log_exploration(result)
    strongest = result.correlation.dropna(subset=["correlation"]).head(1)
    out = {
        "events_dataset_id": ds.id,
        "events_table": ds.table,
        "spec_name": model.name,
        **result.totals,
        "event_types": len(result.event_mix),
        "funnel_users_in_order": _funnel_outputs(result),
        "correlation_users": result.correlation_users,
        "strongest_correlation": (None if strongest.empty else
                                  {"event_type": str(strongest.iloc[0]["event_type"]),
                                   "correlation": float(strongest.iloc[0]["correlation"])}),
    }
    if not model.synthetic:  # discovery: what a user needs to write or check their spec
        found = discover_dataset(ctx, model, ds, result, window_days, timeout_s)
        _print_discovery(ds, result, found)
        out["filled_fields"] = int((found["fields"]["fill_rate"] > 0).sum())
        out["event_types_found"] = _records(result.event_mix[["event_type", "events", "users"]].head(30))
        out["fields"] = _records(found["fields"].head(60), rounding={"fill_rate": 4})
        out["candidate_goals"] = _records(found["goals"].head(8)[["goal", "outcome", "window_days", "users",
                                                                  "positives", "base_rate", "first_time_rate"]],
                                          rounding={"base_rate": 4, "first_time_rate": 4})
        if write_spec.strip():
            path = Path(write_spec.strip())
            if path.exists():
                raise ParameterError(f"explore: {path} exists; the starter spec is not written over a file. "
                                     "Choose another write_spec path (the spec is also in the run's "
                                     "explore/starter_spec.yaml)")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(found["starter_spec"], encoding="utf-8")
            out["starter_spec"] = str(path)
            log.info("explore: starter spec written to %s; edit it, then run featurize with spec=%s", path, path)
    elif write_spec.strip():
        raise ParameterError("explore: write_spec is for your own data; pass dataset=<your events dataset>")
    return out


STAGE = Stage(
    name="explore",
    func=run,
    params=(
        Param("sample_users", int, 0, "correlate conversion over this many hash-chosen users (0 = all)", min=0),
        Param("timeout_s", float, 600.0, "timeout of each query, in seconds", min=1.0),
        SPEC_PARAM,
        Param("dataset", str, "", "explore this events dataset (by name) instead of the spec's: discovery on "
              "your own data before a spec exists"),
        Param("identity", str, "", "with dataset: who the events belong to, a field path (_tenant.crmId) or an "
              "identityMap namespace (ECID); empty: ECID of identityMap or a usual id field"),
        Param("window_days", int, 0, "outcome window of the candidate goals, in days; 0: the spec's "
              "goal.window_days", min=0),
        Param("write_spec", str, "", "write the starter spec to this new file (e.g. conf/models/mine.yaml)"),
    ),
    help="Exploratory queries on the events dataset (event mix, funnel, co-occurrence, correlation with the "
         "goal); on your own data also the filled fields, candidate goals with base rates, and a starter spec.",
)
