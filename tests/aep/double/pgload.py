"""Datasets of the double as PostgreSQL tables, so Query Service SQL finds them.

A dataset ingested by batch is stored in ``"{table}__rows"`` with one column per top-level
field plus ``_acp_batch`` (the batch that brought the row), and queried through the view
``"{table}"`` that hides that column; reverting a batch deletes its rows. XDM objects
(Arrow structs such as ``_cmle``, ``web``) become composite types, so Spark's
``_cmle.userid`` works after :mod:`.sqlxlate` turns it into ``("_cmle")."userid"``.

Rows are loaded by COPY of the flattened table into a temporary table, then one
``INSERT ... SELECT`` that rebuilds the composite values (``NULL`` when the struct
itself is null). Arrays (``productListItems``) and maps (``identityMap``) are ``jsonb``
(a map as an object of its keys), which :mod:`.sqlxlate` reads with ``->``/``->>``.

:func:`dump_table` reads a table back to Arrow (CTAS results become Parquet batch files).
"""

from __future__ import annotations

import hashlib
import io
import uuid

import pyarrow as pa
import pyarrow.csv as pacsv

BATCH_COLUMN = "_acp_batch"


def rows_table(table: str) -> str:
    return f"{table}__rows"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class UnsupportedType(ValueError):
    pass


def _is_json(t: pa.DataType) -> bool:
    """Arrays and maps live in jsonb columns."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)


def _json_text(arr: pa.Array) -> pa.Array:
    """An array or map column as JSON text per row (NULL stays NULL)."""
    import json

    def plain(v):
        if isinstance(v, list) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v) and \
                pa.types.is_map(arr.type):
            return {k: plain(x) for k, x in v}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v

    return pa.array([None if v is None else json.dumps(plain(v)) for v in arr.to_pylist()], pa.string())


def _scalar_pg(t: pa.DataType) -> str:
    if _is_json(t):
        return "jsonb"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t) or pa.types.is_uint8(t) \
            or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytea"
    raise UnsupportedType(f"Arrow type {t} has no column type in the double")


def _type_name(table: str, path: tuple[str, ...]) -> str:
    digest = hashlib.sha1((table + "/" + "/".join(path)).encode()).hexdigest()[:12]
    return f"xdm_{digest}"


def _ensure_types(cur, table: str, path: tuple[str, ...], t: pa.StructType) -> str:
    """Create (once) the composite type for a struct; return its name."""
    fields = []
    for f in t:
        if pa.types.is_struct(f.type):
            fields.append(f"{q(f.name)} {q(_ensure_types(cur, table, (*path, f.name), f.type))}")
        else:
            fields.append(f"{q(f.name)} {_scalar_pg(f.type)}")
    name = _type_name(table, path)
    cur.execute("SELECT 1 FROM pg_type WHERE typname = %s", (name,))
    if cur.fetchone() is None:
        cur.execute(f"CREATE TYPE {q(name)} AS ({', '.join(fields)})")
    return name


def create_dataset_table(cur, table: str, schema: pa.Schema) -> None:
    """Create the rows table and the query view for a dataset's Arrow schema."""
    cols = []
    for f in schema:
        if pa.types.is_struct(f.type):
            cols.append(f"{q(f.name)} {q(_ensure_types(cur, table, (f.name,), f.type))}")
        else:
            cols.append(f"{q(f.name)} {_scalar_pg(f.type)}")
    cur.execute(f"CREATE TABLE {q(rows_table(table))} ({', '.join(cols)}, {q(BATCH_COLUMN)} text NOT NULL)")
    visible = ", ".join(q(f.name) for f in schema)
    cur.execute(f"CREATE VIEW {q(table)} AS SELECT {visible} FROM {q(rows_table(table))}")


def _flatten(arrays: list[tuple[tuple[str, ...], pa.Array]], out: list[tuple[str, pa.Array]]) -> None:
    for path, arr in arrays:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_struct(arr.type):
            out.append(("valid:" + "/".join(path), arr.is_valid()))
            _flatten([((*path, arr.type.field(i).name), arr.field(i)) for i in range(arr.type.num_fields)], out)
        elif _is_json(arr.type):
            out.append(("json:" + "/".join(path), _json_text(arr)))
        else:
            out.append(("leaf:" + "/".join(path), arr))


def _expr(table: str, path: tuple[str, ...], t: pa.DataType, names: dict[str, str]) -> str:
    key = "/".join(path)
    if _is_json(t):
        return f"{q(names['json:' + key])}::jsonb"
    if not pa.types.is_struct(t):
        return q(names["leaf:" + key])
    inner = ", ".join(_expr(table, (*path, f.name), f.type, names) for f in t)
    return f"CASE WHEN {q(names['valid:' + key])} THEN ROW({inner})::{q(_type_name(table, path))} END"


def _conform(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """``arr`` as type ``t``; struct fields ``arr`` lacks become nulls."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if _is_json(t):
        return arr
    if pa.types.is_struct(t) and pa.types.is_struct(arr.type):
        have = {arr.type.field(i).name: i for i in range(arr.type.num_fields)}
        children = [_conform(arr.field(have[f.name]), f.type) if f.name in have else pa.nulls(len(arr), f.type)
                    for f in t]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=arr.is_null())
    return arr.cast(t)


def conform(data: pa.Table, expected: pa.Schema) -> pa.Table:
    """``data`` with ``expected``'s columns and types (missing struct fields are null)."""
    return pa.table({f.name: _conform(data.column(f.name), f.type) if f.name in data.column_names
                     else pa.nulls(data.num_rows, f.type) for f in expected}, schema=expected)


def insert_rows(cur, table: str, data: pa.Table, batch_id: str, expected: pa.Schema) -> int:
    """Append ``data`` (conforming to ``expected``) as batch ``batch_id``; return the row count."""
    data = conform(data, expected)
    flat: list[tuple[str, pa.Array]] = []
    _flatten([((f.name,), data.column(f.name)) for f in expected], flat)
    names = {key: f"c{i}" for i, (key, _) in enumerate(flat)}
    stage_cols = []
    for key, arr in flat:
        pg = "boolean" if key.startswith("valid:") else "text" if key.startswith("json:") else _scalar_pg(arr.type)
        stage_cols.append(f"{q(names[key])} {pg}")
    stage = f"stage_{uuid.uuid4().hex[:16]}"
    cur.execute(f"CREATE TEMP TABLE {q(stage)} ({', '.join(stage_cols)}) ON COMMIT DROP")
    flat_table = pa.table({names[k]: a for k, a in flat})
    buf = io.BytesIO()
    pacsv.write_csv(flat_table, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buf.seek(0)
    cur.copy_expert(f"COPY {q(stage)} FROM STDIN WITH (FORMAT csv)", buf)
    exprs = ", ".join(_expr(table, (f.name,), f.type, names) for f in expected)
    cols = ", ".join(q(f.name) for f in expected)
    cur.execute(f"INSERT INTO {q(rows_table(table))} ({cols}, {q(BATCH_COLUMN)}) "
                f"SELECT {exprs}, %s FROM {q(stage)}", (batch_id,))
    return data.num_rows


def delete_batch_rows(cur, table: str, batch_id: str) -> None:
    cur.execute(f"DELETE FROM {q(rows_table(table))} WHERE {q(BATCH_COLUMN)} = %s", (batch_id,))


def drop_dataset_table(cur, table: str) -> None:
    """Drop a dataset's table: the view and rows table of a batch dataset, or a CTAS table."""
    cur.execute("SELECT relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname = %s", (table,))
    row = cur.fetchone()
    if row and row[0] == "v":
        cur.execute(f"DROP VIEW {q(table)}")
    elif row and row[0] == "r":
        cur.execute(f"DROP TABLE {q(table)}")
    cur.execute(f"DROP TABLE IF EXISTS {q(rows_table(table))}")


# --- reading back -------------------------------------------------------------------------
_PG_ARROW = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "float4": pa.float32(), "float8": pa.float64(),
    "numeric": pa.float64(), "bool": pa.bool_(), "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(),
    "timestamptz": pa.timestamp("us", tz="UTC"), "timestamp": pa.timestamp("us"), "date": pa.date32(),
    "bytea": pa.binary(),
}


def dump_table(cur, table: str) -> pa.Table:
    """All rows of a (CTAS) table as Arrow; composite columns come back as structs via JSON."""
    cur.execute("""SELECT a.attname, t.typname, t.typtype FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
                   WHERE c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", (table,))
    cols = cur.fetchall()
    select = ", ".join(f"to_jsonb({q(n)})" if typtype == "c" else q(n) for n, _typ, typtype in cols)
    cur.execute(f"SELECT {select} FROM {q(table)}")
    rows = cur.fetchall()
    arrays, fields = [], []
    for i, (name, typ, typtype) in enumerate(cols):
        values = [r[i] for r in rows]
        if typtype == "c":
            arr = pa.array(values)
        else:
            t = _PG_ARROW.get(typ, pa.string())
            if typ == "numeric":
                values = [None if v is None else float(v) for v in values]
            if t == pa.string():
                values = [None if v is None else str(v) for v in values]
            arr = pa.array(values, type=t)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
