"""Dataset Service of the double: data usage labels of datasets (with etags)."""

from __future__ import annotations

from .router import Req, Resp, aep_error, route
from .server import new_id

DS = "/data/foundation/dataset"


def _dataset(d, ds_id: str) -> None:
    if ds_id not in d.datasets:
        raise aep_error(404, "DS-404", f"dataset {ds_id} not found")


@route("GET", DS + "/datasets/{DATASET_ID}/labels")
def get_labels(d, req: Req):
    _dataset(d, req.arg(0))
    entry = d.labels.get(req.arg(0))
    if entry is None:
        raise aep_error(404, "DS-404", "the dataset has no labels")
    body, etag = entry
    return Resp(200, body, {"etag": etag})


@route("POST", DS + "/datasets/{DATASET_ID}/labels")
def add_labels(d, req: Req):
    _dataset(d, req.arg(0))
    if req.arg(0) in d.labels:
        raise aep_error(403, "DS-403", "labels already exist: use PUT")
    body = {"labels": list((req.json or {}).get("labels") or []),
            "optionalLabels": list((req.json or {}).get("optionalLabels") or [])}
    etag = f'"{new_id()}"'
    with d.lock:
        d.labels[req.arg(0)] = (body, etag)
    return Resp(201, body, {"etag": etag})


@route("PUT", DS + "/datasets/{DATASET_ID}/labels")
def put_labels(d, req: Req):
    _dataset(d, req.arg(0))
    entry = d.labels.get(req.arg(0))
    if entry is None:
        raise aep_error(404, "DS-404", "the dataset has no labels: use POST")
    if req.header("if-match") != entry[1]:
        raise aep_error(412, "DS-412", "If-Match does not match the labels' etag")
    body = {"labels": list((req.json or {}).get("labels") or []),
            "optionalLabels": list((req.json or {}).get("optionalLabels") or [])}
    etag = f'"{new_id()}"'
    with d.lock:
        d.labels[req.arg(0)] = (body, etag)
    return Resp(200, body, {"etag": etag})
