"""Scoring an export in bounded memory and writing the score files, atomically.

The scoring set is read record batch by record batch (never the whole table), each batch
goes through the loaded pyfunc once, and the score rows stream into Parquet parts with a
``ParquetWriter``. Background threads read and convert the next batch and write the
previous one while the model scores the current one (at most four batches in memory:
being read, queued, being scored, being written). The parts land in
``{storage_url}/{import_path}/{scores_folder}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``,
laid out like AEP's exports and published atomically (:func:`cmle.storage.atomic_export_folder`):
a reader sees a whole score run or none of it, and a failed run leaves nothing behind.

Every check that can fail on the inputs (signature columns, the model's outputs on the
first batch) runs before the folder is opened, so such a failure writes nothing at all.
Each part carries in its Parquet metadata the model version and the scoring export it
came from (with a fingerprint of the export's content), which lets ``score`` recognise a
run it already did, even from a re-export of unchanged data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import logging
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cmle import storage
from cmle.columns import ID_COLUMN, SNAPSHOT_COLUMN
from cmle.errors import DataCheckError, RegistryError
from cmle.scoring.model_ref import ModelRef
from cmle.scoring.schema import SCORE_SCHEMA, score_table
from cmle.scoring.summary import ScoreSummary

log = logging.getLogger(__name__)
T = TypeVar("T")
_DONE = object()

DEFAULT_BATCH_ROWS = 100_000
ROWS_PER_FILE = 1_000_000  # parts stay far below AEP's 256 MB small-file limit

# Parquet key-value metadata of every score part: where the run came from.
META_MODEL_NAME = "cmle.model_name"
META_MODEL_VERSION = "cmle.model_version"
META_SOURCE_DATASET = "cmle.source_dataset"
META_SOURCE_EXPORT_TIME = "cmle.source_export_time"
META_SOURCE_FINGERPRINT = "cmle.source_fingerprint"
META_SNAPSHOT = "cmle.snapshot_ts"  # the scoring set's snapshot T (ISO 8601): where an outcome window starts
META_FACTORS = "cmle.factors"  # how many influential factors each row carries (0: none)
META_FACTORS_ASKED = "cmle.factors_asked"  # how many were asked for (a model that cannot be explained gets none)

# Signature types and the Arrow types a column may have for them.
_KINDS = {
    "double": "number", "float": "number", "long": "number", "integer": "number",
    "string": "string", "boolean": "boolean", "datetime": "datetime", "binary": "binary",
}


@dataclass(frozen=True)
class ScoreRun:
    """One score run: a complete ``exportTime=...`` folder of score files."""

    url: str
    export_time: str
    rows: int
    model_name: str
    model_version: str
    source_dataset: str
    source_export_time: str
    files: tuple[str, ...] = ()
    summary: ScoreSummary = field(default_factory=ScoreSummary, compare=False)
    reused: bool = False
    source_fingerprint: str = ""  # export_fingerprint() of the scoring export ("" if unknown)
    snapshot: str = ""  # the scoring set's snapshot T, ISO 8601 ("" if unknown: runs written before it was kept)
    factors: int = 0  # influential factors per row
    factors_asked: int = 0  # what the run was asked for


# --- the model's inputs -----------------------------------------------------------------
def signature_inputs(model, label: str) -> tuple[dict[str, str], set[str]]:
    """``({column: signature type}, required columns)`` of the model's input signature."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise RegistryError(f"{label} has no input signature with column names; "
                            "register the model with a signature (train does)")
    types = {spec.name: str(getattr(spec.type, "name", spec.type)) for spec in schema.inputs}
    required = {spec.name for spec in schema.inputs if getattr(spec, "required", True)}
    return types, required


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return str(t)


def check_columns(available: pa.Schema, model, label: str) -> dict[str, str]:
    """The model input columns to read from a scoring set with schema ``available``, with
    their signature types (in signature order).

    Raises :class:`DataCheckError` naming every missing required column and every column
    whose type cannot feed the signature, before anything is scored or written.
    """
    types, required = signature_inputs(model, label)
    names = set(available.names)
    problems = []
    if ID_COLUMN not in names:
        problems.append(f"the identity column {ID_COLUMN!r} is missing")
    missing = [c for c in types if c in required and c not in names]
    if missing:
        problems.append(f"columns the model needs are missing: {missing}")
    for col, sig_type in types.items():
        want = _KINDS.get(sig_type)
        if col in names and want is not None:
            have = _arrow_kind(available.field(col).type)
            boolean_as_number = want == "number" and have == "boolean"
            if have != want and not boolean_as_number:
                problems.append(f"column {col!r} is {available.field(col).type}, the model expects {sig_type}")
    if problems:
        raise DataCheckError(f"the scoring set does not match the input signature of {label}: "
                             + "; ".join(problems)
                             + ". Re-run featurize and export with the feature set the model was trained on, "
                               "or score with a matching model version (model=<version>)")
    return {c: t for c, t in types.items() if c in names}


# --- one batch --------------------------------------------------------------------------
_FLOATS = {"double": pa.float64(), "float": pa.float32()}
_INTS = {"long": pa.int64(), "integer": pa.int32()}


def _as_signature(batch: pa.RecordBatch, inputs: dict[str, str], label: str) -> pa.Table:
    """The input columns cast to the signature's numeric types.

    Without this the pandas dtype of a column would depend on the batch: an integer
    column is int64 in a batch without NULLs and float64 in one with, and MLflow's schema
    enforcement refuses int64 for a double input. Casting first makes every batch look alike.
    """
    table = pa.Table.from_batches([batch.select(list(inputs))])
    for i, (col, sig_type) in enumerate(inputs.items()):
        column = table.column(i)
        numeric = _arrow_kind(column.type) in ("number", "boolean")
        if sig_type in _FLOATS and column.type != _FLOATS[sig_type] and numeric:
            table = table.set_column(i, col, column.cast(_FLOATS[sig_type]))
        elif sig_type in _INTS and column.type != _INTS[sig_type] and pa.types.is_integer(column.type):
            table = table.set_column(i, col, column.cast(_INTS[sig_type]))
        if sig_type in _INTS and column.null_count:
            raise DataCheckError(f"column {col!r} holds NULLs in the scoring set but {label} expects {sig_type} "
                                 "(no missing values); retrain with a signature that allows them (double)")
    return table


def model_input(batch: pa.RecordBatch, inputs: dict[str, str], label: str) -> tuple[pa.Array, pd.DataFrame]:
    """``(profile ids, the model's input frame)`` of one record batch (``userid`` and the
    ``inputs`` columns with their signature types, as :func:`check_columns` returns them)."""
    return batch.column(ID_COLUMN), _as_signature(batch, inputs, label).to_pandas()


@dataclass
class FactorJob:
    """What ``score`` asks of the explainer: ``k`` factors per row, the global view, the time spent."""

    explainer: object  # cmle.explain.factors.Explainer
    k: int
    view: object  # cmle.explain.factors.GlobalView
    seconds: float = 0.0

    def factors(self, frame: pd.DataFrame) -> pa.Array:
        import time

        started = time.perf_counter()
        prepared = self.explainer.spec.prepare(frame)
        contributions = self.explainer.contributions(prepared)
        out = self.explainer.factors(prepared, self.k, contributions)
        self.view.add(contributions, prepared, self.explainer.spec)
        self.seconds += time.perf_counter() - started
        return out


def predict_frame(model, ids: pa.Array, frame: pd.DataFrame, ref: ModelRef, score_date: pa.Scalar,
                  explain: FactorJob | None = None) -> pa.Table:
    """Score rows for the profiles ``ids`` from the model's input ``frame`` (with their
    influential factors when ``explain`` is given)."""
    from mlflow.exceptions import MlflowException

    try:
        outputs = model.predict(frame)
    except MlflowException as exc:
        # MLflow's schema errors embed a repr of the data: keep only the reason.
        reason = str(exc.message).rsplit("Error: ", 1)[-1] if "Error: " in str(exc.message) else str(exc.message)
        raise DataCheckError(f"{ref.uri} refused the scoring data: {reason[:500]}") from None
    if not hasattr(outputs, "columns"):
        raise RegistryError(f"{ref.uri} returned {type(outputs).__name__}, not a DataFrame of "
                            "propensity, score, percentile, decile, bucket")
    factors = explain.factors(frame) if explain is not None else None
    return score_table(outputs, ids, ref.name, ref.version, score_date, factors=factors)


def predict_batch(model, batch: pa.RecordBatch, inputs: dict[str, str], ref: ModelRef,
                  score_date: pa.Scalar, explain: FactorJob | None = None) -> pa.Table:
    """Score rows for one record batch: :func:`model_input` then :func:`predict_frame`."""
    ids, frame = model_input(batch, inputs, ref.uri)
    return predict_frame(model, ids, frame, ref, score_date, explain)


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced up to ``depth`` ahead by a background thread.

    Reading and converting the next batch (Arrow releases the GIL) then overlaps scoring
    this one, which is partly single-threaded. An error in the producer is raised here;
    stopping early (an error while scoring) stops the producer and closes ``items``.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="cmle-score-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


# --- files ------------------------------------------------------------------------------
class _PartWriter:
    """Parquet parts of at most ``rows_per_file`` rows in ``folder`` (local path or URL)."""

    def __init__(self, folder: str, schema: pa.Schema, rows_per_file: int, compression: str):
        self.folder, self.schema, self.rows_per_file = folder, schema, rows_per_file
        self.compression = None if compression == "none" else compression
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._handle = None
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        table = table.replace_schema_metadata(self.schema.metadata)
        while table.num_rows:
            if self._writer is None:
                self._open()
            take = min(table.num_rows, self.rows_per_file - self._rows)
            self._writer.write_table(table.slice(0, take))
            self._rows += take
            table = table.slice(take)
            if self._rows >= self.rows_per_file:
                self.close()

    def _open(self) -> None:
        import fsspec

        path = storage.join(self.folder, f"part-{len(self.files):05d}.parquet")
        self._handle = fsspec.open(path, "wb").open()
        self._writer = pq.ParquetWriter(self._handle, self.schema, compression=self.compression)
        self.files.append(path)
        self._rows = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._handle.close()
            self._writer = self._handle = None


def _first_batch(url: str, columns: list[str] | None = None) -> pa.RecordBatch | None:
    batches = storage.iter_export_batches(url, batch_rows=1, columns=columns)
    try:
        return next(batches, None)
    finally:
        batches.close()


def export_schema(url: str) -> pa.Schema:
    """Schema (with metadata) of an export's first part; DataCheckError when it holds no row."""
    first = _first_batch(url)
    if first is None:
        raise DataCheckError(f"the export {url} holds no row to score")
    return first.schema


def export_fingerprint(url: str) -> str:
    """A short fingerprint of an export's content: the Parquet footers of its parts (row
    counts, per-column statistics and sizes). Re-exporting unchanged data gives the same
    files, hence the same fingerprint, under a new export time."""
    fs, _ = storage.filesystem(url)
    digest = hashlib.sha256()
    for f in storage.part_files(url):
        with fs.open(f, "rb") as fh:
            footer = pq.read_metadata(fh).to_dict()
        digest.update(json.dumps(footer, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def dataset_of(export_url: str) -> str:
    """The dataset id of an ``.../{dataset_id}/exportTime=...`` folder."""
    return export_url.rstrip("/").rsplit("/", 2)[-2]


def export_snapshot(url: str) -> str:
    """The snapshot T (ISO 8601, UTC) of a feature-set export, from its first row; "" if unknown."""
    try:
        first = _first_batch(url, columns=[SNAPSHOT_COLUMN])
    except Exception:  # noqa: BLE001 - an export without the column (or unreadable) has no known T
        return ""
    if first is None or not first.num_rows:
        return ""
    value = first.column(0)[0].as_py()
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat()
    return str(value)


def run_metadata(ref: ModelRef, source: storage.ExportFolder, factors: int = 0, asked: int | None = None) -> dict[str, str]:
    """What every score file of a run records of where it came from (the Parquet metadata
    :func:`read_run` and :func:`same_run` read back), whatever engine scored it."""
    return {META_MODEL_NAME: ref.name, META_MODEL_VERSION: ref.version,
            META_SOURCE_DATASET: dataset_of(source.url), META_SOURCE_EXPORT_TIME: source.export_time,
            META_SOURCE_FINGERPRINT: export_fingerprint(source.url), META_SNAPSHOT: export_snapshot(source.url),
            META_FACTORS: str(int(factors)), META_FACTORS_ASKED: str(int(factors if asked is None else asked))}


def _score_date(export_time: str | None) -> pa.Scalar:
    """The score date of a run: its export time (UTC), or now while that is not known yet."""
    when = (dt.datetime.strptime(export_time, storage.EXPORT_TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
            if export_time else dt.datetime.now(dt.timezone.utc))
    return pa.scalar(when, SCORE_SCHEMA.field("score_date").type)


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc="scoring",
                disable=not sys.stderr.isatty() or total < 10 * DEFAULT_BATCH_ROWS)


def score_export(model, ref: ModelRef, source: storage.ExportFolder, root: str, path: str, folder: str,
                 batch_rows: int = DEFAULT_BATCH_ROWS, compression: str = "snappy",
                 rows_per_file: int = ROWS_PER_FILE, when: dt.datetime | None = None,
                 explain: FactorJob | None = None, factors_asked: int | None = None) -> ScoreRun:
    """Score every row of the export ``source`` with ``model`` (the version ``ref``) into a new
    score run under ``{root}/{path}/{folder}`` (each row with its top ``explain.k`` factors
    when ``explain`` is given); see the module docstring for the guarantees."""
    inputs = check_columns(export_schema(source.url), model, ref.uri)
    columns = [ID_COLUMN, *inputs]
    total = storage.count_rows(source.url)
    meta = run_metadata(ref, source, explain.k if explain is not None else 0, factors_asked)
    summary = ScoreSummary()
    # closing(): an error stops the prefetching thread and closes the file at once.
    with contextlib.closing(prefetched(model_input(b, inputs, ref.uri) for b in storage.iter_export_batches(
            source.url, batch_rows=batch_rows, columns=columns))) as batches:
        first_scores = predict_frame(model, *next(batches), ref, _score_date(None), explain)  # fails before any write
        with storage.atomic_export_folder(root, path, folder, when=when) as (target, export_time):
            # Every row of a run carries the run's time: the exportTime of its folder.
            score_date = _score_date(export_time)
            first_scores = first_scores.set_column(first_scores.schema.get_field_index("score_date"), "score_date",
                                                   pa.repeat(score_date, first_scores.num_rows))
            rest = (predict_frame(model, ids, frame, ref, score_date, explain) for ids, frame in batches)
            writer = _PartWriter(target, SCORE_SCHEMA.with_metadata(meta), rows_per_file, compression)

            def write(scores: pa.Table) -> None:
                writer.write(scores)
                summary.add(scores)
                bar.update(scores.num_rows)

            # Batch i is written (in a second thread) while batch i+1 is scored; one write at a time.
            try:
                with _progress(total) as bar, ThreadPoolExecutor(1, thread_name_prefix="cmle-score-write") as pool:
                    pending = None
                    for scores in itertools.chain([first_scores], rest):
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(write, scores)
                    if pending is not None:
                        pending.result()
            finally:
                writer.close()
            if summary.rows != total:  # inside the folder's scope: a short run is never published
                raise DataCheckError(f"scored {summary.rows} rows of {total} in {source.url}")
            n_files = len(writer.files)
    url = storage.join(storage.dataset_folder(root, path, folder), f"exportTime={export_time}")
    log.info("scored %d rows with %s into %s (%d files)", summary.rows, ref.uri, url, n_files)
    return ScoreRun(url=url, export_time=export_time, rows=summary.rows, model_name=ref.name,
                    model_version=ref.version, source_dataset=meta[META_SOURCE_DATASET],
                    source_export_time=source.export_time, files=tuple(storage.part_files(url)),
                    summary=summary, source_fingerprint=meta[META_SOURCE_FINGERPRINT], snapshot=meta[META_SNAPSHOT],
                    factors=int(meta[META_FACTORS]), factors_asked=int(meta[META_FACTORS_ASKED]))


# --- existing runs ----------------------------------------------------------------------
def read_run(url: str, export_time: str, summarize: bool = True) -> ScoreRun:
    """A score run written earlier, from its folder (its summary re-counted when asked)."""
    meta = {k.decode(): v.decode() for k, v in (export_schema(url).metadata or {}).items()}
    summary = ScoreSummary()
    if summarize:
        for batch in storage.iter_export_batches(url, batch_rows=ROWS_PER_FILE,
                                                 columns=["propensity", "score", "bucket"]):
            summary.add(batch)
    return ScoreRun(url=url, export_time=export_time, rows=storage.count_rows(url),
                    model_name=meta.get(META_MODEL_NAME, ""), model_version=meta.get(META_MODEL_VERSION, ""),
                    source_dataset=meta.get(META_SOURCE_DATASET, ""),
                    source_export_time=meta.get(META_SOURCE_EXPORT_TIME, ""),
                    files=tuple(storage.part_files(url)), summary=summary, reused=True,
                    source_fingerprint=meta.get(META_SOURCE_FINGERPRINT, ""), snapshot=meta.get(META_SNAPSHOT, ""),
                    factors=int(meta.get(META_FACTORS, "0") or 0),
                    factors_asked=int(meta.get(META_FACTORS_ASKED, meta.get(META_FACTORS, "0")) or 0))


def find_score_run(root: str, path: str, folder: str, export_time: str = "",
                   summarize: bool = False) -> ScoreRun | None:
    """The score run at ``export_time`` (the newest when empty), or None when there is none."""
    runs = storage.list_exports(root, path, folder)
    if export_time:
        runs = [r for r in runs if r.export_time == export_time]
    if not runs:
        return None
    return read_run(runs[-1].url, runs[-1].export_time, summarize=summarize)


def same_run(run: ScoreRun, ref: ModelRef, source: storage.ExportFolder, factors: int = 0) -> bool:
    """True when ``run`` scored the content of the export ``source`` with exactly the version
    ``ref`` and ``factors`` factors per row: the same export, or a later export of unchanged
    data (same fingerprint)."""
    if (run.model_name, run.model_version, run.source_dataset) != (ref.name, ref.version, dataset_of(source.url)):
        return False
    if run.factors_asked != factors:
        return False
    if run.source_export_time == source.export_time:
        return True
    return bool(run.source_fingerprint) and run.source_fingerprint == export_fingerprint(source.url)
