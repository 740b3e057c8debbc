"""Catalog Service: datasets (get-or-create by name) and batch state.

The dataset is created with its Profile tag in the same POST (``tags.unifiedProfile``)
rather than with aepp's ``enableDatasetProfile``, whose JSON-patch array does not
validate against catalog.yaml (which documents an object body); an existing dataset is
enabled with a PATCH of the ``tags`` object. Listings are our own GETs (aepp's
``getDataSets`` also builds pandas frames and prints on unexpected bodies).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from cmle.errors import NotFoundError, PlatformError
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.http import AEPNotFound
from cmle.platform.base import BATCH_FAILED, BATCH_SUCCESS, Batch, Dataset, Resource

log = logging.getLogger(__name__)

TABLE_TAG = "adobe/pqs/table"
PROFILE_TAG = "unifiedProfile"
PROFILE_ON = "enabled:true"
# Ownership record (catalog.yaml allows free tag keys such as "foo/bar/foo-bar"): cleanup
# deletes a dataset only when this tag names its owner.
OWNER_TAG = "cmle/owner"
SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed+json;version=1"
PAGE = 100

# AEP batch statuses -> the seam's (terminal ones end a wait).
_STATUS = {"success": BATCH_SUCCESS, "active": BATCH_SUCCESS, "failed": BATCH_FAILED, "failure": BATCH_FAILED,
           "stalled": BATCH_FAILED, "aborted": "aborted", "abandoned": "abandoned", "inactive": "inactive",
           "deleted": "deleted"}


def table_name_of(name: str) -> str:
    """The Query Service table name AEP derives from a dataset name (used until the tag appears)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def to_dataset(ds_id: str, body: dict) -> Dataset:
    tags = body.get("tags") or {}
    table = (tags.get(TABLE_TAG) or [None])[0] or table_name_of(body.get("name", ds_id))
    return Dataset(id=ds_id, name=body.get("name", ""), table=table,
                   schema_id=(body.get("schemaRef") or {}).get("id", ""),
                   profile_enabled=PROFILE_ON in [t.replace(" ", "") for t in tags.get(PROFILE_TAG, [])])


def to_batch(batch_id: str, body: dict) -> Batch:
    raw = str(body.get("status", "")).lower()
    errors = []
    for e in body.get("errors") or []:
        if isinstance(e, dict):
            code = e.get("code", "")
            desc = e.get("description") or e.get("message") or ""
            errors.append(f"{code}: {desc}".strip(": "))
    if raw == "stalled" and not errors:
        errors.append("stalled: the platform's retries were exhausted")
    metrics = body.get("metrics") or {}
    records = metrics.get("outputRecordCount", metrics.get("recordCount", 0)) or 0
    tags = {k: (v[0] if isinstance(v, list) and v else v) for k, v in (body.get("tags") or {}).items()}
    created = body.get("created", 0) or 0
    related = [o.get("id") for o in body.get("relatedObjects") or [] if o.get("type") == "dataSet"]
    return Batch(id=batch_id, dataset_id=related[0] if related else "", status=_STATUS.get(raw, raw or "loading"),
                 tags={k: str(v) for k, v in tags.items() if not k.startswith("acp_")},
                 errors=tuple(errors), records=int(records), created=float(created) / 1000.0)


def owner_of(body: dict) -> str | None:
    """The owner recorded on a dataset body, or None when it carries no record."""
    values = (body.get("tags") or {}).get(OWNER_TAG)
    return str(values[0]) if isinstance(values, list) and values else None


class CatalogService:
    def __init__(self, client: AEPClient, owner: str = ""):
        self.c = client
        self.owner = owner  # recorded on every dataset created here

    # --- datasets ------------------------------------------------------------------------
    def _by_name(self, name: str) -> list[Dataset]:
        body = self.c.get("catalog", "/dataSets", params={"name": name, "limit": PAGE},
                          what=f"look up dataset {name!r}")
        return [to_dataset(k, v) for k, v in (body or {}).items()
                if isinstance(v, dict) and v.get("name") == name]

    def find_dataset(self, name: str) -> Dataset | None:
        found = self._by_name(name)
        if len(found) > 1:
            raise PlatformError(f"{len(found)} datasets are named {name!r} ({', '.join(d.id for d in found)}); "
                                "delete the extra ones in the AEP UI or run cleanup")
        return found[0] if found else None

    def get_dataset(self, dataset_id: str) -> Dataset:
        try:
            body = self.c.transport.call(lambda: self.c.catalog.getDataSet(dataset_id),
                                         what=f"read dataset {dataset_id}")
        except AEPNotFound:
            raise NotFoundError(f"dataset {dataset_id} does not exist in sandbox {self.c.sandbox!r}") from None
        if not isinstance(body, dict) or dataset_id not in body:
            raise PlatformError(f"read dataset {dataset_id}: unexpected answer from AEP: {str(body)[:300]}")
        return to_dataset(dataset_id, body[dataset_id])

    def get_or_create_dataset(self, name: str, schema_id: str, profile_enabled: bool = False) -> Dataset:
        existing = self.find_dataset(name)
        if existing is not None:
            self.check_owner(existing.id, name)
            if existing.schema_id != schema_id:
                raise PlatformError(f"dataset {name!r} exists on another schema ({existing.schema_id}); "
                                    "run cleanup or choose another owner")
            if profile_enabled and not existing.profile_enabled:
                self._enable_profile(existing.id)
                existing = self.get_dataset(existing.id)
            return existing
        body: dict[str, Any] = {
            "name": name,
            "description": f"{name} (cmle package)",
            "schemaRef": {"id": schema_id, "contentType": SCHEMA_CONTENT_TYPE},
            "fileDescription": {"persisted": True, "containerFormat": "parquet", "format": "parquet"},
        }
        tags = {OWNER_TAG: [self.owner]} if self.owner else {}
        if profile_enabled:
            tags[PROFILE_TAG] = [PROFILE_ON]
        if tags:
            body["tags"] = tags
        res, _ = self.c.transport.create_once(
            what=f"create dataset {name!r}",
            create=lambda: self.c.catalog.createDataSet(data=body, requestDataSource=False),
            find=lambda: self.find_dataset(name))
        if isinstance(res, Dataset):
            return res
        if not isinstance(res, list) or not res or not str(res[0]).startswith("@/dataSets/"):
            raise PlatformError(f"create dataset {name!r}: unexpected answer from AEP: {str(res)[:300]}")
        ds_id = str(res[0]).split("/")[-1]
        log.info("created dataset %r (%s)", name, ds_id)
        return self.get_dataset(ds_id)

    def _enable_profile(self, dataset_id: str) -> None:
        body = self.c.transport.call(lambda: self.c.catalog.getDataSet(dataset_id), what="read dataset tags")
        tags = dict(body[dataset_id].get("tags") or {})
        tags[PROFILE_TAG] = [PROFILE_ON]
        self.c.transport.request("PATCH", self.c.url("catalog", f"/dataSets/{dataset_id}"), safe=True,
                                 json={"tags": tags}, what=f"enable dataset {dataset_id} for Profile")

    def check_owner(self, dataset_id: str, name: str) -> None:
        """Refuse to reuse a dataset another owner's record names."""
        body = self.c.transport.call(lambda: self.c.catalog.getDataSet(dataset_id), what="read dataset tags")
        recorded = owner_of(body.get(dataset_id) or {}) if isinstance(body, dict) else None
        if self.owner and recorded is not None and recorded != self.owner:
            raise PlatformError(f"dataset {name!r} belongs to owner {recorded!r}, not {self.owner!r}; "
                                "choose another [Platform] owner")

    def record_owner(self, dataset_id: str) -> None:
        """Tag a dataset created outside the Catalog API (a CTAS) with its owner."""
        if not self.owner:
            return
        body = self.c.transport.call(lambda: self.c.catalog.getDataSet(dataset_id), what="read dataset tags")
        tags = dict((body.get(dataset_id) or {}).get("tags") or {}) if isinstance(body, dict) else {}
        if tags.get(OWNER_TAG) == [self.owner]:
            return
        tags[OWNER_TAG] = [self.owner]  # the whole tags object, as _enable_profile sends it
        self.c.transport.request("PATCH", self.c.url("catalog", f"/dataSets/{dataset_id}"), safe=True,
                                 json={"tags": tags}, what=f"record the owner of dataset {dataset_id}")

    def _dataset_bodies(self) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        start = 0
        while True:
            body = self.c.get("catalog", "/dataSets", params={"limit": PAGE, "start": start,
                                                               "properties": "name,schemaRef,tags"},
                              what="list datasets")
            page = [(k, v) for k, v in (body or {}).items() if isinstance(v, dict)]
            out += page
            if len(page) < PAGE:
                return out
            start += PAGE

    def list_datasets(self) -> list[Dataset]:
        return [to_dataset(k, v) for k, v in self._dataset_bodies()]

    def delete_dataset(self, dataset_id: str) -> None:
        try:
            self.c.transport.call(lambda: self.c.catalog.deleteDataSet(dataset_id),
                                  what=f"delete dataset {dataset_id}")
        except AEPNotFound:
            pass

    def dataset_resources(self) -> list[Resource]:
        return [Resource("dataset", k, v.get("name", ""), owner=owner_of(v)) for k, v in self._dataset_bodies()]

    # --- batches -----------------------------------------------------------------------------
    def get_batch(self, batch_id: str) -> Batch:
        try:
            body = self.c.transport.call(lambda: self.c.catalog.getBatch(batch_id), what=f"read batch {batch_id}")
        except AEPNotFound:
            raise NotFoundError(f"batch {batch_id} does not exist in sandbox {self.c.sandbox!r}") from None
        if not isinstance(body, dict) or batch_id not in body:
            raise PlatformError(f"read batch {batch_id}: unexpected answer from AEP: {str(body)[:300]}")
        return to_batch(batch_id, body[batch_id])

    def _raw_batches(self, dataset_id: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        start = 0
        while True:
            body = self.c.get("catalog", "/batches", params={"dataSet": dataset_id, "limit": PAGE, "start": start,
                                                              "orderBy": "asc:created"},
                              what=f"list batches of {dataset_id}")
            page = {k: v for k, v in (body or {}).items() if isinstance(v, dict)}
            out.update(page)
            if len(page) < PAGE:
                return out
            start += PAGE

    def list_batches(self, dataset_id: str) -> list[Batch]:
        out = [to_batch(k, v) for k, v in self._raw_batches(dataset_id).items()]
        out = [b if b.dataset_id else replace(b, dataset_id=dataset_id) for b in out]
        return sorted(out, key=lambda b: (b.created, b.id))

    def last_change(self, dataset_id: str) -> float:
        """Epoch seconds of the latest change of any batch of the dataset (created, completed,
        reverted): when its content last changed."""
        stamps = [max(int(v.get(k) or 0) for k in ("created", "updated", "completed"))
                  for v in self._raw_batches(dataset_id).values()]
        return max(stamps, default=0) / 1000.0
