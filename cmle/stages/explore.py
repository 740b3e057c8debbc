"""Stage ``explore``: the notebooks' exploratory analysis of the events dataset, done right.

Runs the queries of :mod:`cmle.explore.queries` through the platform's query engine and
logs to the active MLflow run, under ``explore/``: each result as a CSV table (and an
MLflow table), each figure as PNG, the SQL that ran, and headline metrics.
"""

from __future__ import annotations

import mlflow

from cmle import naming, tracking
from cmle.context import Context
from cmle.errors import DataCheckError, NotFoundError
from cmle.explore import Exploration, cooccurrence_matrix, explore_events
from cmle.platform.base import BATCH_SUCCESS, Dataset
from cmle.stages import Param, Stage

ARTIFACT_DIR = "explore"


def events_dataset(ctx: Context) -> Dataset:
    """The owner's events dataset, checked to hold data; a clear error otherwise."""
    name = naming.events_dataset(ctx.owner)
    ds = ctx.platform.find_dataset(name)
    if ds is None:
        raise NotFoundError(f"the events dataset {name!r} does not exist on the {ctx.platform.backend} "
                            "platform; run the synthetic stage first")
    if not any(b.status == BATCH_SUCCESS for b in ctx.platform.list_batches(ds.id)):
        raise DataCheckError(f"the events dataset {name!r} ({ds.id}) holds no data; run the synthetic "
                             "stage (or ingest experience events) first")
    return ds


def log_exploration(result: Exploration) -> None:
    """Log every table, figure, query and headline metric of ``result`` to the active run."""
    from cmle.explore import plots  # matplotlib loads only when a stage draws, not on `import`

    for name, table in result.tables().items():
        tracking.log_table(table, f"{ARTIFACT_DIR}/{name}.csv")
    for name, sql in result.sql.items():
        mlflow.log_text(sql + "\n", f"{ARTIFACT_DIR}/sql/{name}.sql")
    tracking.log_figure(plots.event_mix_figure(result.event_mix), f"{ARTIFACT_DIR}/event_mix.png")
    tracking.log_figure(plots.funnel_figure(result.funnel), f"{ARTIFACT_DIR}/funnel.png")
    tracking.log_figure(plots.cooccurrence_figure(cooccurrence_matrix(result.cooccurrence)),
                        f"{ARTIFACT_DIR}/cooccurrence.png")
    tracking.log_figure(plots.correlation_figure(result.correlation), f"{ARTIFACT_DIR}/correlation.png")
    totals = result.totals
    mlflow.log_metrics({
        "users": totals["users"], "events": totals["events"], "converted_users": totals["converted_users"],
        "conversion_rate": totals["conversion_rate"], "events_per_user": totals["events_per_user"],
        "event_types": len(result.event_mix), "correlation_users": result.correlation_users,
    })


def _funnel_outputs(result: Exploration) -> dict[str, int]:
    return {str(r.event_type): int(r.users_in_order) for r in result.funnel.itertuples()}


def run(ctx: Context, sample_users: int = 0, timeout_s: float = 600.0) -> dict:
    """Explore the events dataset; returns its id and table and the headline numbers."""
    ds = events_dataset(ctx)
    result = explore_events(ctx.platform, ds.table, ctx.platform.tenant_id, sample_users=sample_users,
                            timeout_s=timeout_s)
    log_exploration(result)
    strongest = result.correlation.dropna(subset=["correlation"]).head(1)
    return {
        "events_dataset_id": ds.id,
        "events_table": ds.table,
        **result.totals,
        "event_types": len(result.event_mix),
        "funnel_users_in_order": _funnel_outputs(result),
        "correlation_users": result.correlation_users,
        "strongest_correlation": (None if strongest.empty else
                                  {"event_type": str(strongest.iloc[0]["event_type"]),
                                   "correlation": float(strongest.iloc[0]["correlation"])}),
    }


STAGE = Stage(
    name="explore",
    func=run,
    params=(
        Param("sample_users", int, 0, "correlate conversion over this many hash-chosen users (0 = all)", min=0),
        Param("timeout_s", float, 600.0, "timeout of each query, in seconds", min=1.0),
    ),
    help="Exploratory queries on the events dataset (event mix, email funnel, co-occurrence, "
         "correlation with conversion), logged to MLflow as tables and PNG plots.",
)
