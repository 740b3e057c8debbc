"""Scores from a model trained elsewhere (a DataRobot-style score file): the score-file
contract, its checks, and the score rows cmle derives from the file.

A score file is CSV (optionally gzip-compressed, ``.csv.gz``) or Parquet, a local path or
a storage URL (``s3://``, ``abfss://``, ``gs://``), one row per profile:

=================  ========  ===================================================
column             needed    meaning
=================  ========  ===================================================
``userid``         yes       the profile's identity, in the model spec's namespace
``propensity``     yes       P(goal): a finite number in [0, 1]
``model_name``     no        the model that scored the file (one value per file)
``model_version``  no        its version (one value per file)
``score_date``     no        when each row was scored (ISO 8601; UTC without offset)
``factors``        no        read, not ingested: the scores dataset has no factor fields
=================  ========  ===================================================

``scores_columns`` maps the file's own column names onto these
(``userid=customer_id,propensity=churned_1_PREDICTION``). Columns named ``score``,
``percentile``, ``decile`` or ``bucket`` are ignored: cmle derives them from the
propensity with the code its own model uses (:func:`cmle.model.scoring.outputs`), the
file's propensities being the reference population (an average profile of the file scores
50, percentile 99 means "more likely than 98-99 % of the file"). Other columns are ignored
and named in the log.

Every check runs before anything is ingested, and every failed check is reported at once
with its count and its first rows (``line N`` of a CSV file, ``row N`` of a Parquet file,
counting the first data row as 1), so one round of fixes makes the file pass.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cmle import storage
from cmle.columns import ID_COLUMN
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.model import scoring
from cmle.scoring.schema import SCORE_SCHEMA, score_table

log = logging.getLogger(__name__)

PROPENSITY = "propensity"
REQUIRED = (ID_COLUMN, PROPENSITY)
OPTIONAL = ("model_name", "model_version", "score_date", "factors")
CONTRACT = (*REQUIRED, *OPTIONAL)
DERIVED = ("score", "percentile", "decile", "bucket")  # cmle's to compute, never the file's
DEFAULT_MODEL_NAME = "external"
MAX_EXAMPLES = 5
MAX_ID_LENGTH = 256
# A profile id goes into SQL literals when it is looked up: quotes, backslashes and control
# characters are refused rather than escaped (Spark and DuckDB escape differently), as no
# identity namespace uses them.
_BAD_ID = re.compile(r"['\\\x00-\x1f\x7f]")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One kind of contract breach: how many rows, and the first of them."""

    what: str
    count: int
    examples: tuple[str, ...]

    def describe(self) -> str:
        more = f", ... ({self.count - len(self.examples)} more)" if self.count > len(self.examples) else ""
        what = self.what if self.count != 1 else re.sub(r"\b(rows|ids|values)\b", lambda m: m.group(1)[:-1],
                                                          self.what, count=1)
        return f"{self.count} {what} ({'; '.join(self.examples)}{more})"


@dataclass
class ScoreFile:
    """A score file that passed the contract (or is being checked against it)."""

    url: str
    kind: str  # csv | parquet
    fingerprint: str  # sha256 of the file's bytes (hex, 16 characters)
    ids: pa.Array  # string
    propensity: np.ndarray  # float64
    model_name: str = DEFAULT_MODEL_NAME
    model_version: str = ""
    score_date: pa.Array | None = None  # timestamp[us, UTC] per row, when the file has them
    ignored: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        """How a user finds row ``i`` (0-based) in the file."""
        return f"line {i + 2}" if self.kind == "csv" else f"row {i + 1}"

    def report(self, what: str, positions, show=None) -> None:
        """Record a problem covering the rows at ``positions`` (0-based), if any."""
        positions = np.asarray(positions, dtype="int64")
        if positions.size == 0:
            return
        show = show or (lambda i: "")
        examples = []
        for i in positions[:MAX_EXAMPLES]:
            detail = show(int(i))
            examples.append(f"{self.where(int(i))}" + (f": {detail}" if detail else ""))
        self.problems.append(Problem(what, int(positions.size), tuple(examples)))

    def raise_problems(self, dataset: str = "") -> None:
        if not self.problems:
            return
        details = "; ".join(p.describe() for p in self.problems)
        raise DataCheckError(f"the scores file {self.url} breaks the score-file contract: {details}. Fix the file "
                             f"and run ingest again; nothing was ingested (docs/external-scores.md)")


# --- reading ----------------------------------------------------------------------------
def parse_column_map(text: str) -> dict[str, str]:
    """``{contract column: file column}`` from ``userid=customer_id,propensity=p1``."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not name or not column:
            raise ParameterError(f"ingest: scores_columns item {part!r} is not CONTRACT_NAME=FILE_COLUMN "
                                 f"(e.g. userid=customer_id,propensity=PREDICTION)")
        if name not in CONTRACT:
            raise ParameterError(f"ingest: scores_columns names {name!r}, which is not a score-file column; "
                                 f"known: {', '.join(CONTRACT)}")
        if name in out:
            raise ParameterError(f"ingest: scores_columns maps {name!r} twice")
        out[name] = column
    return out


def file_kind(url: str) -> str:
    lower = url.lower().split("?", 1)[0]
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise ParameterError(f"ingest: {_file(url)} is neither CSV ({', '.join(_CSV_SUFFIXES)}) nor Parquet "
                         f"({', '.join(_PARQUET_SUFFIXES)}); name it after its format")


def _open(url: str):
    fs, path = storage.filesystem(url)
    try:
        if not fs.isfile(path):
            raise NotFoundError(f"ingest: {_file(url)} does not exist (or is a folder); pass the path of one "
                                "CSV or Parquet file")
    except PermissionError as exc:
        raise NotFoundError(f"ingest: cannot read {_file(url)}: {exc}") from None
    return fs.open(path, "rb")


def fingerprint(url: str) -> str:
    """sha256 of the file's bytes (16 hex characters): the same content, the same print."""
    digest = hashlib.sha256()
    with _open(url) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _text_stream(raw, url: str):
    return gzip.GzipFile(fileobj=raw) if url.lower().split("?", 1)[0].endswith(".gz") else raw


def read_table(url: str, kind: str) -> pa.Table:
    """The file as Arrow; a CSV's columns all as text (ids keep their digits, and a cell that
    is not a number is reported by row, not by the reader)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        with _open(url) as raw:
            if kind == "parquet":
                return pq.read_table(raw)
            data = _text_stream(raw, url).read()
    except (OSError, EOFError, pa.ArrowInvalid) as exc:
        if isinstance(exc, PermissionError):
            raise NotFoundError(f"ingest: cannot read {_file(url)}: {exc}") from None
        raise DataCheckError(f"{_file(url)} is not a readable {kind} file ({_first_line(exc)})") from None
    delimiter = "\t" if ".tsv" in url.lower() else ","
    text = data.decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=delimiter), [])
    names = [h.strip() for h in header]
    if not names or not any(names):
        raise DataCheckError(f"{_file(url)} has no header line; its first line must name the columns "
                             f"({', '.join(REQUIRED)}, ...)")
    if len(set(names)) != len(names):
        raise DataCheckError(f"{_file(url)} names a column twice in its header: {names}")
    try:
        return pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise DataCheckError(f"{_file(url)} is not valid CSV: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def rename(table: pa.Table, column_map: dict[str, str], url: str) -> tuple[pa.Table, tuple[str, ...]]:
    """The contract's columns under their contract names, and the names of the ignored ones."""
    names = table.column_names
    missing_mapped = [f"{c} (mapped to {column_map[c]!r})" for c in column_map if column_map[c] not in names]
    if missing_mapped:
        raise DataCheckError(f"{_file(url)} has no column {', '.join(missing_mapped)}; its columns are "
                             f"{names}")
    source = {c: column_map.get(c, c) for c in CONTRACT}
    mapped_from = set(column_map.values())
    missing = [c for c in REQUIRED if source[c] not in names]
    if missing:
        hint = ("; map them with scores_columns, e.g. scores_columns=userid=customer_id,propensity=PREDICTION"
                if names else "")
        raise DataCheckError(f"{_file(url)} lacks the required column(s) {missing}; its columns are "
                             f"{names}{hint}")
    keep = {c: source[c] for c in CONTRACT if source[c] in names}
    ignored = tuple(n for n in names if n not in keep.values() and n not in mapped_from)
    out = pa.table({c: table.column(n) for c, n in keep.items()})
    return out, ignored


# --- checks -----------------------------------------------------------------------------
def _as_text(column: pa.ChunkedArray) -> pa.Array:
    arr = column.combine_chunks()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_integer(arr.type) or pa.types.is_dictionary(arr.type):
        return arr.cast(pa.string())
    return None


def _ids(sf: ScoreFile, column: pa.ChunkedArray) -> pa.Array:
    text = _as_text(column)
    if text is None:
        raise DataCheckError(f"the scores file {sf.url}: column {ID_COLUMN} is {column.type}; profile ids must be "
                             "text (or whole numbers)")
    values = text.to_pylist()
    missing = [i for i, v in enumerate(values) if v is None or not v.strip()]
    sf.report("rows without a profile id", missing)
    bad = [i for i, v in enumerate(values) if v and v.strip() and (_BAD_ID.search(v) or len(v) > MAX_ID_LENGTH)]
    sf.report(f"profile ids with a quote, backslash or control character, or longer than {MAX_ID_LENGTH}", bad,
              lambda i: repr(values[i][:60]))
    stripped = pa.array([v.strip() if v else v for v in values], pa.string())
    return stripped


def _propensity(sf: ScoreFile, column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    raw = arr.to_pylist()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        p = pd.to_numeric(pd.Series([v.strip() if v else None for v in raw], dtype="object"),
                          errors="coerce").to_numpy(dtype="float64")
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        p = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
    else:
        raise DataCheckError(f"the scores file {sf.url}: column {PROPENSITY} is {arr.type}; it must hold numbers "
                             "in [0, 1]")
    bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0)))
    sf.report("rows whose propensity is not a finite number in [0, 1]", bad, lambda i: repr(raw[i]))
    return p


def _duplicates(sf: ScoreFile) -> None:
    ids = pd.Series(sf.ids.to_pylist(), dtype="object")
    present = ids.notna() & (ids != "")
    dup = ids.duplicated(keep="first") & present
    if not dup.any():
        return
    first = {}
    for i, v in enumerate(ids):
        if present.iloc[i] and v not in first:
            first[v] = i
    positions = np.flatnonzero(dup.to_numpy())
    sf.report("duplicate profile ids (a profile gets one score per file)", positions,
              lambda i: f"{ids.iloc[i]!r}, also at {sf.where(first[ids.iloc[i]])}")


def _one_value(sf: ScoreFile, table: pa.Table, name: str, given: str) -> str | None:
    """The file's single value of ``name`` (``model_name``/``model_version``), or None when
    the file has no such column; ``given`` (a parameter) wins over the file."""
    if name not in table.column_names:
        return None
    text = _as_text(table.column(name))
    if text is None:
        text = table.column(name).combine_chunks().cast(pa.string())
    values = text.to_pylist()
    missing = [i for i, v in enumerate(values) if v is None or not str(v).strip()]
    distinct = sorted({str(v).strip() for v in values if v is not None and str(v).strip()})
    if given:
        if distinct and distinct != [given]:
            log.warning("ingest: the scores file's %s %s is replaced by the parameter's %r", name, distinct, given)
        return given
    sf.report(f"rows without a {name} (the column, when present, names one {name} for the whole file)", missing)
    if len(distinct) > 1:
        firsts = {}
        for i, v in enumerate(values):
            key = str(v).strip() if v is not None else ""
            if key and key not in firsts:
                firsts[key] = i
        sf.report(f"distinct values of {name} (one model per file: percentiles are relative to the file)",
                  sorted(firsts.values()), lambda i: repr(str(values[i]).strip()))
    return distinct[0] if distinct else None


def _score_dates(sf: ScoreFile, column: pa.ChunkedArray) -> pa.Array:
    arr = column.combine_chunks()
    target = SCORE_SCHEMA.field("score_date").type
    if pa.types.is_timestamp(arr.type):
        parsed = pd.Series(arr.to_pandas())
        parsed = parsed.dt.tz_localize("UTC") if parsed.dt.tz is None else parsed.dt.tz_convert("UTC")
    else:
        raw = arr.cast(pa.string()).to_pylist() if not pa.types.is_string(arr.type) else arr.to_pylist()
        parsed = pd.to_datetime(pd.Series(raw, dtype="object"), utc=True, errors="coerce", format="ISO8601")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        sf.report("rows whose score_date is not an ISO 8601 date or time", bad, lambda i: repr(raw[i]))
    return pa.array(parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), type=target, from_pandas=True)


def load(url: str, column_map: dict[str, str] | None = None, model_name: str = "",
         model_version: str = "") -> ScoreFile:
    """Read ``url`` and check it against the contract (all but the ids' existence, which
    needs the platform: :func:`check_known`). Problems are recorded on the result; a file
    that cannot be read at all, or lacks the required columns, raises at once."""
    kind = file_kind(url)
    sf = ScoreFile(url=display_url(url), kind=kind, fingerprint=fingerprint(url), ids=pa.array([], pa.string()),
                   propensity=np.array([], dtype="float64"))
    table, ignored = rename(read_table(url, kind), column_map or {}, url)
    sf.ignored = ignored
    if ignored:
        derived = [c for c in ignored if c in DERIVED]
        if derived:
            log.warning("ingest: the scores file's columns %s are ignored: cmle derives score, percentile, decile and "
                        "bucket from the propensity, as for its own model", derived)
        others = [c for c in ignored if c not in DERIVED]
        if others:
            log.info("ingest: columns of the scores file that are not in the contract, ignored: %s", others)
    if "factors" in table.column_names:
        log.warning("ingest: the scores file's factors are read but not ingested: the scores dataset has no factor "
                    "fields yet")
    if table.num_rows == 0:
        raise DataCheckError(f"{_file(url)} holds no score rows")
    sf.ids = _ids(sf, table.column(ID_COLUMN))
    sf.propensity = _propensity(sf, table.column(PROPENSITY))
    _duplicates(sf)
    sf.model_name = _one_value(sf, table, "model_name", model_name.strip()) or model_name.strip() or DEFAULT_MODEL_NAME
    sf.model_version = (_one_value(sf, table, "model_version", model_version.strip()) or model_version.strip()
                        or f"file-{sf.fingerprint[:12]}")
    if "score_date" in table.column_names:
        sf.score_date = _score_dates(sf, table.column("score_date"))
    return sf


def check_known(sf: ScoreFile, unknown: set[str], where: str) -> None:
    """Record the rows whose id is in ``unknown`` (ids absent from ``where``)."""
    if not unknown:
        return
    values = sf.ids.to_pylist()
    positions = [i for i, v in enumerate(values) if v in unknown]
    sf.report(f"profile ids not in {where}", positions, lambda i: repr(values[i]))


def lookup_ids(sf: ScoreFile) -> list[str]:
    """The distinct well-formed ids of the file: what the existence check looks up."""
    return sorted({v for v in sf.ids.to_pylist() if v and not _BAD_ID.search(v) and len(v) <= MAX_ID_LENGTH})


# --- what is ingested -------------------------------------------------------------------
def score_rows(sf: ScoreFile, scored_at: dt.datetime | None = None) -> pa.Table:
    """The file's score rows (:data:`~cmle.scoring.schema.SCORE_SCHEMA`): score, percentile,
    decile and bucket derived from the propensity exactly as for cmle's own model, the
    file's propensities being the reference population."""
    reference = scoring.Reference.from_propensities(sf.propensity)
    outputs = scoring.outputs(sf.propensity, reference)
    when = scored_at or dt.datetime.now(dt.timezone.utc)
    date = pa.scalar(when, SCORE_SCHEMA.field("score_date").type)
    table = score_table(outputs, sf.ids, sf.model_name, sf.model_version, date)
    if sf.score_date is not None:
        table = table.set_column(table.schema.get_field_index("score_date"), "score_date", sf.score_date)
    return table


def ingestion_key(sf: ScoreFile) -> str:
    """The batch tag of the file's ingestion: its content and the model it is credited to,
    so re-running with the same file (under any name) finds the batch it made."""
    digest = hashlib.sha256(f"{sf.fingerprint}|{sf.model_name}|{sf.model_version}".encode()).hexdigest()[:16]
    return f"scores:external:{digest}"


def _file(url: str) -> str:
    return f"the scores file {display_url(url)}"


def display_url(url: str) -> str:
    """The file's location without a query string (a pre-signed URL carries its credentials
    there): what is logged and tagged."""
    return url.split("?", 1)[0]
