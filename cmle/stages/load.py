"""Stage ``load``: a customer's AEP export into the embedded platform, so the same model spec
runs on a laptop before it runs on AEP.

Reads XDM rows exported from AEP (Parquet, or JSON lines; nested objects, arrays such as
``productListItems``, ``identityMap``), keeps them in AEP's Parquet shape
(:mod:`cmle.loading`) and ingests them as ONE batch into the dataset the model spec names
(``events.dataset``, or ``profiles.dataset`` with ``kind = profiles``; ``dataset`` overrides).
Rows the platform could not use (no identity as the spec reads it; events also no
timestamp) are not loaded and are reported with their count per reason, in the outputs,
the log and the MLflow run (``load/rejected.parquet``); above ``max_bad_share`` nothing is
loaded. Re-running with the same files finds the batch and loads nothing; other files
replace the dataset's content (``mode = append`` adds them instead).

On AEP the data is already in the sandbox: name its dataset in the spec.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import pyarrow.parquet as pq

from cmle import ingestion, loading, modelspec
from cmle.context import Context
from cmle.errors import DataCheckError, ParameterError
from cmle.modelspec.paths import Identity, PathError
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)

KINDS = ("events", "profiles")
MODES = ("replace", "append")
FILE_ROWS = 500_000
REJECTED_SAMPLE = 10_000  # rejected rows kept in the run, at most


def _identity(text: str, spec: modelspec.ModelSpec, kind: str) -> Identity:
    if text.strip():
        from cmle.explore.discover import parse_identity
        from cmle.modelspec.paths import FieldPath, check_namespace

        ident = parse_identity(text)
        try:
            if "field" in ident:
                return Identity(namespace="ECID", field=FieldPath.parse(ident["field"]))
            return Identity(namespace=check_namespace(ident["namespace"]))
        except PathError as exc:
            raise ParameterError(f"load: identity = {text!r}: {exc}") from None
    if kind == "profiles" and spec.profiles is not None:
        return spec.profiles.identity
    return spec.events.identity


def _dataset_name(name: str, spec: modelspec.ModelSpec, kind: str) -> str:
    if name.strip():
        return name.strip()
    ref = spec.events.dataset if kind == "events" else (spec.profiles.dataset if spec.profiles else None)
    if ref is None or not ref.name:
        raise ParameterError(f"load: name the {kind} dataset (dataset=...), or use a model spec that names it by "
                             f"name ({kind}.dataset; the synthetic spec's datasets come from the synthetic stage)")
    return ref.name


def load(ctx: Context, files: str = "", kind: str = "events", dataset: str = "", identity: str = "",
         format: str = "auto", mode: str = "replace", max_bad_share: float = 0.05, spec: str = "") -> dict:  # noqa: A002
    """Load the export ``files`` into a dataset of the embedded platform; returns what was loaded and rejected."""
    if ctx.platform.backend != "local":
        raise ParameterError(f"load: puts an export into the embedded platform; on {ctx.platform.backend} your data "
                             "is already in the sandbox: name its dataset in the model spec (events.dataset)")
    if not files.strip():
        raise ParameterError("load: files is required: the export's files, folders or patterns, comma-separated")
    if not 0.0 <= max_bad_share <= 1.0:
        raise ParameterError(f"load: max_bad_share = {max_bad_share} must be between 0 and 1")
    model = modelspec.spec_for(ctx.settings, spec)
    name = _dataset_name(dataset, model, kind)
    ident = _identity(identity, model, kind)
    ts = model.events.timestamp if kind == "events" else None
    tenant = ctx.platform.tenant_id
    paths = loading.find_files(files)
    key = "load:" + loading.files_key(paths, name, kind, ident.text, ts.text if ts else "", format)

    table = loading.read_export(paths, format, ts.resolve(tenant).top if ts else None)
    checked = loading.split_bad_rows(table, ident, tenant, ts)
    good = checked.good
    filled = 0
    if kind == "events":
        good, filled = loading.with_event_ids(good)
    bad_share = checked.bad.num_rows / checked.rows if checked.rows else 0.0
    report = ", ".join(f"{n} {reason}" for reason, n in checked.reasons.items()) or "none"
    log.info("load: %d rows read from %d files; %d rejected (%s)", checked.rows, len(paths), checked.bad.num_rows,
             report)
    rejected_path = _log_rejected(checked)
    if mlflow.active_run() is not None:
        mlflow.log_metrics({"rows_read": checked.rows, "rows_loaded": good.num_rows,
                            "rows_rejected": checked.bad.num_rows, "ids_filled": filled,
                            **{f"rejected_{r.replace(' ', '_')}": n for r, n in checked.reasons.items()}})
    if bad_share > max_bad_share:
        raise DataCheckError(f"load: {checked.bad.num_rows} of {checked.rows} rows ({bad_share:.1%}) cannot be loaded "
                             f"({report}), more than max_bad_share={max_bad_share:.0%}: nothing was loaded. Check "
                             f"the identity ({ident.text}) and timestamp fields, or raise max_bad_share")
    if good.num_rows == 0:
        raise DataCheckError(f"load: no row of {files!r} can be loaded ({report})")

    platform = ctx.platform
    xdm_class = EXPERIENCE_EVENT if kind == "events" else PROFILE
    existing = None
    ds = platform.find_dataset(name)
    if ds is not None:
        existing = ingestion.find_batch(platform, ds.id, key)
    ds = platform.get_or_create_loaded_dataset(name, xdm_class, new_schema=(mode == "replace" and existing is None))
    current = platform.arrow_schema(ds.id)
    if mode == "append" and current is not None:  # batches of a dataset share its columns
        good = loading.conform(good, current)
    result = ingestion.ingest_tables(platform, ds.id, ingestion.split_table(good, FILE_ROWS), key=key,
                                     replace=mode == "replace", file_prefix=kind)
    out = {"dataset_id": ds.id, "dataset_name": ds.name, "table": ds.table, "kind": kind, "files": len(paths),
           "rows_read": checked.rows, "rows_loaded": result.batch.records, "rows_rejected": checked.bad.num_rows,
           "rejected": checked.reasons, "ids_filled": filled, "batch_id": result.batch.id, "reused": result.reused,
           "identity": ident.text}
    if rejected_path:
        out["rejected_rows"] = rejected_path
    log.info("load: %d rows in dataset %r (%s)%s", result.batch.records, ds.name, ds.id,
             " (already loaded)" if result.reused else "")
    return out


def _log_rejected(checked: loading.Checked) -> str:
    """The first rejected rows, kept with the run as load/rejected.parquet."""
    if not checked.bad.num_rows or mlflow.active_run() is None:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rejected.parquet"
        pq.write_table(checked.bad.slice(0, REJECTED_SAMPLE), path)
        mlflow.log_artifact(str(path), artifact_path="load")
    return f"runs:/{mlflow.active_run().info.run_id}/load/rejected.parquet"


STAGE = Stage(
    name="load",
    func=load,
    params=(
        Param("files", str, "", "the export: files, folders or glob patterns, comma-separated (Parquet or JSON lines)"),
        Param("kind", str, "events", "events (ExperienceEvent rows) or profiles", choices=KINDS),
        Param("dataset", str, "", "dataset name; empty: the spec's events.dataset (profiles.dataset)"),
        Param("identity", str, "", "who a row belongs to: a field path or an identityMap namespace (ECID); "
              "empty: the spec's"),
        Param("format", str, "auto", "parquet, jsonl, or auto (by file name)", choices=loading.FORMATS),
        Param("mode", str, "replace", "replace the dataset's content, or append to it", choices=MODES),
        Param("max_bad_share", float, 0.05, "load nothing when more than this share of rows has no identity or "
              "timestamp"),
        SPEC_PARAM,
    ),
    help="Load your AEP export (XDM rows as Parquet or JSON lines) into the embedded platform as the dataset your "
         "model spec names; rows without identity or timestamp are reported, not loaded.",
)
