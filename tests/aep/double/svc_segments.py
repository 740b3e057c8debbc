"""Segmentation of the double: segment definitions, evaluation jobs.

Profiles are the Profile-enabled datasets merged per identity (for each attribute, the
value of the newest batch that has one); a definition's PQL is evaluated over them with
:func:`cmle.pql.to_sql` on DuckDB (the same PQL subset the embedded platform supports).
"""

from __future__ import annotations

import re
import warnings

import duckdb
import pandas as pd

from cmle import pql

from .pgload import BATCH_COLUMN, q, rows_table
from .router import Req, Resp, aep_error, route
from .server import now_ms

UPS = "/data/core/ups"


def _segment(d, seg_id: str) -> dict:
    s = d.segments.get(seg_id)
    if s is None:
        raise aep_error(404, "UPS-404", f"segment definition {seg_id} not found")
    return s


def _check(d, body: dict) -> None:
    expr = body.get("expression") or {}
    if expr.get("type") != "PQL" or expr.get("format") != "pql/text" or not expr.get("value"):
        raise aep_error(400, "UPS-400", "the double evaluates PQL text expressions only")
    try:
        pql.to_sql(expr["value"], d.tenant)
    except Exception as exc:  # noqa: BLE001 - the platform rejects invalid PQL
        raise aep_error(400, "UPS-400-PQL", f"invalid PQL: {exc}") from None
    if (body.get("schema") or {}).get("name") != "_xdm.context.profile":
        raise aep_error(400, "UPS-400", "schema.name must be _xdm.context.profile")


def _creation_time(d) -> int:
    """Creation times are unique (they order the listing and ``start`` pages by them)."""
    latest = max((s["creationTime"] for s in d.segments.values()), default=0)
    return max(now_ms(), latest + 1)


@route("POST", UPS + "/segment/definitions")
def create_definition(d, req: Req):
    body = req.json or {}
    _check(d, body)
    with d.lock:
        created = _creation_time(d)
        seg = {**body, "id": d.new_hex(), "imsOrgId": d.org_id, "creationTime": created, "updateTime": created,
               "profileInstanceId": body.get("profileInstanceId", "ups")}
        d.segments[seg["id"]] = seg
    return Resp(200, seg)


@route("GET", UPS + "/segment/definitions")
def list_definitions(d, req: Req):
    """Oldest first. ``start`` is "the page offset, as per created time of resource"
    (segmentation.yaml): the page holds the definitions created after it; ``_page.next``
    (and ``link.next``) give the ``start`` of the next page, absent on the last one."""
    limit = int(req.q("limit", "100") or 100)
    start = int(req.q("start", "0") or 0)
    items = sorted(d.segments.values(), key=lambda s: s["creationTime"])
    after = [s for s in items if s["creationTime"] > start]
    page = after[:limit]
    more = len(after) > limit
    nxt = str(page[-1]["creationTime"]) if more and page else None
    return {"segments": page,
            "page": {"totalCount": len(items), "totalPages": max(1, -(-len(items) // limit)), "pageSize": len(page),
                     "limit": limit},
            "_page": {"totalCount": len(items), "pageSize": len(page), "next": nxt},
            "link": {"next": {"href": f"@/segment/definitions?start={nxt}&limit={limit}"}} if nxt else {}}


@route("GET", UPS + "/segment/definitions/{SEGMENT_ID}")
def get_definition(d, req: Req):
    return _segment(d, req.arg(0))


@route("PATCH", UPS + "/segment/definitions/{SEGMENT_ID}")
def patch_definition(d, req: Req):
    seg = _segment(d, req.arg(0))
    body = req.json or {}
    _check(d, body)
    with d.lock:
        seg.update({k: v for k, v in body.items() if k not in ("id", "imsOrgId")})
        seg["updateTime"] = now_ms()
    return seg


@route("DELETE", UPS + "/segment/definitions/{SEGMENT_ID}")
def delete_definition(d, req: Req):
    _segment(d, req.arg(0))
    mapped = [f["id"] for f in d.flows.values() for t in f.get("transformations") or []
              for s in ((t.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []
              if (s.get("value") or {}).get("id") == req.arg(0)]
    if mapped:
        raise aep_error(422, "UPS-422", f"the audience is activated to destination dataflows {mapped}; "
                                        "remove it from them first")
    with d.lock:
        d.segments.pop(req.arg(0), None)
    return Resp(204)


# --- jobs ------------------------------------------------------------------------------------------
@route("POST", UPS + "/segment/jobs")
def create_job(d, req: Req):
    body = req.json or []
    segs = [_segment(d, item["segmentId"]) for item in body]
    job = {"id": d.new_hex(), "imsOrgId": d.org_id, "profileInstanceId": "ups", "source": "api", "status": "NEW",
           "segments": [{"segmentId": s["id"], "segment": {"id": s["id"], "expression": s["expression"]}} for s in segs],
           "creationTime": now_ms(), "updateTime": now_ms(), "metrics": {}}
    with d.lock:
        d.jobs[job["id"]] = job
    d.spawn(run_job, d, job["id"])
    return Resp(200, job)


def newest_jobs(jobs: dict, req: Req) -> tuple[list[dict], int]:
    """A job listing's items (newest first, ``status`` filtered, all of them) and its ``limit``."""
    limit = int(req.q("limit", "100") or 100)
    items = sorted(jobs.values(), key=lambda j: j["creationTime"], reverse=True)
    if req.q("status"):
        items = [j for j in items if j["status"] == req.q("status")]
    return items, limit


def job_runs(d, job: dict) -> bool:
    """Take a job through NEW -> PROCESSING; False when it ends here (the double stops, or the
    ``fail_job`` fault fails it)."""
    if not d.sleep(d.delay_s):
        return False
    with d.lock:
        job.update(status="PROCESSING", updateTime=now_ms())
    if not d.sleep(d.delay_s):
        return False
    if d.faults.consume("fail_job"):
        with d.lock:
            job.update(status="FAILED", errors=[{"code": "0100000003", "msg": "injected failure"}], updateTime=now_ms())
        return False
    return True


@route("GET", UPS + "/segment/jobs")
def list_jobs(d, req: Req):
    items, limit = newest_jobs(d.jobs, req)
    return {"_page": {"totalCount": len(items), "pageSize": min(limit, len(items))}, "children": items[:limit],
            "link": {}}


@route("GET", UPS + "/segment/jobs/{SEGMENT_JOB_ID}")
def get_job(d, req: Req):
    job = d.jobs.get(req.arg(0))
    if job is None:
        raise aep_error(404, "UPS-404", "segment job not found")
    return job


def run_job(d, job_id: str) -> None:
    job = d.jobs[job_id]
    if not job_runs(d, job):
        return
    counts = {s["segmentId"]: len(evaluate_members(d, s["segmentId"])) for s in job["segments"]}
    with d.lock:
        job.update(status="SUCCEEDED", updateTime=now_ms(),
                   metrics={"totalProfiles": len(profiles(d, ["userid"])), "segmentedProfileCounter": counts})


# --- profiles ---------------------------------------------------------------------------------------
def profiles(d, fields: list[str]) -> pd.DataFrame:
    """Merged profile attributes: per userid, each field's value from the newest batch having one."""
    tenant = f"_{d.tenant}"
    order = {b_id: b["created"] for b_id, b in d.batches.items()}
    frames = []
    for ds_id, ds in list(d.datasets.items()):
        schema = d.dataset_schemas.get(ds_id)
        if "enabled:true" not in (ds.get("tags") or {}).get("unifiedProfile", []) or schema is None \
                or tenant not in schema.names:
            continue
        have = {f.name for f in schema.field(tenant).type}
        cols = [f'({q(tenant)}).{q(f)} AS {q(f)}' if f in have else f"NULL AS {q(f)}" for f in fields if f != "userid"]
        table = ds["tags"]["adobe/pqs/table"][0]
        with d.admin() as cur:
            cur.execute(f"SELECT ({q(tenant)}).userid AS userid, {', '.join(cols) or 'NULL AS _none'}, "
                        f"{q(BATCH_COLUMN)} FROM {q(rows_table(table))}")
            names = [c.name for c in cur.description]
            frames.append(pd.DataFrame(cur.fetchall(), columns=names))
    wanted = [f for f in fields if f != "userid"]
    if not frames:
        return pd.DataFrame(columns=["userid", *wanted])
    with warnings.catch_warnings():  # datasets without some of the fields add all-NULL columns
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(frames, ignore_index=True)
    df["_order"] = df[BATCH_COLUMN].map(order).fillna(0)
    df = df.sort_values("_order", kind="stable")
    if not wanted:
        return df[["userid"]].drop_duplicates().reset_index(drop=True)
    return df.groupby("userid", sort=True).agg({f: "last" for f in wanted}).reset_index()


def evaluate_members(d, segment_id: str) -> pd.DataFrame:
    seg = d.segments[segment_id]
    text = seg["expression"]["value"]
    fields = sorted(set(re.findall(rf"_{re.escape(d.tenant)}\.([A-Za-z_][A-Za-z0-9_]*)", text)))
    merged = profiles(d, fields)
    where = pql.to_sql(text, d.tenant)
    con = duckdb.connect()
    try:
        con.register("profiles", merged)
        return con.execute(f"SELECT userid FROM profiles WHERE {where} ORDER BY userid").df()
    finally:
        con.close()
