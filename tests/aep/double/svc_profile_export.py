"""Profile export of the double: merge policies and Segmentation export jobs.

As Adobe's "export jobs" guide and segmentation.yaml say: ``POST /export/jobs`` needs
``destination.datasetId`` and ``schema.name``; the destination dataset must be based on the
XDM Individual Profile union schema (anything else is refused); ``mergePolicy.id`` must name
a merge policy of the sandbox. The job goes NEW -> PROCESSING -> SUCCEEDED (or FAILED with the
``fail_job`` fault) and then the dataset holds a new batch (``destination.batchId``): one row
per profile with its ``identityMap`` and the requested ``fields``, merged timestamp-ordered
(the newest non-null value of each field wins; newer: a later batch, then a later row).

Profiles are the Profile-enabled datasets' rows, keyed by their primary identity descriptor
(namespace and id). The double has one merge policy, the default timestamp-ordered one.
"""

from __future__ import annotations

import pyarrow as pa

from . import pgload
from .pgload import BATCH_COLUMN, q, rows_table
from .router import Req, Resp, aep_error, route
from .server import new_id, now_ms
from .svc_catalog import UNION_SCHEMA, add_ctas_batch, table_of
from .svc_segments import job_runs, newest_jobs

UPS = "/data/core/ups"
PROFILE_SCHEMA_NAME = "_xdm.context.profile"
DEFAULT_POLICY = {"id": "timestampOrdered-none-mp", "name": "Default Timebased", "version": 1, "default": True,
                  "schema": {"name": PROFILE_SCHEMA_NAME}, "identityGraph": {"type": "none"},
                  "attributeMerge": {"type": "timestampOrdered"}, "isActiveOnEdge": False}
_IDENTITY = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP = pa.map_(pa.string(), pa.list_(_IDENTITY))


def policies(d) -> dict[str, dict]:
    return {DEFAULT_POLICY["id"]: DEFAULT_POLICY, **d.merge_policies}


# --- merge policies (profile.yaml) -------------------------------------------------------------
@route("GET", UPS + "/config/mergePolicies")
def list_merge_policies(d, req: Req):
    items = list(policies(d).values())
    if req.q("default") == "true":
        items = [m for m in items if m.get("default")]
    if req.q("schema.name"):
        items = [m for m in items if m["schema"]["name"] == req.q("schema.name")]
    return {"_page": {"count": len(items)}, "children": items}


@route("GET", UPS + "/config/mergePolicies/{mergePolicyId}")
def get_merge_policy(d, req: Req):
    policy = policies(d).get(req.arg(0))
    if policy is None:
        raise aep_error(404, "UPS-404", f"merge policy {req.arg(0)} not found")
    return policy


# --- export jobs (segmentation.yaml) --------------------------------------------------------------
@route("POST", UPS + "/export/jobs")
def create_export_job(d, req: Req):
    body = req.json or {}
    ds_id = (body.get("destination") or {}).get("datasetId")
    if not ds_id or not (body.get("schema") or {}).get("name"):
        raise aep_error(400, "UPS-400", "destination.datasetId and schema.name are required")
    ds = d.datasets.get(ds_id)
    if ds is None:
        raise aep_error(400, "UPS-400", f"destination dataset {ds_id} does not exist")
    if ds["schemaRef"]["id"] != UNION_SCHEMA or body["schema"]["name"] != PROFILE_SCHEMA_NAME:
        raise aep_error(400, "UPS-400", "the destination dataset must be based on the XDM Individual Profile union "
                                        f"schema ({UNION_SCHEMA}) and schema.name be {PROFILE_SCHEMA_NAME}")
    policy_id = (body.get("mergePolicy") or {}).get("id") or DEFAULT_POLICY["id"]
    if policy_id not in policies(d):
        raise aep_error(400, "UPS-400", f"merge policy {policy_id} not found")
    with d.lock:
        job_id = len(d.export_jobs) + 1
        job = {"id": job_id, "jobType": "BATCH", "destination": {"datasetId": ds_id, "segmentPerBatch": False},
               "fields": body.get("fields", ""), "schema": {"name": PROFILE_SCHEMA_NAME}, "imsOrgId": d.org_id,
               "status": "NEW", "filter": body.get("filter") or {}, "mergePolicy": {"id": policy_id, "version": 1},
               "profileInstanceId": "ups", "errors": [], "metrics": {},
               "creationTime": now_ms(), "updateTime": now_ms(), "requestId": new_id()}
        d.export_jobs[job_id] = job
    d.spawn(run_export_job, d, job_id)
    return Resp(200, job)


@route("GET", UPS + "/export/jobs")
def list_export_jobs(d, req: Req):
    items, limit = newest_jobs(d.export_jobs, req)
    return {"records": items[:limit], "page": {"sortField": "createdTime", "sort": "desc",
                                               "pageSize": min(limit, len(items))}}


@route("GET", UPS + "/export/jobs/{EXPORT_JOB_ID}")
def get_export_job(d, req: Req):
    try:
        job = d.export_jobs.get(int(req.arg(0)))
    except ValueError:
        job = None
    if job is None:
        raise aep_error(404, "UPS-404", f"export job {req.arg(0)} not found")
    return job


def run_export_job(d, job_id: int) -> None:
    job = d.export_jobs[job_id]
    if not job_runs(d, job):
        return
    fields = [f for f in job["fields"].split(",") if f and f != "identityMap"]
    table = union_table(d, fields)
    ds_id = job["destination"]["datasetId"]
    ds = d.datasets[ds_id]
    b_id = new_id("b")
    expected = d.dataset_schemas.get(ds_id) or table.schema
    with d.admin(autocommit=False) as cur:
        if ds_id not in d.dataset_schemas:
            pgload.create_dataset_table(cur, table_of(ds), expected)
        pgload.insert_rows(cur, table_of(ds), table, b_id, expected)
    add_ctas_batch(d, ds_id, table, b_id)
    with d.lock:
        d.batches[b_id]["tags"] = {}
        job["destination"]["batchId"] = b_id
        job.update(status="SUCCEEDED", updateTime=now_ms(), metrics={"totalTime": {"totalTimeInMs": 1.0}})


# --- the union ----------------------------------------------------------------------------------
def _pg_path(path: list[str]) -> str:
    """PostgreSQL of a nested field of a composite column: ``(("a")."b")."c"``."""
    expr = q(path[0])
    for p in path[1:]:
        expr = f"({expr}).{q(p)}"
    return expr


def _leaf_type(schema: pa.Schema, path: list[str]) -> pa.DataType | None:
    t: pa.DataType | None = None
    fields = {f.name: f.type for f in schema}
    for p in path:
        if p not in fields:
            return None
        t = fields[p]
        fields = {f.name: f.type for f in t} if pa.types.is_struct(t) else {}
    return t


def union_table(d, fields: list[str]) -> pa.Table:
    """The merged profiles: identityMap and the fields, newest non-null value per field."""
    order = {b_id: b["created"] for b_id, b in d.batches.items()}
    merged: dict[tuple[str, str], dict] = {}
    types: dict[str, pa.DataType] = {}
    fragments = []
    for ds_id, ds in list(d.datasets.items()):
        schema = d.schemas.get(ds["schemaRef"]["id"])
        arrow = d.dataset_schemas.get(ds_id)
        if "enabled:true" not in (ds.get("tags") or {}).get("unifiedProfile", []) or schema is None or arrow is None:
            continue
        ident = [x for x in d.descriptors.values() if x["xdm:sourceSchema"] == schema["$id"] and x.get("xdm:isPrimary")]
        if not ident:
            continue
        id_path = ident[0]["xdm:sourceProperty"].strip("/").split("/")
        have = []
        for f in fields:
            t = _leaf_type(arrow, f.split("."))
            if t is not None:
                types.setdefault(f, t)
                have.append(f)
        cols = ", ".join([_pg_path(id_path), *[_pg_path(f.split(".")) for f in have]])
        with d.admin() as cur:  # typed values (timestamps stay timestamps), in load order
            cur.execute(f"SELECT {q(BATCH_COLUMN)}, {cols} FROM {q(rows_table(table_of(ds)))} ORDER BY ctid")
            rows = cur.fetchall()
        for i, (b_id, uid, *values) in enumerate(rows):
            fragments.append(((order.get(b_id, 0), b_id, i), ident[0]["xdm:namespace"], uid, dict(zip(have, values))))
    for _order, ns, uid, values in sorted(fragments, key=lambda x: x[0]):
        if uid is None:
            continue
        profile = merged.setdefault((ns, str(uid)), {})
        profile.update({f: v for f, v in values.items() if v is not None})
    tree: dict = {}
    for f in fields:
        node = tree
        *parents, leaf = f.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = types.get(f, pa.string())

    def struct_type(node) -> pa.DataType:
        return node if isinstance(node, pa.DataType) else pa.struct([(k, struct_type(v)) for k, v in node.items()])

    def nested(values: dict, node: dict, prefix: str):
        out = {}
        for k, v in node.items():
            path = f"{prefix}{k}"
            out[k] = values.get(path) if isinstance(v, pa.DataType) else nested(values, v, path + ".")
        return out

    keys = sorted(merged)
    columns = {"identityMap": pa.array([[(ns, [{"id": uid, "authenticatedState": "ambiguous", "primary": True}])]
                                        for ns, uid in keys], IDENTITY_MAP)}
    for top, node in tree.items():
        columns[top] = pa.array([nested(merged[k], node, top + ".") if not isinstance(node, pa.DataType)
                                 else merged[k].get(top) for k in keys], struct_type(node))
    return pa.table(columns)
