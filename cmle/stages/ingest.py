"""Stage ``ingest``: the score files of one score run into the profile-enabled scores dataset.

Gets or creates the scores field group (the score fields under ``_{tenant}``), the
Profile schema (primary identity on ``_{tenant}.userid`` in the model spec's identity
namespace, ECID for the synthetic data, so scores land on the user's profiles; enabled for
Profile) and the
profile-enabled scores dataset, then ingests the newest score run (or the one at
``export_time``) as ONE batch tagged ``scores:{export_time}`` and waits for a terminal
status. Re-running for the same score run finds that batch and ingests nothing (AEP
advises at most one Profile batch per dataset a day, 90 a sandbox). On Profile, the newest
batch wins per identity, so audiences see each profile's latest score.
"""

from __future__ import annotations

from typing import Iterator

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq

from cmle import modelspec, naming, storage
from cmle.columns import FACTORS_COLUMN, ID_COLUMN
from cmle.context import Context
from cmle.errors import DataCheckError, NotFoundError
from cmle.ingestion import ingest_tables
from cmle.platform.base import PROFILE, Dataset, Platform
from cmle.scoring import batch
from cmle.scoring.schema import SCORE_COLUMNS, SCORE_SCHEMA, XDM_FIELDS, to_xdm
from cmle.stages import SPEC_PARAM, Param, Stage


def scores_dataset(platform: Platform, owner: str, namespace: str = "ECID") -> Dataset:
    """Get or create the scores field group, Profile schema (primary identity ``_{tenant}.userid``
    in ``namespace``, the model spec's identity namespace, so that scores join the profiles
    the events belong to) and profile-enabled dataset."""
    fg = platform.get_or_create_field_group(naming.score_field_group(owner), XDM_FIELDS, PROFILE)
    schema_id = platform.get_or_create_schema(naming.score_schema(owner), PROFILE, [fg],
                                              identity_field=ID_COLUMN, profile_enabled=True,
                                              identity_namespace=namespace)
    return platform.get_or_create_dataset(naming.scores_dataset(owner), schema_id, profile_enabled=True)


def xdm_tables(url: str, tenant_id: str, rows_per_file: int = batch.ROWS_PER_FILE) -> Iterator[pa.Table]:
    """The score files of a run in the XDM shape, one table (one uploaded file) at a time
    (runs scored before factors existed get none)."""
    names = set(batch.export_schema(url).names)
    columns = [c for c in SCORE_COLUMNS if c in names]
    for rb in storage.iter_export_batches(url, batch_rows=rows_per_file, columns=columns):
        table = pa.Table.from_batches([rb])
        if FACTORS_COLUMN not in names:
            table = table.append_column(FACTORS_COLUMN, pa.nulls(table.num_rows, SCORE_SCHEMA.field(FACTORS_COLUMN).type))
        yield to_xdm(table, tenant_id)


def check_score_files(url: str) -> None:
    """Every part of a score run is readable Parquet with the score columns (footers only)."""
    fs, _ = storage.filesystem(url)
    for f in storage.part_files(url):
        with fs.open(f, "rb") as fh, storage.unreadable_file(f):
            names = set(pq.read_schema(fh).names)
        missing = [c for c in SCORE_COLUMNS if c not in names and c != FACTORS_COLUMN]
        if missing:
            raise DataCheckError(f"score file {f} lacks the columns {missing}; it was not written by `score`: "
                                 "remove its folder and run score again")


def ingest(ctx: Context, export_time: str = "", spec: str = "") -> dict:
    settings = ctx.settings
    namespace = modelspec.spec_for(settings, spec).events.identity.namespace
    folder = naming.scores_folder(ctx.owner)
    run = batch.find_score_run(settings.storage_url, settings.cloud.import_path, folder, export_time.strip())
    if run is None:
        where = storage.dataset_folder(settings.storage_url, settings.cloud.import_path, folder)
        which = f"at exportTime={export_time}" if export_time.strip() else "yet"
        raise NotFoundError(f"no score run {which} under {where}; run `score` first"
                            + (" or pass an export_time listed there" if export_time.strip() else ""))
    check_score_files(run.url)  # a bad file fails here, before any batch exists
    platform = ctx.platform
    ds = scores_dataset(platform, ctx.owner, namespace)
    result = ingest_tables(platform, ds.id, xdm_tables(run.url, platform.tenant_id),
                           key=f"scores:{run.export_time}", file_prefix="scores")
    if result.batch.records != run.rows:
        raise DataCheckError(f"batch {result.batch.id} holds {result.batch.records} records, the score run "
                             f"{run.url} {run.rows}; revert the batch and re-run ingest")
    mlflow.set_tags({"cmle.scores_dataset_id": ds.id, "cmle.scores_batch_id": result.batch.id,
                     "cmle.scores_export_time": run.export_time})
    mlflow.log_metrics({"records": float(result.batch.records), "reused_batch": float(result.reused)})
    return {
        "dataset_id": ds.id,
        "dataset_name": ds.name,
        "batch_id": result.batch.id,
        "records": result.batch.records,
        "reused": result.reused,
        "export_time": run.export_time,
        "scores_url": run.url,
        "model_version": run.model_version,
        "identity_namespace": namespace,
    }


STAGE = Stage(
    name="ingest",
    func=ingest,
    params=(
        Param("export_time", str, "",
              "exportTime (YYYYMMDDHHMMSS) of the score run to ingest; empty = the newest"),
        SPEC_PARAM,
    ),
    help="Ingest one score run into the profile-enabled scores dataset as one batch (get-or-create the "
         "schema and dataset; never twice for the same run).",
)
