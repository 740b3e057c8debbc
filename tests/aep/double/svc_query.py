"""Query Service REST of the double: connection parameters, queries (CTAS) run in
PostgreSQL after translation, polling, cancel.

A query's statements run in one transaction. ``CREATE TABLE t AS`` registers ``t`` as a
dataset (``adobe/pqs/table`` tag, an ad-hoc schema) with its rows as one successful
batch; ``DROP TABLE t`` deletes the dataset of table ``t``, as on AEP.
"""

from __future__ import annotations

import datetime as dt
import re

from . import sqlxlate
from .router import Req, Resp, aep_error, route
from .svc_catalog import add_ctas_batch, register_dataset, table_of

QS = "/data/foundation/query"
_DROP = re.compile(r'^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?"([^"]+)"', re.IGNORECASE)
_CREATE = re.compile(r'^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"([^"]+)"\s+AS\b', re.IGNORECASE)


def _iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@route("GET", QS + "/connection_parameters")
def connection_parameters(d, req: Req):
    d.set_qs_password(req.token)
    return {"host": "127.0.0.1", "port": d.proxy.port, "username": d.org_id, "dbName": d.db, "token": req.token,
            "version": 1}


@route("POST", QS + "/queries")
def create_query(d, req: Req):
    body = req.json or {}
    if body.get("dbName") != d.db:
        raise aep_error(400, "QS-400", f"dbName {body.get('dbName')!r} is not a database of sandbox {d.sandbox}")
    if not body.get("sql"):
        raise aep_error(400, "QS-400", "the double runs sql queries only (no templates)")
    qid = d.new_hex()
    q = {"id": qid, "state": "SUBMITTED", "created": _iso(), "updated": _iso(), "name": body.get("name"),
         "request": body, "client": "API", "errors": [], "isCTAS": " AS " in body["sql"].upper(),
         "elapsedTime": 0, "rowCount": 0, "version": 1}
    with d.lock:
        d.queries[qid] = q
    d.spawn(run_query, d, qid)
    return Resp(202, q)


@route("GET", QS + "/queries")
def list_queries(d, req: Req):
    limit = int(req.q("limit", "50") or 50)
    items = sorted(d.queries.values(), key=lambda q: q["created"], reverse=(req.q("orderby", "-created") or "")
                   .startswith("-"))
    return {"queries": items[:limit], "_links": {}, "version": 1}


@route("GET", QS + "/queries/{queryid}")
def get_query(d, req: Req):
    q = d.queries.get(req.arg(0))
    if q is None:
        raise aep_error(404, "QS-404", "query not found")
    return q


@route("PATCH", QS + "/queries/{queryid}")
def patch_query(d, req: Req):
    q = d.queries.get(req.arg(0))
    if q is None:
        raise aep_error(404, "QS-404", "query not found")
    if (req.json or {}).get("op") != "cancel":
        raise aep_error(400, "QS-400", "the double supports op=cancel only")
    with d.lock:
        q["cancel_requested"] = True
        pid = d.query_pids.get(q["id"])
    if pid:
        with d.admin() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
    elif q["state"] in ("SUBMITTED", "IN_PROGRESS"):
        _finish(d, q, "KILLED")
    return Resp(202, {"message": "Query cancel request received", "statusCode": 202})


def _finish(d, q: dict, state: str, errors: list | None = None) -> None:
    with d.lock:
        if q["state"] in ("SUCCESS", "FAILED", "KILLED"):
            return
        q.update(state=state, updated=_iso(), errors=errors or [])


def run_query(d, qid: str) -> None:
    import psycopg2

    q = d.queries[qid]
    if not d.sleep(d.delay_s) or q.get("cancel_requested"):
        _finish(d, q, "KILLED")
        return
    with d.lock:
        q["state"] = "IN_PROGRESS"
    if d.faults.consume("fail_query"):
        d.sleep(d.delay_s)
        _finish(d, q, "FAILED", [{"code": "58000", "message": "injected failure: the query engine failed"}])
        return
    try:
        statements = sqlxlate.translate(q["request"]["sql"], _catalog(d))
    except sqlxlate.TranslationError as exc:
        _finish(d, q, "FAILED", [{"code": "42601", "message": str(exc)}])
        return
    if d.faults.consume("hang_query"):
        statements = ["SELECT pg_sleep(3600)", *statements]
    dropped = [m.group(1) for s in statements if (m := _DROP.match(s))]
    created = [m.group(1) for s in statements if (m := _CREATE.match(s))]
    started = dt.datetime.now()
    try:
        con = d.pg.admin_connect(d.db, autocommit=False)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                with d.lock:
                    d.query_pids[qid] = cur.fetchone()[0]
                if q.get("cancel_requested"):
                    raise psycopg2.errors.QueryCanceled("cancelled before start")
                for stmt in statements:
                    cur.execute(stmt)
                rowcount = max(cur.rowcount, 0)
            con.commit()
        finally:
            with d.lock:
                d.query_pids.pop(qid, None)
            con.close()
    except psycopg2.errors.QueryCanceled:
        _finish(d, q, "KILLED", [{"code": "57014", "message": "query was cancelled"}])
        return
    except psycopg2.Error as exc:
        _finish(d, q, "FAILED", [{"code": exc.pgcode or "XX000", "message": (exc.pgerror or str(exc)).strip()}])
        return
    for table in dropped:
        for ds_id, ds in list(d.datasets.items()):
            if table_of(ds) == table:
                with d.lock:
                    d.datasets.pop(ds_id, None)
                    d.dataset_schemas.pop(ds_id, None)
                    for b in d.batches.values():
                        if b["relatedObjects"][0]["id"] == ds_id:
                            b["status"] = "deleted"
    from . import pgload

    for table in created:
        with d.admin() as cur:
            data = pgload.dump_table(cur, table)
        ds_id = register_dataset(d, table, f"https://ns.adobe.com/{d.tenant}/schemas/adhoc{d.new_hex()}",
                                 tags={"cmle.ctas": ["true"]})
        add_ctas_batch(d, ds_id, data)
    with d.lock:
        q["rowCount"] = rowcount
        q["elapsedTime"] = int((dt.datetime.now() - started).total_seconds() * 1000)
    _finish(d, q, "SUCCESS")


def _catalog(d) -> sqlxlate.Catalog:
    with d.admin() as cur:
        return sqlxlate.load_catalog(cur)
