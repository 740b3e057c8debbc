"""The profile union as a dataset, through a Segmentation export job.

AEP exposes merged (union) profiles to Query Service only through a dataset: an export job
(``POST /export/jobs``, segmentation.yaml) writes them, merged by a merge policy, into a
dataset based on the XDM Individual Profile union schema (Adobe's "export jobs" guide). So:

* the dataset is get-or-create by the owner's deterministic name (:mod:`cmle.naming`), on
  ``https://ns.adobe.com/xdm/context/profile__union``, with the owner tag cleanup follows;
* the merge policy is the spec's id, checked with ``GET /config/mergePolicies/{id}``, or the
  sandbox's default for the profile schema (``GET /config/mergePolicies?default=true``);
* an export job is started for ``identityMap`` and the fields the spec reads (dot notation),
  and polled to SUCCEEDED/FAILED with a deadline; its creation goes through
  :meth:`~cmle.platform.aep.http.Transport.create_once` (a job lost in transit is found by
  its dataset, fields and time, never started twice);
* each job adds a batch, so once a job succeeded the dataset's older batches are reverted:
  the dataset holds one export, never a profile twice;
* reuse: when the newest successful job into the dataset exported the same fields with the
  same merge policy, was created after ``fresh_after`` (the stages pass the newest events
  batch) and its batch is the dataset's live one, nothing is exported again. Jobs are looked
  for in the newest page of ``GET /export/jobs`` (100): in a sandbox busier than that an
  export may be made again, never doubled in the dataset.

Our own calls (segmentation.yaml, profile.yaml), not aepp's: one request each, validated
against the specs in the tests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cmle.errors import NotFoundError, PlatformError
from cmle.platform.aep.catalog import CatalogService
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.http import AEPNotFound
from cmle.platform.base import BATCH_SUCCESS, Dataset
from cmle.platform.union import PROFILE_SCHEMA_NAME, UNION_SCHEMA

log = logging.getLogger(__name__)

IDENTITY_MAP = "identityMap"
JOB_DONE, JOB_FAILED = "SUCCEEDED", "FAILED"
JOBS_PAGE = 100


def _seconds(value: Any) -> float:
    """A job time in epoch seconds (the spec says seconds; its examples are milliseconds)."""
    v = float(value or 0)
    return v / 1000.0 if v > 1e11 else v


class ProfileExportService:
    def __init__(self, client: AEPClient, catalog: CatalogService, batches, poll_s: float = 10.0):
        self.c = client
        self.catalog = catalog
        self.batches = batches
        self.poll_s = poll_s
        self.exports_reused = 0

    # --- merge policies ---------------------------------------------------------------------
    def merge_policy(self, policy_id: str = "") -> str:
        """``policy_id`` once checked to exist, or the sandbox's default merge policy's id."""
        if policy_id:
            try:
                self.c.get("segmentation", f"/config/mergePolicies/{policy_id}", what=f"read merge policy {policy_id}")
            except AEPNotFound:
                raise NotFoundError(f"merge policy {policy_id!r} does not exist in sandbox {self.c.sandbox!r}; use "
                                    "an id listed under Profiles > Merge policies, or leave merge_policy out for "
                                    "the default") from None
            return policy_id
        body = self.c.get("segmentation", "/config/mergePolicies",
                          params={"default": "true", "schema.name": PROFILE_SCHEMA_NAME},
                          what="find the default merge policy")
        children = [m for m in (body.get("children") or []) if isinstance(m, dict)] if isinstance(body, dict) else []
        defaults = [m for m in children if m.get("default", True) and m.get("id")]
        if not defaults:
            raise NotFoundError(f"sandbox {self.c.sandbox!r} has no default merge policy for {PROFILE_SCHEMA_NAME}; "
                                "name one with profiles.merge_policy in the model spec")
        return str(defaults[0]["id"])

    # --- export jobs ------------------------------------------------------------------------
    def _jobs(self, status: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"limit": JOBS_PAGE, **({"status": status} if status else {})}
        body = self.c.get("segmentation", "/export/jobs", params=params, what="list export jobs")
        records = body.get("records") if isinstance(body, dict) else None
        return [j for j in (records or []) if isinstance(j, dict)]

    @staticmethod
    def _matches(job: dict, dataset_id: str, fields: str, policy: str) -> bool:
        return ((job.get("destination") or {}).get("datasetId") == dataset_id and job.get("fields") == fields
                and (job.get("mergePolicy") or {}).get("id") == policy)

    def _live_batches(self, dataset_id: str) -> list[str]:
        return [b.id for b in self.catalog.list_batches(dataset_id) if b.status == BATCH_SUCCESS]

    def _reusable(self, ds: Dataset, fields: str, policy: str, fresh_after: float) -> dict | None:
        done = [j for j in self._jobs(JOB_DONE) if self._matches(j, ds.id, fields, policy)]
        if not done:
            return None
        newest = max(done, key=lambda j: _seconds(j.get("creationTime")))
        batch = (newest.get("destination") or {}).get("batchId")
        if _seconds(newest.get("creationTime")) >= fresh_after and batch and self._live_batches(ds.id) == [batch]:
            return newest
        return None

    def profile_union(self, name: str, fields: list[str], merge_policy: str = "", fresh_after: float = 0.0,
                      timeout_s: float = 3600.0) -> Dataset:
        ds = self.catalog.get_or_create_dataset(name, UNION_SCHEMA)
        policy = self.merge_policy(merge_policy)
        wanted = ",".join([IDENTITY_MAP, *sorted(set(fields) - {IDENTITY_MAP})])
        reusable = self._reusable(ds, wanted, policy, fresh_after)
        if reusable is not None:
            self.exports_reused += 1
            log.info("profile union %r: export job %s (same fields and merge policy, after the newest events) is "
                     "current; not exporting again", name, reusable.get("id"))
            return ds
        body = {"fields": wanted, "mergePolicy": {"id": policy}, "filter": {"emptyProfiles": False},
                "destination": {"datasetId": ds.id}, "schema": {"name": PROFILE_SCHEMA_NAME}}
        started = time.time()
        # A job of an earlier run still at work (e.g. it timed out waiting) is waited for, not doubled.
        running = next((j for j in self._jobs() if self._matches(j, ds.id, wanted, policy)
                        and str(j.get("status", "")).upper() in ("NEW", "PROCESSING")
                        and _seconds(j.get("creationTime")) >= fresh_after), None)

        def find() -> dict | None:
            for job in self._jobs():
                if self._matches(job, ds.id, wanted, policy) and _seconds(job.get("creationTime")) >= started - 5:
                    return job
            return None

        job, _ = self.c.transport.create_once(
            what=f"start the profile export into {name!r}",
            create=lambda: self.c.transport.json("POST", self.c.url("segmentation", "/export/jobs"), safe=False,
                                                 json=body, what="create export job"),
            find=find) if running is None else (running, False)
        if not isinstance(job, dict) or job.get("id") in (None, ""):
            raise PlatformError(f"start the profile export into {name!r}: unexpected answer: {str(job)[:300]}")
        job = self._wait(job["id"], timeout_s)
        batch = (job.get("destination") or {}).get("batchId")
        for old in self._live_batches(ds.id):  # one export in the dataset: the older ones leave
            if old != batch:
                self.batches.revert_batch(old)
        log.info("profile union %r: exported by job %s (merge policy %s) into batch %s", name, job["id"], policy, batch)
        return ds

    def _wait(self, job_id: Any, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.c.get("segmentation", f"/export/jobs/{job_id}", what=f"poll export job {job_id}")
            status = str(job.get("status", "")).upper() if isinstance(job, dict) else ""
            if status == JOB_DONE:
                return job
            if status == JOB_FAILED:
                errors = "; ".join(f"{e.get('code', '')} {e.get('msg', '')}".strip() for e in job.get("errors") or []
                                   if isinstance(e, dict))
                raise PlatformError(f"profile export job {job_id} failed: {errors or 'no reason given'}; re-run the "
                                    "stage (a new job is started)")
            if time.monotonic() >= deadline:
                raise PlatformError(f"profile export job {job_id} still {status or 'unknown'} after {timeout_s:.0f} "
                                    "s; re-run the stage later (the running job is found and reused once done)")
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
