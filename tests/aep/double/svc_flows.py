"""Flow Service, ad-hoc activation and the Data Landing Zone of the double.

A dataset-export run writes the dataset's files (its successful batches, rewritten with the
target's compression) to ``{landing_zone}/{path}/{dataset_id}/exportTime=YYYYMMDDHHMMSS/``,
the layout AEP uses. An audience activation run writes the members to
``{landing_zone}/activations/{flow_id}/``. Runs are asynchronous; a run armed with the
``hang_run`` fault never finishes, ``fail_run`` fails it, ``not_ready`` makes ``/adhocrun``
answer that the flow is not ready yet (as AEP does for about 10 minutes after a flow is
created; also ``flow_ready_s``).
"""

from __future__ import annotations

import datetime as dt
import io
import time

import pyarrow as pa
import pyarrow.parquet as pq

from .router import HTTPErr, Req, Resp, aep_error, matches_filters, property_filter, route
from .server import new_id, now_ms

FS = "/data/foundation/flowservice"
ACT = "/data/core/activation/disflowprovider"
LZ = "/data/foundation/connectors/landingzone"
DATASET_ADHOC = "application/vnd.adobe.adhoc.dataset.activation+json"
STORES = {"connections": "connections", "sourceConnections": "source_connections",
          "targetConnections": "target_connections", "flows": "flows"}


def _store(d, kind: str) -> dict:
    return getattr(d, STORES[kind])


def _create(d, kind: str, req: Req, check=None):
    body = req.json or {}
    if not body.get("name"):
        raise aep_error(400, "FS-400", f"a {kind[:-1]} needs a name")
    if check:
        check(body)
    item = {**body, "id": new_id(), "etag": f'"{new_id()}"', "createdAt": now_ms(), "updatedAt": now_ms(),
            "state": "enabled"}
    if kind == "flows":  # ready for ad-hoc runs flow_ready_s after it was made (AEP: about 10 minutes)
        item["readyAt"] = item["createdAt"] + int(d.flow_ready_s * 1000)
    with d.lock:
        _store(d, kind)[item["id"]] = item
    return Resp(201, {"id": item["id"], "etag": item["etag"]})


def _list(d, kind: str, req: Req):
    filters = property_filter(req.q("property"))
    items = [i for i in _store(d, kind).values() if matches_filters(i, filters)]
    return {"items": sorted(items, key=lambda i: i["createdAt"]), "_links": {}}


def _get(d, kind: str, item_id: str):
    item = _store(d, kind).get(item_id)
    if item is None:
        raise aep_error(404, "FS-404", f"{kind[:-1]} {item_id} not found")
    return item


def _delete(d, kind: str, item_id: str, in_use) -> Resp:
    _get(d, kind, item_id)
    if in_use:
        raise aep_error(400, "FS-409", f"{kind[:-1]} {item_id} is used by {in_use}")
    with d.lock:
        _store(d, kind).pop(item_id, None)
    return Resp(204)


for _kind in ("connections", "sourceConnections", "targetConnections", "flows"):
    def _make(kind):
        @route("GET", f"{FS}/{kind}")
        def list_items(d, req: Req):
            return _list(d, kind, req)

        @route("GET", f"{FS}/{kind}/{{id}}")
        def get_item(d, req: Req):
            return {"items": [_get(d, kind, req.arg(0))]}

    _make(_kind)


@route("POST", FS + "/connections")
def create_connection(d, req: Req):
    return _create(d, "connections", req)


@route("POST", FS + "/targetConnections")
def create_target(d, req: Req):
    def check(body):
        if body.get("baseConnectionId") and body["baseConnectionId"] not in d.connections:
            raise aep_error(400, "FS-400", f"base connection {body['baseConnectionId']} does not exist")
    return _create(d, "targetConnections", req, check)


@route("POST", FS + "/sourceConnections")
def create_source(d, req: Req):
    def check(body):
        for ds in (body.get("params") or {}).get("datasets") or []:
            if ds.get("dataSetId") not in d.datasets:
                raise aep_error(400, "FS-400", f"dataset {ds.get('dataSetId')} does not exist")
    return _create(d, "sourceConnections", req, check)


@route("POST", FS + "/flows")
def create_flow(d, req: Req):
    def check(body):
        for s in body.get("sourceConnectionIds") or []:
            if s not in d.source_connections:
                raise aep_error(400, "FS-400", f"source connection {s} does not exist")
        for t in body.get("targetConnectionIds") or []:
            if t not in d.target_connections:
                raise aep_error(400, "FS-400", f"target connection {t} does not exist")
    return _create(d, "flows", req, check)


@route("DELETE", FS + "/connections/{id}")
def delete_connection(d, req: Req):
    users = [t["id"] for t in d.target_connections.values() if t.get("baseConnectionId") == req.arg(0)]
    return _delete(d, "connections", req.arg(0), users)


@route("DELETE", FS + "/sourceConnections/{id}")
def delete_source(d, req: Req):
    users = [f["id"] for f in d.flows.values() if req.arg(0) in (f.get("sourceConnectionIds") or [])]
    return _delete(d, "sourceConnections", req.arg(0), users)


@route("DELETE", FS + "/targetConnections/{id}")
def delete_target(d, req: Req):
    users = [f["id"] for f in d.flows.values() if req.arg(0) in (f.get("targetConnectionIds") or [])]
    return _delete(d, "targetConnections", req.arg(0), users)


@route("DELETE", FS + "/flows/{id}")
def delete_flow(d, req: Req):
    return _delete(d, "flows", req.arg(0), [])


@route("POST", FS + "/flows/{id}/action")
def flow_action(d, req: Req):
    flow = _get(d, "flows", req.arg(0))
    op = req.q("op")
    if op not in ("enable", "disable"):
        raise aep_error(400, "FS-400", f"op {op} is not supported")
    with d.lock:
        flow["state"] = "enabled" if op == "enable" else "disabled"
    return {"id": flow["id"], "etag": flow["etag"]}


@route("PATCH", FS + "/flows/{id}")
def patch_flow(d, req: Req):
    flow = _get(d, "flows", req.arg(0))
    if req.header("if-match") != flow["etag"]:
        raise aep_error(412, "FS-412", "If-Match does not match the flow's etag")
    with d.lock:
        for op in req.json or []:
            _apply_patch(flow, op)
        flow["etag"] = f'"{new_id()}"'
        flow["updatedAt"] = now_ms()
    return {"id": flow["id"], "etag": flow["etag"]}


def _apply_patch(obj: dict, op: dict) -> None:
    op = {**op, "op": op["op"].lower()}
    parts = [p for p in op["path"].strip("/").split("/")]
    cur = obj
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(p)]
        else:
            cur = cur.setdefault(p, {} if not p.isdigit() else [])
    last = parts[-1]
    if isinstance(cur, list):
        if op["op"] == "remove":
            del cur[int(last)]
        elif last == "-":
            cur.append(op["value"])
        else:
            cur.insert(int(last), op["value"])
    elif op["op"] in ("add", "replace"):
        if isinstance(cur.get(last), list) and op["op"] == "add" and isinstance(op["value"], dict):
            cur[last].append(op["value"])
        else:
            cur[last] = op["value"]
    elif op["op"] == "remove":
        cur.pop(last, None)


# --- runs -------------------------------------------------------------------------------------------
@route("GET", FS + "/runs")
def list_runs(d, req: Req):
    filters = property_filter(req.q("property"))
    items = [r for r in d.runs.values() if matches_filters(r, filters)]
    return {"items": sorted(items, key=lambda r: r["createdAt"]), "_links": {}}


@route("GET", FS + "/runs/{RUN_ID}")
def get_run(d, req: Req):
    run = d.runs.get(req.arg(0))
    if run is None or not run.get("visible", True):
        return {"items": []}  # AEP lists a fresh run a little later
    return {"items": [run]}


def _new_run(d, flow_id: str, what: dict) -> dict:
    run = {"id": new_id(), "flowId": flow_id, "createdAt": now_ms(), "updatedAt": now_ms(),
           "status": {"value": "inProgress", "errors": []}, "metrics": {}, "visible": False, **what}
    with d.lock:
        d.runs[run["id"]] = run
    return run


@route("POST", ACT + "/adhocrun")
def adhoc_run(d, req: Req):
    body = req.json or {}
    if DATASET_ADHOC in req.header("accept"):
        out = []
        for dest in body["activationInfo"]["destinations"]:
            flow = d.flows.get(dest["flowId"])
            if flow is None:
                raise aep_error(400, "ADHOC-400", f"flow {dest['flowId']} does not exist")
            ready_at = flow.get("readyAt", flow["createdAt"] + d.flow_ready_s * 1000)
            if d.faults.consume("not_ready") or time.time() * 1000 < ready_at:
                raise HTTPErr(400, {"error_code": "DSA-400", "message": f"Following order ID(s) are not ready for "
                                    f"dataset export, please wait for 10 minutes and retry : {flow['id']}"})
            datasets = []
            for ds in dest["datasets"]:
                run = _new_run(d, flow["id"], {"datasetId": ds["id"]})
                d.spawn(run_export, d, run["id"])
                datasets.append({"id": ds["id"], "flowId": flow["id"],
                                 "statusURL": f"https://platform.adobe.io{FS}/runs/{run['id']}"})
            out.append({"datasets": datasets})
        return {"destinations": out}
    order = []
    for flow_id, segment_ids in (body.get("activationInfo") or {}).items():
        flow = d.flows.get(flow_id)
        if flow is None:
            raise aep_error(400, "ADHOC-400", f"destination {flow_id} does not exist")
        for seg in segment_ids:
            mapped = [s for t in flow.get("transformations") or [] for s in
                      ((t.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []
                      if (s.get("value") or {}).get("id") == seg]
            if not mapped:
                raise aep_error(400, "ADHOC-422", f"audience {seg} is not mapped to destination {flow_id}")
            run = _new_run(d, flow_id, {"segmentId": seg})
            d.spawn(run_activation, d, run["id"])
            order.append({"segment": seg, "order": flow_id, "statusURL": f"https://platform.adobe.io{FS}/runs/{run['id']}"})
    return {"order": order}


def _end_run(d, run: dict, value: str, metrics: dict | None = None, errors: list | None = None) -> None:
    with d.lock:
        run["status"] = {"value": value, "errors": errors or []}
        run["metrics"] = metrics or {}
        run["updatedAt"] = now_ms()


def run_export(d, run_id: str) -> None:
    run = d.runs[run_id]
    d.sleep(d.delay_s)
    with d.lock:
        run["visible"] = True
    if d.faults.consume("hang_run"):
        return  # stays inProgress
    if not d.sleep(d.delay_s):
        return
    if d.faults.consume("fail_run"):
        _end_run(d, run, "failed", errors=[{"code": "EXPORT-500", "message": "injected failure: the export failed"}])
        return
    flow = d.flows[run["flowId"]]
    target = d.target_connections[flow["targetConnectionIds"][0]]
    params = target.get("params") or {}
    ds_id = run["datasetId"]
    tables = []
    for b_id, b in sorted(d.batches.items(), key=lambda kv: kv[1]["created"]):
        if b["relatedObjects"][0]["id"] == ds_id and b["status"] == "success":
            for name, data in sorted(d.batch_files.get(b_id, {}).items()):
                if not name.startswith("__chunks__/"):
                    tables.append(pq.read_table(io.BytesIO(data)))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    folder = d.landing_zone / params.get("path", "") / ds_id / f"exportTime={stamp}"
    tmp = folder.with_name("." + folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    compression = (params.get("compression") or "NONE").lower()
    rows = 0
    if tables:
        table = pa.concat_tables(tables, promote_options="default")
        rows = table.num_rows
        pq.write_table(table, tmp / "part-00000.parquet", compression=None if compression == "none" else compression)
    if folder.exists():  # one export per second: AEP's folder names have second resolution
        time.sleep(1.0)
        return run_export(d, run_id)
    tmp.rename(folder)
    _end_run(d, run, "success", {"recordSummary": {"outputRecordCount": rows},
                                 "fileSummary": {"outputFileCount": 1 if tables else 0},
                                 "durationSummary": {"startedAtUTC": run["createdAt"], "completedAtUTC": now_ms()}})


def run_activation(d, run_id: str) -> None:
    from .svc_segments import evaluate_members

    run = d.runs[run_id]
    d.sleep(d.delay_s)
    with d.lock:
        run["visible"] = True
    if d.faults.consume("hang_run"):
        return
    members = evaluate_members(d, run["segmentId"])
    folder = d.landing_zone / "activations" / run["flowId"]
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(members, preserve_index=False), folder / f"{run['segmentId']}.parquet")
    _end_run(d, run, "success", {"recordSummary": {"outputRecordCount": len(members)}})


# --- Data Landing Zone -------------------------------------------------------------------------------------
@route("GET", LZ + "/credentials")
def landing_zone_credentials(d, req: Req):
    kind = req.q("type")
    container = "dlz-destination" if kind == "dlz_destination" else "dlz-user-container"
    expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sas = d.dlz_sas_token
    return {"containerName": container, "SASToken": sas, "storageAccountName": "cmledoubledlz",
            "SASUri": f"https://cmledoubledlz.blob.core.windows.net/{container}?{sas}", "expiryDate": expiry}

