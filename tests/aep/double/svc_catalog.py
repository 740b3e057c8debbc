"""Catalog, Batch Ingestion and Data Access of the double.

A completed batch is validated as AEP validates it (readable Parquet, the XDM class's
required fields, custom fields under ``_{tenant}`` with the schema's types, the primary
identity present) and its rows are loaded into the dataset's PostgreSQL table; a batch
that fails contributes no row and carries AEP-style error codes.
"""

from __future__ import annotations

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq

from . import pgload
from .router import Req, Resp, aep_error, route
from .server import new_id, now_ms
from .svc_xdm import tenant_fields

CAT = "/data/foundation/catalog"
UNION_SCHEMA = "https://ns.adobe.com/xdm/context/profile__union"
IMP = "/data/foundation/import"
EXP = "/data/foundation/export"
XDM_ARROW_OK = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "number": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
    "integer": pa.types.is_integer,
    "boolean": pa.types.is_boolean,
}


def _dataset(d, ds_id: str) -> dict:
    ds = d.datasets.get(ds_id)
    if ds is None:
        raise aep_error(404, "CAT-404", f"dataset {ds_id} not found")
    return ds


def table_of(ds: dict) -> str:
    return ds["tags"]["adobe/pqs/table"][0]


def register_dataset(d, name: str, schema_id: str, tags: dict | None = None, extra: dict | None = None) -> str:
    ds_id = new_id()
    table = d.table_name_for(name)
    body = {"name": name, "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"},
            "tags": {**(tags or {}), "adobe/pqs/table": [table]}, "created": now_ms(), "updated": now_ms(),
            "imsOrg": d.org_id, **(extra or {})}
    with d.lock:
        d.datasets[ds_id] = body
    return ds_id


@route("GET", CAT + "/dataSets")
def list_datasets(d, req: Req):
    name = req.q("name")
    limit = int(req.q("limit", "50") or 50)
    start = int(req.q("start", "0") or 0)
    items = sorted(d.datasets.items(), key=lambda kv: kv[1]["created"])
    if name is not None:
        items = [(k, v) for k, v in items if v["name"] == name]
    return dict(items[start:start + limit])


@route("POST", CAT + "/dataSets")
def create_dataset(d, req: Req):
    body = req.json or {}
    name = body.get("name")
    schema_id = (body.get("schemaRef") or {}).get("id")
    if not name or not schema_id:
        raise aep_error(400, "CAT-400", "a dataset needs a name and a schemaRef")
    schema = d.schemas.get(schema_id)
    if schema is None and schema_id != UNION_SCHEMA:  # the union schema is AEP's own (global container)
        raise aep_error(400, "CAT-400", f"schema {schema_id} does not exist")
    if schema is None and "enabled:true" in (body.get("tags") or {}).get("unifiedProfile", []):
        raise aep_error(400, "CAT-1101-400", "a dataset on the union schema cannot be enabled for Profile")
    schema = schema or {}
    tags = body.get("tags") or {}
    if "enabled:true" in tags.get("unifiedProfile", []) and "union" not in (schema.get("meta:immutableTags") or []):
        raise aep_error(400, "CAT-1101-400", "the dataset's schema is not enabled for Profile")
    ds_id = register_dataset(d, name, schema_id, tags, {"fileDescription": body.get("fileDescription", {}),
                                                        "description": body.get("description", "")})
    return Resp(201, [f"@/dataSets/{ds_id}"])


@route("GET", CAT + "/dataSets/{DATASET_ID}")
def get_dataset(d, req: Req):
    ds_id = req.arg(0)
    return {ds_id: _dataset(d, ds_id)}


@route("PATCH", CAT + "/dataSets/{DATASET_ID}")
def patch_dataset(d, req: Req):
    ds_id = req.arg(0)
    ds = _dataset(d, ds_id)
    body = req.json
    if not isinstance(body, dict):
        raise aep_error(400, "CAT-400", "the double accepts the object form of PATCH")
    with d.lock:
        for key, value in body.items():
            if key == "tags":
                ds["tags"].update({k: v for k, v in value.items() if k != "adobe/pqs/table"})
            elif key in ("name", "description"):
                ds[key] = value
        ds["updated"] = now_ms()
    return [f"@/dataSets/{ds_id}"]


@route("DELETE", CAT + "/dataSets/{DATASET_ID}")
def delete_dataset(d, req: Req):
    ds_id = req.arg(0)
    ds = _dataset(d, ds_id)
    drop_dataset(d, ds_id, ds)
    return [f"@/dataSets/{ds_id}"]


def drop_dataset(d, ds_id: str, ds: dict) -> None:
    with d.admin() as cur:
        pgload.drop_dataset_table(cur, table_of(ds))
    with d.lock:
        d.datasets.pop(ds_id, None)
        d.dataset_schemas.pop(ds_id, None)
        d.labels.pop(ds_id, None)
        for b in d.batches.values():
            if b["relatedObjects"][0]["id"] == ds_id:
                b["status"] = "deleted"


# --- batches ---------------------------------------------------------------------------------------
@route("GET", CAT + "/batches")
def list_batches(d, req: Req):
    ds_id = req.q("dataSet")
    limit = int(req.q("limit", "100") or 100)
    start = int(req.q("start", "0") or 0)
    items = [(k, v) for k, v in d.batches.items() if ds_id is None or v["relatedObjects"][0]["id"] == ds_id]
    items.sort(key=lambda kv: (kv[1]["created"], kv[0]), reverse=(req.q("orderBy", "") or "").startswith("desc"))
    return dict(items[start:start + limit])


@route("GET", CAT + "/batches/{BATCH_ID}")
def get_batch(d, req: Req):
    b = d.batches.get(req.arg(0))
    if b is None:
        raise aep_error(404, "CAT-404", "batch not found")
    return {req.arg(0): b}


@route("POST", IMP + "/batches")
def create_batch(d, req: Req):
    body = req.json or {}
    _dataset(d, body.get("datasetId", ""))
    b_id = new_id("b")
    batch = {"id": b_id, "status": "loading", "created": now_ms(), "updated": now_ms(), "imsOrg": d.org_id,
             "inputFormat": body.get("inputFormat"), "tags": body.get("tags") or {},
             "relatedObjects": [{"type": "dataSet", "id": body["datasetId"]}], "errors": [], "metrics": {}}
    with d.lock:
        d.batches[b_id] = batch
        d.batch_files[b_id] = {}
    return Resp(201, batch)


def _loading(d, b_id: str, ds_id: str | None = None) -> dict:
    b = d.batches.get(b_id)
    if b is None:
        raise aep_error(404, "INGEST-404", f"batch {b_id} not found")
    if ds_id is not None and b["relatedObjects"][0]["id"] != ds_id:
        raise aep_error(400, "INGEST-400", f"batch {b_id} does not belong to dataset {ds_id}")
    return b


@route("PUT", IMP + "/batches/{batchId}/datasets/{datasetId}/files/{filePath}")
def put_file(d, req: Req):
    b = _loading(d, req.arg(0), req.arg(1))
    if b["status"] != "loading":
        raise aep_error(400, "INGEST-1200-400", f"batch is {b['status']}; files can only be added while loading")
    with d.lock:
        d.batch_files[b["id"]][req.arg(2)] = req.body
    return Resp(200)


@route("POST", IMP + "/batches/{batchId}/datasets/{datasetId}/files/{filePath}")
def large_file_action(d, req: Req):
    b = _loading(d, req.arg(0), req.arg(1))
    name = req.arg(2)
    with d.lock:
        parts = d.batch_files[b["id"]]
        if req.q("action") == "INITIALIZE":
            parts.pop(name, None)
            parts["__chunks__/" + name] = b""
            d.chunks[(b["id"], name)] = {}
        else:  # COMPLETE: assemble the chunks, which must cover the file without gaps
            chunks = d.chunks.pop((b["id"], name), None)
            if chunks is None:
                raise aep_error(400, "INGEST-1201-400", "large file was not initialised")
            data, pos = bytearray(), 0
            for start in sorted(chunks):
                if start != pos:
                    raise aep_error(400, "INGEST-1202-400", f"chunks leave a gap or overlap at byte {pos}")
                data += chunks[start]
                pos += len(chunks[start])
            parts.pop("__chunks__/" + name, None)
            parts[name] = bytes(data)
    return Resp(200)


@route("PATCH", IMP + "/batches/{batchId}/datasets/{datasetId}/files/{filePath}")
def large_file_chunk(d, req: Req):
    b = _loading(d, req.arg(0), req.arg(1))
    m = re.match(r"bytes (\d+)-(\d+)/(\d+)", req.header("content-range"))
    if not m or int(m.group(2)) - int(m.group(1)) + 1 != len(req.body):
        raise aep_error(400, "INGEST-1203-400", "Content-Range does not match the body")
    with d.lock:
        d.chunks.setdefault((b["id"], req.arg(2)), {})[int(m.group(1))] = req.body
    return Resp(200)


@route("POST", IMP + "/batches/{batchId}")
def batch_action(d, req: Req):
    b = _loading(d, req.arg(0))
    action = req.q("action")
    if action == "COMPLETE":
        if b["status"] == "loading":
            with d.lock:
                b["status"] = "processing"
            d.spawn(process_batch, d, b["id"])
        elif b["status"] in ("aborted", "inactive", "deleted"):
            raise aep_error(400, "INGEST-1220-400", f"batch {b['id']} is {b['status']}; it cannot be completed")
        return Resp(200)  # completing again is safe, as AEP documents
    if action == "ABORT":
        # Only a batch that has not been processed can be aborted; a finished one is reverted.
        if b["status"] not in ("loading", "staging"):
            raise aep_error(400, "INGEST-1221-400", f"batch {b['id']} is {b['status']}; only a loading batch "
                                                     "can be aborted (revert a finished one)")
        with d.lock:
            b["status"] = "aborted"
            b["updated"] = now_ms()
            d.batch_files[b["id"]] = {}
        return Resp(200)
    if action == "REVERT":
        if b["status"] == "success":
            ds = d.datasets.get(b["relatedObjects"][0]["id"])
            if ds is not None:
                with d.admin() as cur:
                    pgload.delete_batch_rows(cur, table_of(ds), b["id"])
        with d.lock:
            b["status"] = "inactive"
        return Resp(200)
    raise aep_error(400, "INGEST-400", f"action {action} is not supported by the double")


def _fail(d, b: dict, code: str, description: str) -> None:
    with d.lock:
        b["status"] = "failed"
        b["errors"] = [{"code": code, "description": description}]
        b["updated"] = now_ms()


def _check_xdm(d, schema: dict, name: str, t: pa.Schema) -> tuple[str, str] | None:
    tenant = f"_{d.tenant}"
    if schema["meta:class"].endswith("experienceevent"):
        missing = [c for c in ("_id", "timestamp") if c not in t.names]
        if missing:
            return "DCVS-1103-400", f"{name}: required ExperienceEvent fields missing: {missing}"
    if tenant not in t.names or not pa.types.is_struct(t.field(tenant).type):
        return "DCVS-1104-400", f"{name}: custom fields must be in the object {tenant}"
    declared = tenant_fields(d, schema)
    struct = t.field(tenant).type
    for f in struct:
        if f.name not in declared:
            return "DCVS-1105-400", f"{name}: {tenant}.{f.name} is not in the schema"
        xdm = declared[f.name]
        if not _fits(xdm, f.type):
            kind = "date-time" if xdm.get("format") in ("date-time", "date") else xdm.get("type")
            return "DCVS-1106-400", f"{name}: {tenant}.{f.name} is {f.type}, the schema says {kind}"
    return None


def _fits(xdm: dict, t: pa.DataType) -> bool:
    """Whether Arrow data of type ``t`` fits the XDM field ``xdm`` (arrays: every element;
    objects: every field declared and fitting)."""
    kind = "date-time" if xdm.get("format") in ("date-time", "date") else xdm.get("type")
    if pa.types.is_null(t):
        return True
    if kind == "array":
        items = xdm.get("items") or {}
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _fits(items, t.value_type)
    if kind == "object":
        props = xdm.get("properties") or {}
        return pa.types.is_struct(t) and all(f.name in props and _fits(props[f.name], f.type) for f in t)
    return XDM_ARROW_OK.get(kind, lambda t_: pa.types.is_timestamp(t_) or pa.types.is_date(t_))(t)


def xdm_arrow_type(xdm: dict) -> pa.DataType:
    """The Arrow type of an XDM field (what a dataset's table holds for it)."""
    kind = xdm.get("format") if xdm.get("format") in ("date-time", "date") else xdm.get("type")
    if kind == "array":
        return pa.list_(xdm_arrow_type(xdm.get("items") or {"type": "string"}))
    if kind == "object":
        return pa.struct([(k, xdm_arrow_type(v)) for k, v in (xdm.get("properties") or {}).items()])
    return XDM_ARROW_TYPES.get(kind, pa.string())


def invalid_ecids(values: list) -> list[str]:
    """The values AEP refuses in the ECID namespace: not 38 digits, or a 19-digit half above
    the largest signed 64-bit integer (Adobe KB ka-32618, "Invalid ECID")."""
    out = []
    for v in values:
        if v is None:
            continue
        if not (isinstance(v, str) and len(v) == 38 and v.isascii() and v.isdigit()
                and int(v[:19]) <= 2**63 - 1 and int(v[19:]) <= 2**63 - 1):
            out.append(str(v))
    return out


XDM_ARROW_TYPES = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_(),
                   "date-time": pa.timestamp("us", tz="UTC"), "date": pa.date32()}


def _with_declared_fields(d, schema: dict | None, files: pa.Schema) -> pa.Schema:
    """The table's schema: the files' columns, with every custom field the XDM schema declares
    (as on AEP, where a dataset's table has all the fields of its schema)."""
    tenant = f"_{d.tenant}"
    if schema is None or tenant not in files.names:
        return files
    struct = files.field(tenant).type
    have = {f.name for f in struct}
    extra = []
    for name, xdm in tenant_fields(d, schema).items():
        if name not in have:
            extra.append(pa.field(name, xdm_arrow_type(xdm)))
    if not extra:
        return files
    return files.set(files.get_field_index(tenant), pa.field(tenant, pa.struct([*struct, *extra])))


def process_batch(d, b_id: str) -> None:
    if not d.sleep(d.delay_s):
        return
    b = d.batches[b_id]
    ds_id = b["relatedObjects"][0]["id"]
    ds = d.datasets.get(ds_id)
    files = {k: v for k, v in d.batch_files.get(b_id, {}).items() if not k.startswith("__chunks__/")}
    if ds is None:
        _fail(d, b, "INGEST-1210-400", "the dataset was deleted")
        return
    if d.faults.consume("fail_batch"):
        _fail(d, b, "INGEST-1290-500", "injected failure: the platform could not process the batch")
        return
    if not files:
        _fail(d, b, "INGEST-1211-400", "the batch has no file")
        return
    schema = d.schemas.get(ds["schemaRef"]["id"])
    tables = []
    for name, data in sorted(files.items()):
        try:
            t = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - any unreadable file fails the batch
            _fail(d, b, "INGEST-1212-400", f"{name}: not a readable Parquet file ({exc})")
            return
        if schema is not None:
            problem = _check_xdm(d, schema, name, t.schema)
            if problem:
                _fail(d, b, *problem)
                return
            ident = [x for x in d.descriptors.values() if x["xdm:sourceSchema"] == schema["$id"] and x.get("xdm:isPrimary")]
            if ident:
                field = ident[0]["xdm:sourceProperty"].strip("/").split("/")[1]
                col = t.column(f"_{d.tenant}")
                nulls = sum(c.field(field).null_count + c.null_count for c in col.chunks) if field in \
                    [f.name for f in col.type] else t.num_rows
                if nulls:
                    _fail(d, b, "DCVS-1107-400", f"{name}: {nulls} rows without the primary identity "
                                                 f"_{d.tenant}.{field}")
                    return
                if str(ident[0].get("xdm:namespace", "")).upper() == "ECID":
                    bad = invalid_ecids(pa.chunked_array([c.field(field) for c in col.chunks]).to_pylist())
                    if bad:
                        _fail(d, b, "UPLIB-101003-400", f"{name}: Invalid ECID: {bad[0]} ({len(bad)} rows); an "
                                                        "ECID is 38 digits, each 19-digit half a signed 64-bit "
                                                        "integer")
                        return
        tables.append(t)
    expected = d.dataset_schemas.get(ds_id)
    try:
        merged = pa.unify_schemas([t.schema for t in tables] + ([expected] if expected is not None else []),
                                  promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _fail(d, b, "DCVS-1108-400", f"files do not share one schema: {exc}")
        return
    if expected is not None and not set(merged.names) <= set(expected.names):
        _fail(d, b, "DCVS-1108-400", f"columns {sorted(merged.names)} differ from the dataset's {sorted(expected.names)}")
        return
    target = expected or _with_declared_fields(d, schema, merged)
    try:
        with d.admin(autocommit=False) as cur:
            if expected is None:
                pgload.create_dataset_table(cur, table_of(ds), target)
            records = sum(pgload.insert_rows(cur, table_of(ds), t, b_id, target) for t in tables)
    except Exception as exc:  # noqa: BLE001 - a load failure fails the batch
        _fail(d, b, "INGEST-1213-500", f"loading failed: {str(exc).strip()[:300]}")
        return
    with d.lock:
        d.dataset_schemas.setdefault(ds_id, target)
        b.update(status="success", updated=now_ms(), completed=now_ms(),
                 metrics={"inputFileCount": len(files), "recordCount": records, "outputRecordCount": records})


# --- data access ---------------------------------------------------------------------------------------
@route("GET", EXP + "/batches/{batchId}/files")
def batch_files(d, req: Req):
    b = d.batches.get(req.arg(0))
    if b is None:
        raise aep_error(404, "DA-404", "batch not found")
    if b["status"] != "success":
        return {"data": [], "_page": {"limit": 100, "count": 0}}
    url = f"{d.url}{EXP}/files/{b['id']}-files"
    return {"data": [{"dataSetFileId": f"{b['id']}-files", "dataSetViewId": b["relatedObjects"][0]["id"],
                      "version": "1.0.0", "created": str(b["created"]), "isValid": True,
                      "_links": {"self": {"href": url}}}], "_page": {"limit": 100, "count": 1}}


@route("GET", EXP + "/files/{dataSetFileId}")
def file_content(d, req: Req):
    b_id = req.arg(0).removesuffix("-files")
    files = {k: v for k, v in d.batch_files.get(b_id, {}).items() if not k.startswith("__chunks__/")}
    if not files:
        raise aep_error(404, "DA-404", "file not found")
    path = req.q("path")
    if path is None:
        return {"data": [{"name": n, "length": str(len(v)),
                          "_links": {"self": {"href": f"{d.url}{EXP}/files/{req.arg(0)}?path={n}"}}}
                         for n, v in sorted(files.items())], "_page": {"limit": 100, "count": len(files)}}
    if path not in files:
        raise aep_error(404, "DA-404", f"no file {path}")
    return Resp(200, files[path])


def add_ctas_batch(d, ds_id: str, table: pa.Table, b_id: str | None = None) -> str:
    """Record the rows a query wrote (CTAS or INSERT INTO) as a successful batch of the
    dataset, with its Parquet file (whose rows are already in the dataset's table)."""
    b_id = b_id or new_id("b")
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with d.lock:
        d.batches[b_id] = {"id": b_id, "status": "success", "created": now_ms(), "updated": now_ms(),
                           "completed": now_ms(), "imsOrg": d.org_id, "tags": {"cmle.ctas": ["1"]},
                           "relatedObjects": [{"type": "dataSet", "id": ds_id}], "errors": [],
                           "metrics": {"recordCount": table.num_rows, "outputRecordCount": table.num_rows}}
        d.batch_files[b_id] = {"part-00000.parquet": buf.getvalue()}
        d.dataset_schemas.setdefault(ds_id, table.schema)
    return b_id

