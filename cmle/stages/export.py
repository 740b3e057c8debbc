"""Stage ``export``: the feature sets to cloud storage, after the data-usage-label gate.

Each set goes through ``platform.export_dataset`` into the AEP export layout
``{storage_url}/{export_path}/{dataset_id}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``
with the configured format and compression; the write is atomic, so a reader
(:func:`cmle.exports.newest_feature_export`) never sees a half-written export. Every run
whose dataset changed adds a new ``exportTime`` folder; readers take the newest by its
parsed time. A set whose newest export is not older than its last change is not exported
again (re-running exports nothing new), unless ``force`` is set.

All sets are checked against the label gate before the first one is exported, so a
refused set means nothing left the platform.
"""

from __future__ import annotations

import logging

import mlflow

from cmle import governance, ingestion, naming, storage
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


def current_export(ctx: Context, ds: Dataset) -> storage.ExportFolder | None:
    """The newest export of ``ds`` if it was made after the dataset's last change, else None.

    Export times have whole seconds: an export in the same second as the change counts as current.
    """
    exports = storage.list_exports(export_root(ctx), ctx.settings.cloud.export_path, ds.id)
    if not exports:
        return None
    changed = int(ingestion.last_change(ctx.platform, ds.id))
    return exports[-1] if exports[-1].time.timestamp() >= changed else None


def export(ctx: Context, sets: str = "all", timeout_s: float = 600.0, force: bool = False) -> dict:
    """Export the chosen feature sets; return, per set, its dataset id, export URL, time and rows."""
    cloud = ctx.settings.cloud
    targets = _targets(ctx, sets)
    for _key, ds in targets:
        governance.check_export_allowed(ctx.platform, ds)
    out: dict = {}
    for key, ds in targets:
        current = None if force else current_export(ctx, ds)
        if current is not None:
            log.info("%s is unchanged since its export %s: not exported again", ds.name, current.export_time)
            url, export_time, reused = current.url, current.export_time, True
            rows, files = storage.count_rows(current.url), len(storage.part_files(current.url))
        else:
            result = ctx.platform.export_dataset(ds.id, cloud.export_path, cloud.data_format,
                                                 cloud.compression_type, timeout_s=timeout_s)
            log.info("exported %s: %d rows to %s", ds.name, result.rows, result.url)
            url, export_time, reused, rows, files = result.url, result.export_time, False, result.rows, len(result.files)
        out |= {f"{key}_dataset_id": ds.id, f"{key}_export_url": url, f"{key}_export_time": export_time,
                f"{key}_export_rows": rows, f"{key}_export_files": files, f"{key}_export_reused": reused}
        if mlflow.active_run() is not None:
            mlflow.log_metric(f"{key}_export_rows", rows)
    return out


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
