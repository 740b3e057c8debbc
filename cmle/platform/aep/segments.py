"""Audiences: segment definitions from PQL (get-or-create by name), on-demand evaluation
jobs, activation to a destination dataflow configured in the sandbox.

* Definitions: aepp ``createSegment`` (POST /segment/definitions, the notebooks' payload:
  ``profileInstanceId: ups``, ``schema: _xdm.context.profile``, PQL text). A definition of
  the same name with another rule is updated in place (PATCH), as the embedded platform
  does. Listing pages through ``/segment/definitions`` ourselves (aepp's ``getSegments``
  fans out threads and swallows errors).
* Evaluation: aepp ``createJob`` (POST /segment/jobs), polled to SUCCEEDED / FAILED /
  CANCELLED with a deadline; counts from ``metrics.segmentedProfileCounter``.
* Activation: the destination is the *name* of a batch destination dataflow set up once
  in the sandbox (Destinations UI or API, with its own credentials). The audience (and the
  profile fields to export) are mapped into it with a PATCH (If-Match etag) when missing,
  then ``POST /adhocrun`` (v2; our own call: aepp's ``DestinationInstanceService``
  permanently sets the dataset-export ``Accept`` header) starts an export of it, which is
  polled to its end. Deleting an audience first unmaps it from every dataflow. When no
  such dataflow exists the activation is reported as failed with what to set up, rather
  than guessing a destination.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable

from cmle.errors import PlatformError
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.errors import AEPError, TransientError
from cmle.platform.aep.http import AEPNotFound
from cmle.platform.base import Activation, Audience, Resource

log = logging.getLogger(__name__)

PROFILE_SCHEMA = "_xdm.context.profile"
JOB_DONE = {"SUCCEEDED"}
JOB_FAILED = {"FAILED", "CANCELLED"}
ADHOC_V2_ACCEPT = "application/vnd.adobe.adhoc.activation+json; version=2"
PAGE = 100


class AudienceService:
    def __init__(self, client: AEPClient, tenant: Callable[[], str], poll_s: float = 10.0, ttl_days: int = 60):
        self.c = client
        self.tenant = tenant
        self.poll_s = poll_s
        self.ttl_days = ttl_days

    # --- definitions -----------------------------------------------------------------------
    def list_definitions(self) -> list[dict]:
        out: list[dict] = []
        start = 0
        while True:
            body = self.c.get("segmentation", "/segment/definitions", params={"limit": PAGE, "start": start},
                              what="list segment definitions")
            page = [s for s in (body.get("segments") or []) if isinstance(s, dict)] if isinstance(body, dict) else []
            out += page
            if len(page) < PAGE:
                return out
            start += PAGE

    def _find(self, name: str) -> dict | None:
        found = [s for s in self.list_definitions() if s.get("name") == name]
        return found[0] if found else None

    def _body(self, name: str, pql: str, description: str) -> dict:
        return {"name": name, "description": description or name, "profileInstanceId": "ups",
                "expression": {"type": "PQL", "format": "pql/text", "value": pql},
                "schema": {"name": PROFILE_SCHEMA}, "evaluationInfo": {"batch": {"enabled": True}},
                "payloadSchema": "string", "ttlInDays": self.ttl_days}

    def get_or_create_audience(self, name: str, pql: str, description: str = "") -> Audience:
        body = self._body(name, pql, description)
        found = self._find(name)
        if found is None:
            res, _ = self.c.transport.create_once(what=f"create audience {name!r}",
                                                 create=lambda: self.c.segmentation.createSegment(body),
                                                 find=lambda: self._find(name))
            if not isinstance(res, dict) or not res.get("id"):
                raise PlatformError(f"create audience {name!r}: unexpected answer: {str(res)[:300]}")
            log.info("created audience %r (%s)", name, res["id"])
            return Audience(id=str(res["id"]), name=name, pql=pql, description=description)
        if (found.get("expression") or {}).get("value") != pql or (found.get("description") or "") != body["description"]:
            patch = {k: v for k, v in body.items() if k != "ttlInDays"}
            self.c.transport.request("PATCH", self.c.url("segmentation", f"/segment/definitions/{found['id']}"),
                                     safe=True, json=patch, what=f"update audience {name!r}")
            log.info("updated the rule of audience %r", name)
        return Audience(id=str(found["id"]), name=name, pql=pql, description=description)

    def delete(self, segment_id: str) -> None:
        """Delete a definition, after unmapping it from destination dataflows (AEP refuses to
        delete an activated audience)."""
        self._unmap_everywhere(segment_id)
        try:
            self.c.transport.call(lambda: self.c.segmentation.deleteSegment(segment_id),
                                  what=f"delete audience {segment_id}")
        except AEPNotFound:
            pass

    def _unmap_everywhere(self, segment_id: str) -> None:
        params: dict[str, Any] = {"limit": 100}
        while True:
            body = self.c.get("flow", "/flows", params=dict(params), what="list dataflows")
            for flow in body.get("items") or []:
                for t_i, t in enumerate(flow.get("transformations") or []):
                    selectors = ((t.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []
                    for s_i, sel in reversed(list(enumerate(selectors))):
                        if isinstance(sel, dict) and (sel.get("value") or {}).get("id") == segment_id:
                            self._unmap(flow["id"], t_i, s_i, segment_id)
            nxt = ((body.get("_links") or {}).get("next") or {}).get("href", "")
            if "continuationToken=" not in nxt:
                return
            params["continuationToken"] = nxt.split("continuationToken=", 1)[1].split("&")[0]

    def _unmap(self, flow_id: str, t_i: int, s_i: int, segment_id: str) -> None:
        """Remove one selector; re-read the flow (and its etag) on every attempt: a removal whose
        answer was lost must not remove the next selector."""
        path = f"/transformations/{t_i}/params/segmentSelectors/selectors/{s_i}"
        for _ in range(5):
            resp = self.c.transport.request("GET", self.c.url("flow", f"/flows/{flow_id}"), safe=True,
                                            what=f"read dataflow {flow_id}")
            flow = (resp.json().get("items") or [{}])[0]
            selectors = (((flow.get("transformations") or [{}])[t_i].get("params") or {}).get("segmentSelectors")
                         or {}).get("selectors") or []
            if s_i >= len(selectors) or (selectors[s_i].get("value") or {}).get("id") != segment_id:
                return
            try:
                self.c.transport.send("PATCH", self.c.url("flow", f"/flows/{flow_id}"),
                                      json=[{"op": "REMOVE", "path": path, "value": {}}],
                                      headers={"If-Match": flow.get("etag") or resp.headers.get("etag", "")})
                log.info("unmapped audience %s from dataflow %s", segment_id, flow_id)
                return
            except TransientError:
                time.sleep(self.c.transport.policy.delay(0))
            except AEPError as exc:
                if exc.status != 412:
                    raise

    def list_resources(self) -> list[Resource]:
        return [Resource("audience", s["id"], s.get("name", "")) for s in self.list_definitions() if s.get("id")]

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self, audience_ids: list[str], timeout_s: float = 1800.0) -> dict[str, int]:
        if not audience_ids:
            return {}
        started = time.time()
        wanted = set(audience_ids)

        def find():
            body = self.c.get("segmentation", "/segment/jobs", params={"limit": 50, "sort": "creationTime:desc"},
                              what="list segment jobs")
            for job in (body.get("children") or []) if isinstance(body, dict) else []:
                ids = {s.get("segmentId") for s in job.get("segments") or []}
                if ids == wanted and (job.get("creationTime") or 0) / 1000.0 >= started - 5:
                    return job
            return None

        job, _ = self.c.transport.create_once(what="start a segment evaluation job",
                                             create=lambda: self.c.segmentation.createJob(list(audience_ids)),
                                             find=find)
        if not isinstance(job, dict) or not job.get("id"):
            raise PlatformError(f"start a segment evaluation job: unexpected answer: {str(job)[:300]}")
        job_id = job["id"]
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.c.transport.call(lambda: self.c.segmentation.getJob(job_id), what=f"poll segment job {job_id}")
            status = str(job.get("status", "")).upper()
            if status in JOB_DONE:
                counts = (job.get("metrics") or {}).get("segmentedProfileCounter") or {}
                return {aid: int(counts.get(aid, 0)) for aid in audience_ids}
            if status in JOB_FAILED:
                errors = job.get("errors") or []
                raise PlatformError(f"segment job {job_id} ended {status}: {str(errors)[:400] or 'no reason given'}")
            if time.monotonic() >= deadline:
                raise PlatformError(f"segment job {job_id} still {status or 'unknown'} after {timeout_s:.0f} s; "
                                    "re-run the stage later (the audiences exist, only counts are missing)")
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    # --- activation ------------------------------------------------------------------------
    def _destination_flow(self, destination: str) -> tuple[dict, str]:
        resp = self.c.transport.request("GET", self.c.url("flow", "/flows"), safe=True,
                                        params={"property": f"name=={destination}"},
                                        what=f"look up destination dataflow {destination!r}")
        items = [i for i in (resp.json().get("items") or []) if i.get("name") == destination]
        if not items:
            raise LookupError(destination)
        flow = items[0]
        etag = flow.get("etag") or resp.headers.get("etag", "")
        return flow, etag

    def _mapped(self, flow: dict, audience_id: str) -> bool:
        for t in flow.get("transformations") or []:
            for sel in ((t.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []:
                if isinstance(sel, dict) and (sel.get("value") or {}).get("id") == audience_id:
                    return True
        return False

    def _map_audience(self, flow: dict, etag: str, audience: Audience, fields: list[str]) -> None:
        tenant = f"_{self.tenant()}"
        params = ((flow.get("transformations") or [{}])[0].get("params") or {})
        have = {((s.get("value") or {}).get("path")) for s in (params.get("profileSelectors") or {}).get("selectors") or []
                if isinstance(s, dict)}
        today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        # Upper-case ops: flow-service.yaml's PATCH /flows declares ADD/REPLACE/REMOVE, and
        # destinations.yaml's oneOf of three identical segment selectors admits no selector.
        ops: list[dict[str, Any]] = [{"op": "ADD", "path": "/transformations/0/params/segmentSelectors/selectors/-",
                                      "value": {"type": "PLATFORM_SEGMENT", "value": {
                                          "id": audience.id, "name": audience.name, "exportMode": "DAILY_FULL_EXPORT",
                                          "schedule": {"frequency": "ONCE", "startDate": today}}}}]
        for f in ["userid", *fields]:
            path = f"{tenant}.{f}"
            if path not in have:
                ops.append({"op": "ADD", "path": "/transformations/0/params/profileSelectors/selectors/-",
                            "value": {"type": "JSON_PATH", "value": {"path": path, "operator": "EXISTS"}}})

        def patch():
            return self.c.transport.send("PATCH", self.c.url("flow", f"/flows/{flow['id']}"), json=ops,
                                         headers={"If-Match": etag})

        def find():
            current, _ = self._destination_flow(flow["name"])
            return current if self._mapped(current, audience.id) else None

        self.c.transport.create_once(what=f"map audience {audience.name!r} into {flow['name']!r}", create=patch,
                                     find=find)

    def activate(self, audience: Audience, destination: str, fields: list[str], timeout_s: float = 3600.0) -> Activation:
        try:
            flow, etag = self._destination_flow(destination)
        except LookupError:
            return Activation(audience_id=audience.id, destination=destination, status="failed", members=0,
                              detail=f"no destination dataflow named {destination!r} in sandbox {self.c.sandbox!r}: "
                                     "set up a batch (file-based) destination and its dataflow once in the AEP UI "
                                     "(Destinations > Catalog), then pass its dataflow name as the destination")
        try:
            if not self._mapped(flow, audience.id):
                self._map_audience(flow, etag, audience, fields)
            started = time.time()
            body = {"activationInfo": {flow["id"]: [audience.id]}}

            def find():
                resp = self.c.get("flow", "/runs", params={"property": f"flowId=={flow['id']}"}, what="list runs")
                runs = [r for r in resp.get("items") or [] if (r.get("createdAt") or 0) / 1000.0 >= started - 5]
                return {"order": [{"statusURL": f"/runs/{runs[-1]['id']}"}]} if runs else None

            res, _ = self.c.transport.create_once(
                what=f"ad-hoc activation of {audience.name!r}",
                create=lambda: self.c.transport.json("POST", self.c.url("activation", "/adhocrun"), safe=False,
                                                     json=body, headers={"Accept": ADHOC_V2_ACCEPT}),
                find=find)
            url = (res.get("order") or [{}])[0].get("statusURL", "")
            if not url:
                raise PlatformError(f"ad-hoc activation of {audience.name!r}: unexpected answer: {str(res)[:300]}")
            run_id = url.rstrip("/").rsplit("/", 1)[-1]
            run = self._wait_run(run_id, time.monotonic() + timeout_s)
            records = ((run.get("metrics") or {}).get("recordSummary") or {}).get("outputRecordCount", 0)
            return Activation(audience_id=audience.id, destination=destination, status="success",
                              members=int(records or 0), location=f"dataflow {flow['id']} run {run_id}")
        except (AEPError, PlatformError) as exc:
            return Activation(audience_id=audience.id, destination=destination, status="failed", members=0,
                              detail=str(exc))

    def _wait_run(self, run_id: str, deadline: float) -> dict:
        while True:
            try:
                items = self.c.get("flow", f"/runs/{run_id}", what=f"poll activation run {run_id}").get("items") or []
            except AEPNotFound:
                items = []
            status = str(((items[0] if items else {}).get("status") or {}).get("value", "")).lower()
            if status in ("success", "succeeded", "completed"):
                return items[0]
            if status in ("failed", "cancelled", "canceled"):
                raise PlatformError(f"activation run {run_id} ended {status}: "
                                    f"{str((items[0].get('status') or {}).get('errors'))[:300]}")
            if time.monotonic() >= deadline:
                raise PlatformError(f"activation run {run_id} did not finish in time (status {status or 'not visible'})")
            time.sleep(self.poll_s)
