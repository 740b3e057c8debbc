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

With ``scores`` (a CSV or Parquet file of a model trained elsewhere, DataRobot-style), that
file is ingested instead: it is checked against the score-file contract
(:mod:`cmle.scoring.external`; every id must be a profile of the spec's profiles dataset),
score, percentile, decile and bucket are derived as for cmle's own model, and the rows go in
as one batch tagged by the file's content, so the same file is never ingested twice. A file
that breaks the contract is refused with its first bad rows before anything is created. The
run records where the scores came from (tags ``cmle.scores_source = external``, the model's
name and version, the file's location and fingerprint).
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq

from cmle import modelspec, naming, storage, tracking
from cmle.columns import FACTORS_COLUMN, ID_COLUMN
from cmle.context import Context
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.ingestion import ingest_tables, split_table
from cmle.modelspec import data as specdata
from cmle.platform.base import PROFILE, Dataset, Platform
from cmle.scoring import batch, external, known_ids
from cmle.scoring.schema import SCORE_COLUMNS, SCORE_SCHEMA, XDM_FIELDS, to_xdm
from cmle.scoring.summary import ScoreSummary, histogram_figure
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)


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


def ingest(ctx: Context, export_time: str = "", spec: str = "", scores: str = "", scores_columns: str = "",
           scores_model: str = "", scores_version: str = "") -> dict:
    settings = ctx.settings
    model_spec = modelspec.spec_for(settings, spec)
    namespace = model_spec.events.identity.namespace
    if scores.strip():
        if export_time.strip():
            raise ParameterError("ingest: give either scores (a file of external scores) or export_time (a score run "
                                 "of cmle's own model), not both")
        return ingest_external(ctx, model_spec, scores.strip(), scores_columns, scores_model, scores_version)
    if scores_columns.strip() or scores_model.strip() or scores_version.strip():
        raise ParameterError("ingest: scores_columns, scores_model and scores_version describe a scores file; pass "
                             "the file as scores=PATH")
    folder = naming.scores_folder(ctx.owner)
    run = batch.find_score_run(settings.storage_url, settings.cloud.import_path, folder, export_time.strip())
    if run is None:
        where = storage.dataset_folder(settings.storage_url, settings.cloud.import_path, folder)
        which = f"at exportTime={export_time}" if export_time.strip() else "yet"
        raise NotFoundError(f"no score run {which} under {where}; run `score` first"
                            + (" or pass an export_time listed there" if export_time.strip() else ""))
    check_score_files(run.url)  # a bad file fails here, before any batch exists
    platform = ctx.platform
    out = _ingest_scores(platform, ctx.owner, namespace, xdm_tables(run.url, platform.tenant_id),
                         key=f"scores:{run.export_time}", expected=run.rows, source=run.url)
    mlflow.set_tags({"cmle.scores_source": "cmle", "cmle.scores_export_time": run.export_time})
    return out | {"export_time": run.export_time, "scores_url": run.url, "model_version": run.model_version}


def _ingest_scores(platform: Platform, owner: str, namespace: str, tables: Iterable[pa.Table], key: str,
                   expected: int, source: str) -> dict:
    """Score tables (XDM shape) into the scores dataset as one batch tagged ``key``, checked
    to hold ``expected`` records; tagged and counted on the active run. Returns the stage's
    outputs about the batch."""
    ds = scores_dataset(platform, owner, namespace)
    result = ingest_tables(platform, ds.id, tables, key=key, file_prefix="scores")
    if result.batch.records != expected:
        raise DataCheckError(f"batch {result.batch.id} holds {result.batch.records} records, the scores of "
                             f"{source} {expected}; revert the batch and re-run ingest")
    mlflow.set_tags({"cmle.scores_dataset_id": ds.id, "cmle.scores_batch_id": result.batch.id})
    mlflow.log_metrics({"records": float(result.batch.records), "reused_batch": float(result.reused)})
    return {"dataset_id": ds.id, "dataset_name": ds.name, "batch_id": result.batch.id, "records": result.batch.records,
            "reused": result.reused, "identity_namespace": namespace}


def ingest_external(ctx: Context, model_spec: modelspec.ModelSpec, url: str, scores_columns: str = "",
                    scores_model: str = "", scores_version: str = "") -> dict:
    """Check a file of external scores against the contract, derive the score rows and ingest
    them as one batch keyed by the file's content; nothing is created for a bad file."""
    platform = ctx.platform
    sf = external.load(url, external.parse_column_map(scores_columns), scores_model, scores_version)
    known, identity, what = _known_profiles(ctx, model_spec)
    missing = known_ids.unknown_ids(platform, known.table, identity, external.lookup_ids(sf))
    external.check_known(sf, set(missing), f"the {what} dataset {known.name!r}")
    sf.raise_problems()
    rows = external.score_rows(sf)
    summary = ScoreSummary()
    summary.add(rows)
    tables = (to_xdm(t, platform.tenant_id) for t in split_table(rows, batch.ROWS_PER_FILE))
    namespace = model_spec.events.identity.namespace
    out = _ingest_scores(platform, ctx.owner, namespace, tables, key=external.ingestion_key(sf), expected=sf.rows,
                         source=sf.url)
    mlflow.set_tags({"cmle.scores_source": "external", "cmle.scores_file": sf.url,
                     "cmle.scores_file_fingerprint": sf.fingerprint, "cmle.scores_file_format": sf.kind,
                     "cmle.model_name": sf.model_name, "cmle.model_version": sf.model_version})
    mlflow.log_metrics({f"scores_{k}": v for k, v in summary.metrics().items()})
    tracking.log_table(summary.buckets_frame(), "scores/buckets.csv")
    tracking.log_figure(histogram_figure(summary, f"{sf.rows:,} profiles scored by {sf.model_name} "
                                                  f"{sf.model_version} (external)"), "scores/score_histogram.png")
    log.info("ingest: %d external scores of %s %s from %s %s (batch %s)", sf.rows, sf.model_name,
             sf.model_version, sf.url, "found already ingested" if out["reused"] else "ingested", out["batch_id"])
    return out | {"source": "external", "scores_file": sf.url, "scores_fingerprint": sf.fingerprint,
                  "model_name": sf.model_name, "model_version": sf.model_version, "ignored_columns": list(sf.ignored)}


def _known_profiles(ctx: Context, model_spec: modelspec.ModelSpec) -> tuple[Dataset, str, str]:
    """The dataset whose identities a score's profile id must be among, the SQL of the
    identity, and which of the spec's datasets it is: its profiles dataset, or its events
    dataset for a spec without profiles."""
    tenant = ctx.platform.tenant_id
    profiles = specdata.dataset_of(ctx.platform, model_spec, ctx.owner, "profiles")
    if profiles is not None:
        return profiles, model_spec.profiles.identity.resolve(tenant).sql(), "profiles"
    events = specdata.dataset_of(ctx.platform, model_spec, ctx.owner, "events")
    return events, model_spec.events.identity.resolve(tenant).sql(), "events"


STAGE = Stage(
    name="ingest",
    func=ingest,
    params=(
        Param("export_time", str, "",
              "exportTime (YYYYMMDDHHMMSS) of the score run to ingest; empty = the newest"),
        SPEC_PARAM,
        Param("scores", str, "", "a file of scores from a model trained elsewhere (CSV or Parquet, local path or "
              "storage URL: userid, propensity, optionally model_name, model_version, score_date), checked against "
              "the score-file contract and ingested instead of a score run; see docs/external-scores.md"),
        Param("scores_columns", str, "", "with scores: the file's column names for the contract's, e.g. "
              "'userid=customer_id,propensity=PREDICTION'"),
        Param("scores_model", str, "", "with scores: the model name the scores are credited to (default: the "
              "file's model_name column, else 'external')"),
        Param("scores_version", str, "", "with scores: the model version (default: the file's model_version "
              "column, else 'file-' and the file's fingerprint)"),
    ),
    help="Ingest one score run into the profile-enabled scores dataset as one batch (get-or-create the "
         "schema and dataset; never twice for the same run), or a file of scores from an external model "
         "(scores=PATH).",
)
