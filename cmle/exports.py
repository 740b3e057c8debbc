"""Finding the newest export of a feature set (what `train` and `score` read)."""

from __future__ import annotations

from cmle import naming, storage
from cmle.context import Context
from cmle.errors import NotFoundError

KINDS = ("training", "scoring")


def feature_set_name(ctx: Context, kind: str, framing: str = "pit") -> str:
    if kind == "training":
        return naming.training_set(ctx.owner, framing)
    if kind == "scoring":
        return naming.scoring_set(ctx.owner)
    raise ValueError(f"unknown feature set kind {kind!r}")


def export_root(ctx: Context) -> str:
    """Root URL where the platform's dataset exports land.

    ``[Cloud] storage_url`` when set; otherwise, on AEP, the Data Landing Zone (whose
    short-lived credentials are handed to fsspec here), else the local default folder.
    """
    if ctx.settings.cloud.storage_url:
        return ctx.settings.storage_url
    landing_zone = getattr(ctx.platform, "configure_landing_zone", None)
    return landing_zone() if landing_zone is not None else ctx.settings.storage_url


def newest_feature_export(ctx: Context, kind: str, framing: str = "pit") -> storage.ExportFolder:
    """The newest complete export of the training or scoring set; a clear error if none."""
    name = feature_set_name(ctx, kind, framing)
    ds = ctx.platform.find_dataset(name)
    if ds is None:
        raise NotFoundError(f"the {kind} set {name!r} does not exist yet; run `featurize` then `export`")
    return storage.newest_export(export_root(ctx), ctx.settings.cloud.export_path, ds.id)
