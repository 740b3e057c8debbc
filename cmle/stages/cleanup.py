"""Stage ``cleanup``: delete every platform resource this owner created.

A resource is this owner's when the platform recorded this owner on it at creation
(:attr:`~cmle.platform.base.Resource.owner`: the embedded platform's catalog, dataset tags on
AEP); a resource with another owner's record is never deleted, whatever its name. Only
resources without any record (kinds AEP cannot tag) are matched by name, with
:func:`cmle.naming.is_ours`, whose names are injective per owner. They are deleted in
dependency order (audiences and flows before datasets, datasets before schemas,
schemas before field groups); deleting a CTAS dataset also deletes the ad-hoc schema the
platform made for it. On AEP a Data Distiller SQL audience (``audience --via sql``) is found
by its dataset and removed with ``DROP AUDIENCE`` (kind ``sqlaudience``). The export files of every deleted dataset are removed from where the
platform exports (:func:`cmle.exports.export_root`: ``[Cloud] storage_url``, or on AEP the
Data Landing Zone, never the local default folder), and the score files from the score
folder. Re-running finds nothing more to delete. The MLflow registry is not touched:
models are deleted in MLflow.
"""

from __future__ import annotations

import logging

import mlflow

from cmle import exports, naming, storage, tracking
from cmle.context import Context
from cmle.platform.base import Resource
from cmle.stages import Param, Stage

log = logging.getLogger(__name__)

# Lower sorts first: what depends on something is deleted before it.
_ORDER = {"audience": 0, "sqlaudience": 0, "flow": 1, "connection": 2, "dataset": 3, "descriptor": 4, "schema": 5, "fieldgroup": 6}


def is_owned(resource: Resource, owner: str) -> bool:
    """True when ``resource`` belongs to ``owner``: by its ownership record, or by its name
    when the platform keeps no record for it."""
    if resource.owner is not None:
        return resource.owner == owner
    return naming.is_ours(resource.name, owner)


def cleanup(ctx: Context, dry_run: bool = False) -> dict:
    """Delete (or, with ``dry_run``, list) this owner's resources; return counts by kind."""
    ours = [r for r in ctx.platform.list_resources() if is_owned(r, ctx.owner)]
    ours.sort(key=lambda r: (_ORDER.get(r.kind, 9), r.name))
    counts: dict[str, int] = {}
    export_root = exports.export_root(ctx) if not dry_run and any(r.kind == "dataset" for r in ours) else ""
    for r in ours:
        log.info("%s %s %s (%s)", "would delete" if dry_run else "deleting", r.kind, r.name, r.id)
        if not dry_run:
            ctx.platform.delete_resource(r)
            if r.kind == "dataset":
                _remove_files(storage.dataset_folder(export_root, ctx.settings.cloud.export_path, r.id))
        counts[r.kind] = counts.get(r.kind, 0) + 1
    if not dry_run:
        _remove_files(storage.join(ctx.settings.storage_url, ctx.settings.cloud.import_path,
                                   naming.scores_folder(ctx.owner)))
    if mlflow.active_run() is not None:
        tracking.log_dict([{"kind": r.kind, "id": r.id, "name": r.name} for r in ours], "cleanup/resources.json")
        mlflow.log_metric("resources_deleted", 0 if dry_run else len(ours))
    return {"dry_run": dry_run, "resources": len(ours), "by_kind": counts}


def _remove_files(folder: str) -> None:
    """Remove a folder of exported or score files this package wrote, if it exists. Where
    the storage refuses (a landing zone whose credentials may only read), say so and go on:
    AEP deletes Data Landing Zone files after seven days."""
    fs, path = storage.filesystem(folder)
    try:
        if fs.exists(path):
            log.info("removing files under %s", folder)
            fs.rm(path, recursive=True)
    except (PermissionError, OSError) as exc:
        log.warning("could not remove %s (%s); remove it by hand (AEP deletes Data Landing Zone files after "
                    "seven days)", folder, exc)


STAGE = Stage(
    name="cleanup",
    func=cleanup,
    params=(Param("dry_run", bool, False, "list what would be deleted, delete nothing"),),
    help="Delete every platform resource this owner created (by the platform's ownership record).",
)
