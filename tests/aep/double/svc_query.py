"""Query Service REST of the double: connection parameters, queries (CTAS) run in
PostgreSQL after translation, polling, cancel.

A query's statements run in one transaction (a ``$$ BEGIN ... END $$`` anonymous block,
the form Query Service documents for chaining statements, is split into its statements).
``CREATE TABLE t AS`` registers ``t`` as a dataset (``adobe/pqs/table`` tag) on a new
ad-hoc schema of the Schema Registry, with its rows as one successful batch; ``INSERT INTO
t SELECT ...`` appends a batch to the dataset of table ``t`` (its columns must be the
dataset's, in order); ``DROP TABLE t`` deletes the dataset of table ``t`` but, as on AEP,
not its ad-hoc schema. Data Distiller's model statements (``CREATE MODEL`` and the rest,
:mod:`.ddml`) run in the double itself; its SQL audiences (``CREATE AUDIENCE``, ``DROP
AUDIENCE``, :mod:`.ddaud`) are checked there and run as the CTAS or DROP TABLE of their
dataset, the audience recorded once that succeeded.
"""

from __future__ import annotations

import datetime as dt
import re

from . import ddaud, ddml, sqlxlate
from .router import Req, Resp, aep_error, route
from .server import new_id
from .svc_catalog import add_ctas_batch, register_dataset, table_of

QS = "/data/foundation/query"
_DROP = re.compile(r'^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?"([^"]+)"', re.IGNORECASE)
_CREATE = re.compile(r'^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"([^"]+)"\s+AS\b', re.IGNORECASE)
_INSERT = re.compile(r'^\s*INSERT\s+INTO\s+"([^"]+)"\s+((?:SELECT|WITH|\().*)$', re.IGNORECASE | re.DOTALL)
ADHOC_CLASS = "https://ns.adobe.com/xdm/data/adhoc"


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
    sql = q["request"]["sql"]
    on_success = None
    if ddaud.is_audience_sql(sql):  # Data Distiller's SQL audiences: checked here, run as their dataset's SQL
        try:
            sql, on_success = _plan_audience_statement(d, sql)
        except ddaud.AudienceError as exc:
            _finish(d, q, "FAILED", [{"code": "42601", "message": str(exc)}])
            return
        except (psycopg2.Error, sqlxlate.TranslationError) as exc:
            message = (getattr(exc, "pgerror", None) or str(exc)).strip()
            _finish(d, q, "FAILED", [{"code": getattr(exc, "pgcode", None) or "42601", "message": message}])
            return
    elif ddml.is_model_sql(sql):  # Data Distiller's SQL ML (CREATE MODEL, ...): run by the double itself
        try:
            sql = _run_model_statement(d, sql)
        except ddml.ModelError as exc:
            _finish(d, q, "FAILED", [{"code": "42601", "message": str(exc)}])
            return
        except psycopg2.Error as exc:
            _finish(d, q, "FAILED", [{"code": exc.pgcode or "XX000", "message": (exc.pgerror or str(exc)).strip()}])
            return
        if sql is None:
            _finish(d, q, "SUCCESS")
            return
    try:
        statements = sqlxlate.translate(sql, _catalog(d))
    except sqlxlate.TranslationError as exc:
        _finish(d, q, "FAILED", [{"code": "42601", "message": str(exc)}])
        return
    if d.faults.consume("hang_query"):
        statements = ["SELECT pg_sleep(3600)", *statements]
    dropped = [m.group(1) for s in statements if (m := _DROP.match(s))]
    created = [m.group(1) for s in statements if (m := _CREATE.match(s))]
    inserts: dict[int, tuple[str, str]] = {}  # statement index -> (dataset table, temp table)
    for i, stmt in enumerate(statements):
        m = _INSERT.match(stmt)
        if m:
            if not any(table_of(ds) == m.group(1) for ds in list(d.datasets.values())):
                _finish(d, q, "FAILED", [{"code": "42P01", "message": f"table {m.group(1)} does not exist"}])
                return
            inserts[i] = (m.group(1), f"__itas_{i}")
            statements[i] = f'CREATE TEMP TABLE "__itas_{i}" AS {m.group(2)}'
    from . import pgload

    started = dt.datetime.now()
    new_batches: list[tuple[str, str, object]] = []  # (table, batch id, Arrow rows)
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
                    m = _DROP.match(stmt)
                    if m:  # a dataset's table is a view over its rows: drop both
                        pgload.drop_dataset_table(cur, m.group(1))
                        continue
                    cur.execute(stmt)
                rowcount = max(cur.rowcount, 0)
                # CTAS results and inserted rows become batches of the dataset (rows table + view).
                for table in created:
                    data = pgload.dump_table(cur, table)
                    cur.execute(f"DROP TABLE {pgload.q(table)}")
                    pgload.create_dataset_table(cur, table, data.schema)
                    b_id = new_id("b")
                    pgload.insert_rows(cur, table, data, b_id, data.schema)
                    new_batches.append((table, b_id, data))
                for table, temp in inserts.values():
                    data = pgload.dump_table(cur, temp)
                    ds_id = next(k for k, v in d.datasets.items() if table_of(v) == table)
                    expected = d.dataset_schemas.get(ds_id)
                    if expected is not None and data.schema.names != expected.names:
                        raise _Mismatch(f"INSERT INTO {table}: the query's columns {data.schema.names} are not the "
                                        f"table's columns {expected.names}")
                    b_id = new_id("b")
                    pgload.insert_rows(cur, table, data, b_id, expected or data.schema)
                    rowcount = data.num_rows
                    new_batches.append((table, b_id, data))
            con.commit()
        finally:
            with d.lock:
                d.query_pids.pop(qid, None)
            con.close()
    except psycopg2.errors.QueryCanceled:
        _finish(d, q, "KILLED", [{"code": "57014", "message": "query was cancelled"}])
        return
    except _Mismatch as exc:
        _finish(d, q, "FAILED", [{"code": "42P10", "message": str(exc)}])
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
    for table, b_id, data in new_batches:
        if table in created and not any(table_of(v) == table for v in list(d.datasets.values())):
            schema_id = register_adhoc_schema(d, table)
            ds_id = register_dataset(d, table, schema_id, tags={"cmle.ctas": ["true"]})
        else:
            ds_id = next(k for k, v in list(d.datasets.items()) if table_of(v) == table)
        add_ctas_batch(d, ds_id, data, b_id)
    if on_success is not None:
        on_success()
    with d.lock:
        q["rowCount"] = rowcount
        q["elapsedTime"] = int((dt.datetime.now() - started).total_seconds() * 1000)
    _finish(d, q, "SUCCESS")


class _Mismatch(Exception):
    pass


def _run_model_statement(d, sql: str) -> str | None:
    """A model statement in one transaction; the SQL to run on (a CTAS over predictions) or None."""
    con = d.pg.admin_connect(d.db, autocommit=False)
    try:
        with con.cursor() as cur:
            out = ddml.run(sql, cur, lambda s: sqlxlate.translate(s, sqlxlate.load_catalog(cur)))
        con.commit()
        return out
    finally:
        con.close()


def _plan_audience_statement(d, sql: str):
    """An audience statement checked against the data (read only): (Spark SQL, on-success hook)."""
    con = d.pg.admin_connect(d.db, autocommit=False)
    try:
        with con.cursor() as cur:
            return ddaud.plan(d, sql, cur, lambda s: sqlxlate.translate(s, sqlxlate.load_catalog(cur)))
    finally:
        con.rollback()
        con.close()


def register_adhoc_schema(d, table: str) -> str:
    """The ad-hoc schema Query Service creates for a CTAS result (class ``adhoc``, fields
    namespaced for that one dataset); its title does not follow the project's names."""
    hexid = d.new_hex()
    s = {"$id": f"https://ns.adobe.com/{d.tenant}/schemas/{hexid}", "meta:altId": f"_{d.tenant}.schemas.{hexid}",
         "title": f"Query Service ad hoc schema {hexid[:12]}", "type": "object",
         "description": f"Schema of the CTAS result {table}", "meta:resourceType": "schemas", "version": "1.0",
         "meta:class": ADHOC_CLASS, "meta:extends": [ADHOC_CLASS], "allOf": [{"$ref": ADHOC_CLASS}],
         "meta:containerId": "tenant"}
    with d.lock:
        d.schemas[s["$id"]] = s
    return s["$id"]


def _catalog(d) -> sqlxlate.Catalog:
    with d.admin() as cur:
        return sqlxlate.load_catalog(cur)
