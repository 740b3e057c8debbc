"""Batch scoring on Spark with ``mlflow.pyfunc.spark_udf``, writing the same score files as
:mod:`cmle.scoring.batch`.

The registered pyfunc returns a DataFrame of its five output columns; ``spark_udf`` returns
it as a struct whose type comes from the model's output signature. (Asking for the
propensity alone takes the one-column ``double`` path, the cheapest a UDF can return.)
Each Spark task writes its partition's score rows with pyarrow, as
``part-<partition>-<n>.parquet`` in the run's folder, with the schema and Parquet metadata of
the local path, and returns its partition's summary; the driver checks the row count and
publishes the folder atomically (:func:`cmle.storage.atomic_export_folder`). The checks that
can fail on the inputs (signature columns, the model's outputs) run on the driver first, on
the first rows, so a bad model or scoring set writes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import pickle
import re
from typing import TYPE_CHECKING, Iterator, Sequence

import pyarrow as pa

from cmle import storage
from cmle.columns import ID_COLUMN, OUTPUT_COLUMNS
from cmle.errors import CmleError, DataCheckError, RegistryError
from cmle.scoring import batch
from cmle.scoring.model_ref import ModelRef
from cmle.scoring.schema import SCORE_SCHEMA, score_table
from cmle.scoring.summary import ScoreSummary

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

PROPENSITY = ("propensity",)
# Signature type -> Spark SQL type (what spark_udf returns and the inputs are cast to).
_SPARK_TYPES = {"double": "double", "float": "float", "long": "bigint", "integer": "int", "string": "string",
                "boolean": "boolean", "datetime": "timestamp", "binary": "binary"}
# What each task reports back to the driver.
_RESULT_DDL = "rows long, files array<string>, summary binary, factors binary"
_FIRST_ROWS = 1_000


def result_type(model, columns: Sequence[str] = OUTPUT_COLUMNS) -> str:
    """The ``spark_udf`` result type for ``columns`` of the model's output signature.

    One numeric column is the plain ``double`` path; several are a struct
    (``"propensity double, score bigint, ..."``) in the signature's types.
    """
    schema = model.metadata.get_output_schema()
    if schema is None or not schema.has_input_names():
        raise RegistryError("the model has no output signature with column names; register it with one (train does)")
    types = {spec.name: str(getattr(spec.type, "name", spec.type)) for spec in schema.inputs}
    missing = [c for c in columns if c not in types]
    if missing:
        raise RegistryError(f"the model's output signature {list(types)} lacks {missing}")
    if tuple(columns) == PROPENSITY:
        return "double"
    return ", ".join(f"{c} {_SPARK_TYPES.get(types[c], types[c])}" for c in columns)


def input_columns(inputs: dict[str, str]) -> list["Column"]:
    """The model's input columns cast to their signature types (as the local path casts each batch)."""
    from pyspark.sql import functions as F

    return [F.col(f"`{c}`").cast(_SPARK_TYPES.get(t, "string")).alias(c) for c, t in inputs.items()]


def score_frame(spark: "SparkSession", model, ref: ModelRef, source_url: str, inputs: dict[str, str],
                columns: Sequence[str] = OUTPUT_COLUMNS, keep_inputs: bool = False) -> "DataFrame":
    """``userid`` and the model's ``columns`` for every row of the export at ``source_url`` (lazy),
    followed by the model's input columns when ``keep_inputs`` (to explain the rows)."""
    import mlflow
    from pyspark.sql import functions as F

    from cmle.spark import read

    rows = read(spark, source_url)  # first: a session that cannot read the storage fails before the UDF is built
    udf = mlflow.pyfunc.spark_udf(spark, ref.uri, result_type=result_type(model, columns), env_manager="local")
    prediction = udf(F.struct(*input_columns(inputs)))
    ident = F.col(ID_COLUMN).cast("string").alias(ID_COLUMN)
    if tuple(columns) == PROPENSITY:
        return rows.select(ident, prediction.alias("propensity"))
    extra = input_columns(inputs) if keep_inputs else []
    return rows.select(ident, prediction.alias("_out"), *extra).select(
        ID_COLUMN, *[F.col(f"_out.{c}").alias(c) for c in columns], *[F.col(f"`{c}`") for c in inputs if keep_inputs])


def merge_summaries(parts: Sequence[ScoreSummary]) -> ScoreSummary:
    """One summary of several partitions' summaries."""
    out = ScoreSummary()
    for s in parts:
        out.rows += s.rows
        out.score_counts = out.score_counts + s.score_counts
        for bucket, count in s.bucket_counts.items():
            out.bucket_counts[bucket] = out.bucket_counts.get(bucket, 0) + count
        out.propensity_sum += s.propensity_sum
        out.propensity_min = min(out.propensity_min, s.propensity_min)
        out.propensity_max = max(out.propensity_max, s.propensity_max)
    return out


def _write_partition(batches: Iterator[pa.RecordBatch], target: str, meta: dict[str, str], compression: str,
                     model_name: str, model_version: str, score_date_us: int,
                     rows_per_file: int, explain: batch.FactorJob | None = None,
                     inputs: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """(Runs in a Spark task.) Write one partition's score rows, with their factors when
    ``explain`` is given, into ``target``; yield its summary (and its factors' global view)."""
    import fsspec
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    partition = TaskContext.get().partitionId()
    schema = SCORE_SCHEMA.with_metadata(meta)
    score_date = pa.scalar(score_date_us, SCORE_SCHEMA.field("score_date").type)
    summary, files = ScoreSummary(), []
    writer = handle = None
    room = 0  # rows the open file still takes
    try:
        for rb in batches:
            if not rb.num_rows:
                continue
            factors = explain.factors(rb.select(list(inputs)).to_pandas()) if explain is not None else None
            table = score_table(rb.select(list(OUTPUT_COLUMNS)).to_pandas(), rb.column(ID_COLUMN), model_name,
                                model_version, score_date, factors=factors).replace_schema_metadata(schema.metadata)
            summary.add(table)
            while table.num_rows:
                if writer is None:
                    path = storage.join(target, f"part-{partition:05d}-{len(files):03d}.parquet")
                    handle = fsspec.open(path, "wb").open()
                    writer = pq.ParquetWriter(handle, schema,
                                              compression=None if compression == "none" else compression)
                    files.append(path)
                    room = rows_per_file
                writer.write_table(table.slice(0, room))
                written = min(room, table.num_rows)
                table, room = table.slice(written), room - written
                if room == 0:
                    writer.close()
                    handle.close()
                    writer = handle = None
    finally:
        if writer is not None:
            writer.close()
            handle.close()
    view = pickle.dumps((explain.view, explain.seconds)) if explain is not None else b""
    yield pa.RecordBatch.from_pydict({"rows": [summary.rows], "files": [files], "summary": [pickle.dumps(summary)],
                                      "factors": [view]},
                                     schema=pa.schema([("rows", pa.int64()), ("files", pa.list_(pa.string())),
                                                       ("summary", pa.binary()), ("factors", pa.binary())]))


_TASK_ERROR = re.compile(r"cmle\.errors\.(\w+): (.+)")


def _task_error(exc: Exception) -> CmleError | None:
    """The CmleError a Spark task raised, rebuilt from the task's traceback text."""
    from cmle import errors

    match = _TASK_ERROR.search(str(exc))
    if not match:
        return None
    cls = getattr(errors, match.group(1), CmleError)
    return cls(match.group(2).strip()) if isinstance(cls, type) and issubclass(cls, CmleError) else None


def _check_first_rows(model, ref: ModelRef, source_url: str, inputs: dict[str, str]) -> None:
    """Score the first rows in-process, so a model or data problem fails before Spark writes anything."""
    rows = storage.iter_export_batches(source_url, batch_rows=_FIRST_ROWS, columns=[ID_COLUMN, *inputs])
    try:
        first = next(rows, None)
    finally:
        rows.close()
    if first is None:
        raise DataCheckError(f"the export {source_url} holds no row to score")
    now = pa.scalar(dt.datetime.now(dt.timezone.utc), SCORE_SCHEMA.field("score_date").type)
    batch.predict_batch(model, first, inputs, ref, now)


def score_export(ref: ModelRef, source: storage.ExportFolder, root: str, path: str, folder: str,
                 compression: str = "snappy", rows_per_file: int = batch.ROWS_PER_FILE,
                 when: dt.datetime | None = None, spark: "SparkSession | None" = None, model=None,
                 explain: batch.FactorJob | None = None, factors_asked: int | None = None) -> batch.ScoreRun:
    """Score every row of the export ``source`` with the version ``ref`` on Spark into a new
    score run under ``{root}/{path}/{folder}``: the same files, rows and guarantees as
    :func:`cmle.scoring.batch.score_export` (factors included: each task explains its rows)."""
    from cmle.scoring import model_ref
    from cmle.spark import get_spark

    spark = spark or get_spark(storage_url=root)
    model = model or model_ref.load(ref)
    inputs = batch.check_columns(batch.export_schema(source.url), model, ref.uri)
    _check_first_rows(model, ref, source.url, inputs)
    total = storage.count_rows(source.url)
    frame = score_frame(spark, model, ref, source.url, inputs, keep_inputs=explain is not None)
    meta = batch.run_metadata(ref, source, explain.k if explain is not None else 0, factors_asked)
    with storage.atomic_export_folder(root, path, folder, when=when) as (target, export_time):
        # Every row of a run carries the run's time: the exportTime of its folder.
        score_date = dt.datetime.strptime(export_time, storage.EXPORT_TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
        write = functools.partial(_write_partition, target=target, meta=meta, compression=compression,
                                  model_name=ref.name, model_version=ref.version,
                                  score_date_us=int(score_date.timestamp() * 1_000_000), rows_per_file=rows_per_file,
                                  explain=explain, inputs=tuple(inputs))
        try:
            results = frame.mapInArrow(write, _RESULT_DDL).collect()
        except Exception as exc:  # noqa: BLE001 - Spark wraps task errors; keep ours readable
            rebuilt = _task_error(exc)
            if rebuilt is None:
                raise
            raise rebuilt from None
        summary = merge_summaries([pickle.loads(r["summary"]) for r in results])
        if explain is not None:  # the tasks' global views and explaining time, into the driver's
            for r in results:
                if r["factors"]:
                    view, seconds = pickle.loads(r["factors"])
                    explain.view.merge(view)
                    explain.seconds += seconds
        if summary.rows != total:  # inside the folder's scope: a short run is never published
            raise DataCheckError(f"scored {summary.rows} rows of {total} in {source.url}")
        n_files = sum(len(r["files"]) for r in results)
    url = storage.join(storage.dataset_folder(root, path, folder), f"exportTime={export_time}")
    log.info("scored %d rows with %s on Spark into %s (%d files)", summary.rows, ref.uri, url, n_files)
    return batch.ScoreRun(url=url, export_time=export_time, rows=summary.rows, model_name=ref.name,
                          model_version=ref.version, source_dataset=meta[batch.META_SOURCE_DATASET],
                          source_export_time=source.export_time, files=tuple(storage.part_files(url)),
                          summary=summary, source_fingerprint=meta[batch.META_SOURCE_FINGERPRINT],
                          snapshot=meta[batch.META_SNAPSHOT], factors=int(meta[batch.META_FACTORS]),
                          factors_asked=int(meta[batch.META_FACTORS_ASKED]))
