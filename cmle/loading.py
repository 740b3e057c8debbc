"""Reading a customer's AEP export (XDM rows as Parquet or JSON lines) for ``cmle load``.

AEP exports datasets as Parquet with nested structs, arrays (``productListItems``) and maps
(``identityMap``); JSON exports hold the same rows as XDM JSON, where ``identityMap`` is an
object of namespaces and times are ISO 8601 strings. :func:`read_export` reads either into
one Arrow table in the Parquet shape (``identityMap`` a map, ``timestamp`` a UTC
timestamp), so the model spec's SQL reads both alike. :func:`split_bad_rows` sets apart the
rows the platform could not use (no identity, no timestamp) and counts them by reason.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from cmle.errors import DataCheckError, ParameterError
from cmle.modelspec.paths import IDENTITY_MAP, FieldPath, Identity

log = logging.getLogger(__name__)

FORMATS = ("auto", "parquet", "jsonl")
_TS = pa.timestamp("us", tz="UTC")


def find_files(spec: str) -> list[Path]:
    """Files from a comma-separated list of paths, folders (their files) and globs, sorted."""
    found: list[Path] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = Path(part).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        elif any(c in part for c in "*?["):
            found += sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise ParameterError(f"load: {part} is neither a file, a folder nor a pattern that matches files")
    if not found:
        raise ParameterError(f"load: no file found in {spec!r}")
    return sorted(dict.fromkeys(found))


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".parq")) or ".parquet" in name:
        return "parquet"
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return "jsonl"
    raise ParameterError(f"load: cannot tell the format of {path.name}; pass format=parquet or format=jsonl")


def files_key(paths: list[Path], *extra: str) -> str:
    """A fingerprint of the files' contents (and ``extra``): the same export gives the same key."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    for e in extra:
        digest.update(e.encode())
    return digest.hexdigest()[:24]


# --- normalising the XDM shape --------------------------------------------------------------
def _struct_to_map(arr: pa.Array) -> pa.Array:
    """An ``identityMap`` read from JSON (a struct with one field per namespace, each a list of
    identities) as the map AEP's Parquet exports hold."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    names = [f.name for f in arr.type]
    n = len(arr)
    lists = [arr.field(i) for i in range(len(names))]
    if not lists:
        return pa.nulls(n, pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string())]))))
    value_type = pa.unify_schemas([pa.schema([("v", lst.type)]) for lst in lists],
                                  promote_options="permissive").field("v").type
    lists = [lst.cast(value_type) for lst in lists]
    valid = np.stack([np.asarray(lst.is_valid()) for lst in lists], axis=1) & np.asarray(arr.is_valid())[:, None]
    rows, which = np.nonzero(valid)  # row-major: a row's namespaces in field order
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    keys = pa.array(names).take(pa.array(which.astype(np.int32)))
    values = pa.concat_arrays(lists).take(pa.array((which * n + rows).astype(np.int64)))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, mask=pa.array(~np.asarray(arr.is_valid())))


def _to_timestamp(arr) -> pa.Array:
    """ISO 8601 strings (or numbers of milliseconds) as UTC timestamps; unreadable ones null."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_timestamp(arr.type):
        return arr.cast(_TS) if arr.type.tz else pc.assume_timezone(arr, "UTC").cast(_TS)
    if pa.types.is_date(arr.type):
        return arr.cast(pa.timestamp("us")).cast(_TS)
    values = arr.to_pandas()
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        parsed = pd.to_datetime(values, unit="ms", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return pa.array(parsed, _TS, from_pandas=True)


_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _looks_like_times(arr: pa.Array) -> bool:
    sample = [v for v in arr.drop_null().slice(0, 50).to_pylist()]
    return bool(sample) and all(isinstance(v, str) and _ISO_TIME.match(v) for v in sample)


def _normalise_array(arr: pa.Array) -> pa.Array:
    """Times in a JSON export (ISO strings, or timestamps without a zone) as UTC timestamps,
    inside structs too."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_struct(arr.type):
        children = [_normalise_array(arr.field(i)) for i in range(arr.type.num_fields)]
        return pa.StructArray.from_arrays(children, names=[f.name for f in arr.type],
                                          mask=pa.array(~np.asarray(arr.is_valid())))
    if (pa.types.is_timestamp(arr.type) and not arr.type.tz) or \
            (pa.types.is_string(arr.type) and _looks_like_times(arr)):
        return _to_timestamp(arr)
    return arr


def normalise(table: pa.Table, timestamp: str | None = "timestamp") -> pa.Table:
    """The export in AEP's Parquet shape: ``identityMap`` a map, times as UTC timestamps."""
    cols = {name: _normalise_array(col) for name, col in zip(table.column_names, table.columns)}
    if IDENTITY_MAP in cols and pa.types.is_struct(cols[IDENTITY_MAP].type):
        cols[IDENTITY_MAP] = _struct_to_map(cols[IDENTITY_MAP])
    if timestamp and timestamp in cols:
        cols[timestamp] = _to_timestamp(cols[timestamp])
    return pa.table(cols)


def _read(path: Path, fmt: str) -> pa.Table:
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        return pajson.read_json(path, parse_options=pajson.ParseOptions(newlines_in_values=False))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataCheckError(f"load: {path} is not readable as {fmt}: {str(exc).splitlines()[0]}") from None


def read_export(paths: list[Path], fmt: str = "auto", timestamp: str | None = "timestamp") -> pa.Table:
    """Every file as one table in the Parquet shape (columns missing from a file are null there)."""
    tables = [normalise(_read(p, file_format(p, fmt)), timestamp) for p in paths]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataCheckError(f"load: the files do not share one schema ({str(exc).splitlines()[0]}); load "
                             "them as separate datasets") from None


def _conform_array(arr, t: pa.DataType, where: str) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_struct(t) and pa.types.is_struct(arr.type):
        have = {f.name: i for i, f in enumerate(arr.type)}
        extra = sorted(set(have) - {f.name for f in t})
        if extra:
            raise DataCheckError(f"load: {where}.{extra[0]} is not a field of the dataset; load into a new dataset, "
                                 "or replace its content (mode=replace)")
        children = [_conform_array(arr.field(have[f.name]), f.type, f"{where}.{f.name}") if f.name in have
                    else pa.nulls(len(arr), f.type) for f in t]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=pa.array(~np.asarray(arr.is_valid())))
    try:
        return arr.cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise DataCheckError(f"load: {where} is {arr.type} in the files, {t} in the dataset; load into a new "
                             "dataset, or replace its content (mode=replace)") from None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in the columns and types of ``schema`` (an existing dataset's, for an appending
    load): fields the files lack are null; fields the dataset lacks are refused."""
    extra = sorted(set(table.column_names) - set(schema.names))
    if extra:
        raise DataCheckError(f"load: {extra[0]} is not a field of the dataset; load into a new dataset, or replace "
                             "its content (mode=replace)")
    return pa.table({f.name: _conform_array(table.column(f.name), f.type, f.name) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in schema}, schema=schema)


# --- bad rows ----------------------------------------------------------------------------------
@dataclass
class Checked:
    """The rows that can be loaded, the ones that cannot, and why."""

    good: pa.Table
    bad: pa.Table
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> rows

    @property
    def rows(self) -> int:
        return self.good.num_rows + self.bad.num_rows


def split_bad_rows(table: pa.Table, identity: Identity, tenant: str, timestamp: FieldPath | None) -> Checked:
    """Rows without the identity (or, for events, without a timestamp) are set apart, with the
    count per reason. The identity is read exactly as the feature SQL reads it."""
    import duckdb

    from cmle.sql import to_duckdb

    checks = {"missing identity": f"({identity.resolve(tenant).sql()}) IS NULL"}
    if timestamp is not None:
        checks["missing timestamp"] = f"({timestamp.resolve(tenant).sql()}) IS NULL"
    for path in ([identity.field] if identity.field is not None else []) + ([timestamp] if timestamp else []):
        if path.resolve(tenant).top not in table.column_names:
            raise DataCheckError(f"load: the files have no column {path.resolve(tenant).top!r} (for "
                                 f"{path.text}); check the identity and timestamp of the spec, or pass identity=")
    if identity.field is None and IDENTITY_MAP not in table.column_names:
        raise DataCheckError(f"load: the files have no identityMap for the identity {identity.text}; pass "
                             "identity=<field path> if the person is identified by a field")
    select = ", ".join(f"{sql} AS c{i}" for i, sql in enumerate(checks.values()))
    with duckdb.connect() as con:
        con.execute("SET TimeZone='UTC'")
        con.register("rows_to_load", table)
        flags = con.sql(to_duckdb(f"SELECT {select} FROM rows_to_load")).fetchnumpy()
    masks = {reason: np.asarray(flags[f"c{i}"], dtype=bool) for i, reason in enumerate(checks)}
    bad = np.zeros(table.num_rows, bool)
    reasons = {}
    for reason, mask in masks.items():
        reasons[reason] = int(mask.sum())
        bad |= mask
    return Checked(good=table.filter(pa.array(~bad)), bad=table.filter(pa.array(bad)),
                   reasons={k: v for k, v in reasons.items() if v})


def with_event_ids(table: pa.Table) -> tuple[pa.Table, int]:
    """Every row with an ``_id`` (AEP requires one): missing ones are derived from the row's
    content, so loading the same export twice gives the same ids. Returns the count filled."""
    n = table.num_rows
    ids = table.column("_id").combine_chunks() if "_id" in table.column_names else pa.nulls(n, pa.string())
    missing = ids.null_count
    if not missing:
        return table, 0
    rows = table.to_pylist()
    filled = [v if v is not None else hashlib.sha256(json.dumps(r, default=str, sort_keys=True).encode())
              .hexdigest()[:32] for v, r in zip(ids.to_pylist(), rows)]
    arr = pa.array(filled, pa.string())
    table = table.set_column(table.column_names.index("_id"), "_id", arr) if "_id" in table.column_names \
        else table.add_column(0, "_id", arr)
    return table, missing


__all__ = ["Checked", "FORMATS", "conform", "file_format", "files_key", "find_files", "normalise", "read_export",
           "split_bad_rows", "with_event_ids"]
