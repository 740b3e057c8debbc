"""Audiences: segment definitions from PQL (get-or-create by name), on-demand evaluation
jobs, activation to a destination dataflow configured in the sandbox.

* Definitions: aepp ``createSegment`` (POST /segment/definitions, the notebooks' payload:
  ``profileInstanceId: ups``, ``schema: _xdm.context.profile``, PQL text). A definition of
  the same name with another rule is updated in place (PATCH), as the embedded platform
  does. Listing pages through ``/segment/definitions`` ourselves, following the API's own
  paging (``start`` is an offset "as per created time of resource", so the next page
  starts where ``_page.next`` says, never at ``start + limit``); aepp's ``getSegments``
  fans out threads and swallows errors.
* Evaluation: aepp ``createJob`` (POST /segment/jobs), polled to SUCCEEDED / FAILED /
  CANCELLED with a deadline; counts from ``metrics.segmentedProfileCounter``. A job is
  not created again when nothing changed: the newest successful job over the same
  audiences, started after their definitions and the Profile data they read last changed,
  is reused.
* Activation: the destination is the *name* of a batch destination dataflow set up once
  in the sandbox (Destinations UI or API, with its own credentials). The audience (and the
  profile fields to export) are mapped into it with a PATCH (If-Match etag) when missing,
  in the shape destinations.yaml documents for destination dataflows (RFC 6902 ``add`` /
  ``remove``, a ``PLATFORM_SEGMENT`` selector with a ``DAILY_FULL_EXPORT`` schedule), then
  ``POST /adhocrun`` (v2; our own call: aepp's ``DestinationInstanceService`` permanently
  sets the dataset-export ``Accept`` header) starts an export of it, which is polled to
  its end. Deleting an audience first unmaps it from every dataflow. When no such dataflow
  exists the activation is reported as failed with what to set up, rather than guessing a
  destination.
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


def _next_start(body: dict) -> Any:
    """The ``start`` of the next page, from ``_page.next`` or a ``next`` link; None at the end."""
    nxt = (body.get("_page") or {}).get("next")
    if nxt not in (None, ""):
        return nxt
    for links in (body.get("link"), body.get("_links")):
        href = ((links or {}).get("next") or {}).get("href", "") if isinstance(links, dict) else ""
        if "start=" in href:
            return href.split("start=", 1)[1].split("&")[0] or None
    return None


FILENAME_TEMPLATE = "%DESTINATION_NAME%_%SEGMENT_ID%_%DATETIME(YYYYMMdd_HHmmss)%"


def segment_selector_ops(audience: Audience, tenant: str, flow: dict, fields: list[str],
                         now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The PATCH of a destination dataflow that maps ``audience`` (and the profile fields it
    exports) into it, in the shape of destinations.yaml's ``patchFlowById`` examples: one
    ``add`` of a ``PLATFORM_SEGMENT`` selector exported once as a full file at the next full
    hour (UTC; ``DAILY_FULL_EXPORT`` needs a trigger type and, for ``SCHEDULED``, a start
    time whose minutes are 00), and one ``add`` per missing profile attribute."""
    now = now or dt.datetime.now(dt.timezone.utc)
    start = (now + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    root = f"_{tenant}"
    params = ((flow.get("transformations") or [{}])[0].get("params") or {})
    have = {((s.get("value") or {}).get("path")) for s in (params.get("profileSelectors") or {}).get("selectors") or []
            if isinstance(s, dict)}
    ops: list[dict[str, Any]] = [{"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
                                  "value": {"type": "PLATFORM_SEGMENT", "value": {
                                      "id": audience.id, "name": audience.name,
                                      "filenameTemplate": FILENAME_TEMPLATE, "exportMode": "DAILY_FULL_EXPORT",
                                      "schedule": {"frequency": "ONCE", "triggerType": "SCHEDULED",
                                                   "startDate": start.strftime("%Y-%m-%d"),
                                                   "startTime": start.strftime("%H:00")}}}}]
    for f in ["userid", *fields]:
        path = f"{root}.{f}"
        if path not in have:
            ops.append({"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
                        "value": {"type": "JSON_PATH", "value": {"path": path, "operator": "EXISTS"}}})
    return ops


def _counts(job: dict, audience_ids: list[str]) -> dict[str, int]:
    counts = (job.get("metrics") or {}).get("segmentedProfileCounter") or {}
    return {aid: int(counts.get(aid, 0)) for aid in audience_ids}


class AudienceService:
    def __init__(self, client: AEPClient, tenant: Callable[[], str], poll_s: float = 10.0, ttl_days: int = 60,
                 data_changed_at: Callable[[], float] | None = None, page_size: int = PAGE):
        self.c = client
        self.tenant = tenant
        self.poll_s = poll_s
        self.ttl_days = ttl_days
        # Epoch seconds of the last change of the Profile data the audiences read (None: unknown,
        # then every evaluation runs a new job).
        self.data_changed_at = data_changed_at
        self.page_size = page_size
        self.jobs_reused = 0

    # --- definitions -----------------------------------------------------------------------
    def list_definitions(self) -> list[dict]:
        """Every segment definition, following the API's ``_page.next`` (or ``link.next``)."""
        out: list[dict] = []
        seen: set[str] = set()
        params: dict[str, Any] = {"limit": self.page_size}
        while True:
            body = self.c.get("segmentation", "/segment/definitions", params=dict(params),
                              what="list segment definitions")
            body = body if isinstance(body, dict) else {}
            page = [s for s in (body.get("segments") or []) if isinstance(s, dict)]
            out += [s for s in page if s.get("id") not in seen]
            seen |= {s.get("id") for s in page}
            nxt = _next_start(body)
            if not page or nxt is None or str(nxt) == str(params.get("start")):
                return out
            params["start"] = nxt

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
                # destinations.yaml: RFC 6902 ops in lower case, the removed selector as the value.
                self.c.transport.send("PATCH", self.c.url("flow", f"/flows/{flow_id}"),
                                      json=[{"op": "remove", "path": path, "value": selectors[s_i]}],
                                      headers={"If-Match": flow.get("etag") or resp.headers.get("etag", "")})
                log.info("unmapped audience %s from dataflow %s", segment_id, flow_id)
                return
            except TransientError as exc:
                self.c.transport.sleep(self.c.transport.policy.delay(0, getattr(exc, "retry_after", None)))
            except AEPError as exc:
                if exc.status != 412:
                    raise

    def list_resources(self) -> list[Resource]:
        return [Resource("audience", s["id"], s.get("name", "")) for s in self.list_definitions() if s.get("id")]

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self, audience_ids: list[str], timeout_s: float = 1800.0) -> dict[str, int]:
        if not audience_ids:
            return {}
        wanted = set(audience_ids)
        reusable = self._reusable_job(wanted)
        if reusable is not None:
            self.jobs_reused += 1
            log.info("segment job %s already evaluated these audiences after their last change; reusing its counts",
                     reusable["id"])
            return _counts(reusable, audience_ids)
        started = time.time()

        def find():
            for job in self._recent_jobs():
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
                return _counts(job, audience_ids)
            if status in JOB_FAILED:
                errors = job.get("errors") or []
                raise PlatformError(f"segment job {job_id} ended {status}: {str(errors)[:400] or 'no reason given'}")
            if time.monotonic() >= deadline:
                raise PlatformError(f"segment job {job_id} still {status or 'unknown'} after {timeout_s:.0f} s; "
                                    "re-run the stage later (the audiences exist, only counts are missing)")
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def _recent_jobs(self) -> list[dict]:
        body = self.c.get("segmentation", "/segment/jobs", params={"limit": 50, "sort": "creationTime:desc"},
                          what="list segment jobs")
        return [j for j in (body.get("children") or []) if isinstance(j, dict)] if isinstance(body, dict) else []

    def _reusable_job(self, wanted: set[str]) -> dict | None:
        """The newest successful job over exactly ``wanted`` that started after the
        definitions and the Profile data last changed; None when there is none (or the
        data's last change cannot be told)."""
        if self.data_changed_at is None:
            return None
        definitions = {}
        for audience_id in sorted(wanted):
            try:
                definitions[audience_id] = self.c.get("segmentation", f"/segment/definitions/{audience_id}",
                                                      what=f"read audience {audience_id}")
            except AEPNotFound:
                return None
        changed_ms = max([self.data_changed_at() * 1000.0,
                          *((s.get("updateTime") or s.get("creationTime") or 0) for s in definitions.values())])
        for job in self._recent_jobs():
            segments = job.get("segments") or []
            if {x.get("segmentId") for x in segments} != wanted or str(job.get("status", "")).upper() not in JOB_DONE:
                continue
            if (job.get("creationTime") or 0) <= changed_ms:
                return None  # newest matching job is older than the last change
            same_rules = all((((x.get("segment") or {}).get("expression") or {}).get("value")
                              in (None, (definitions[x.get("segmentId")].get("expression") or {}).get("value")))
                             for x in segments)
            return job if same_rules else None
        return None

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
        ops = segment_selector_ops(audience, self.tenant(), flow, fields)

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
