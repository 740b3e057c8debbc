"""Stage ``export``: the feature sets to cloud storage, after the data-usage-label gate.

Each set goes through ``platform.export_dataset`` into the AEP export layout
``{storage_url}/{export_path}/{dataset_id}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``
with the configured format and compression; the write is atomic, so a reader
(:func:`cmle.exports.newest_feature_export`) never sees a half-written export. Every run
adds a new ``exportTime`` folder; readers take the newest by its parsed time. A re-run
over unchanged sets finds the earlier run's exports and exports nothing new (``force``
exports anyway).

All sets are checked against the label gate before the first one is exported, so a
refused set means nothing left the platform.
"""

from __future__ import annotations

import logging

import mlflow

from cmle import governance, ingestion, naming, storage, tracking
from cmle.context import Context
from cmle.exports import export_root
from cmle.errors import NotFoundError
from cmle.platform.base import Dataset
from cmle.stages import Param, Stage

log = logging.getLogger(__name__)

SET_CHOICES = ("all", "training", "scoring")


def _targets(ctx: Context, sets: str) -> list[tuple[str, Dataset]]:
    """(output key, dataset) of each set to export; a clear error when a needed one is missing."""
    owner = ctx.owner
    find = ctx.platform.find_dataset
    targets: list[tuple[str, Dataset]] = []
    if sets in ("all", "training"):
        training = [(key, find(naming.training_set(owner, fr))) for key, fr in
                    (("training", "pit"), ("cmle_training", "cmle"))]
        training = [(k, ds) for k, ds in training if ds is not None]
        if not training:
            raise NotFoundError(f"no training set {naming.training_set(owner)!r} to export; run featurize first")
        targets += training
    if sets in ("all", "scoring"):
        scoring = find(naming.scoring_set(owner))
        if scoring is None:
            raise NotFoundError(f"no scoring set {naming.scoring_set(owner)!r} to export; run featurize first")
        targets.append(("scoring", scoring))
    return targets


def _still_there(ctx: Context, cached: dict, targets: list[tuple[str, Dataset]]) -> bool:
    """True when every export a cached run recorded is still a complete export folder."""
    root, path = export_root(ctx), ctx.settings.cloud.export_path
    for key, ds in targets:
        times = {e.export_time for e in storage.list_exports(root, path, ds.id)}
        if cached.get(f"{key}_export_time") not in times:
            return False
    return True


def export(ctx: Context, sets: str = "all", timeout_s: float = 600.0, force: bool = False) -> dict:
    """Export the chosen feature sets; return, per set, its dataset id, export URL, time and rows.

    When the sets hold exactly the content an earlier export run exported (same dataset
    versions, path, format and compression) and those exports still exist, nothing is
    exported again and that run's outputs are returned (``force`` exports anyway).
    """
    cloud = ctx.settings.cloud
    targets = _targets(ctx, sets)
    for _key, ds in targets:
        governance.check_export_allowed(ctx.platform, ds)
    cache = tracking.cache_key(sets, [(k, ds.id, ingestion.dataset_version(ctx.platform, ds.id)) for k, ds in targets],
                               cloud.export_path, cloud.data_format, cloud.compression_type)
    cached = None if force else tracking.cached_outputs("export", cache)
    if cached is not None and _still_there(ctx, cached, targets):
        log.info("the feature sets are unchanged since their exports: nothing exported again")
        tracking.mark_cached(cache)
        return {**cached, "reused": True}
    out: dict = {}
    for key, ds in targets:
        result = ctx.platform.export_dataset(ds.id, cloud.export_path, cloud.data_format, cloud.compression_type,
                                             timeout_s=timeout_s)
        log.info("exported %s: %d rows to %s", ds.name, result.rows, result.url)
        out |= {f"{key}_dataset_id": ds.id, f"{key}_export_url": result.url,
                f"{key}_export_time": result.export_time, f"{key}_export_rows": result.rows,
                f"{key}_export_files": len(result.files)}
        if mlflow.active_run() is not None:
            mlflow.log_metric(f"{key}_export_rows", result.rows)
    tracking.mark_cached(cache)
    return {**out, "reused": False}


STAGE = Stage(
    name="export",
    func=export,
    params=(
        Param("sets", str, "all", "feature sets to export: all, training (both framings if present) or scoring",
              choices=SET_CHOICES),
        Param("timeout_s", float, 600.0, "seconds each export may run", min=1),
        Param("force", bool, False, "export even when the newest export is current"),
    ),
    help="Export the training and scoring sets to cloud storage (AEP export layout, Parquet) after checking "
         "their data usage labels.",
)
