"""Batch Ingestion API: create a batch, upload Parquet files, complete, revert.

* ``createBatch`` goes through aepp (format ``Parquet``, the spelling batch-ingestion.yaml
  allows; tags as AEP stores them, ``{key: [value]}``). It creates something, so it is
  never blindly retried: after a transient failure the dataset's batches are searched for
  a loading batch with the same tags first.
* Files are uploaded with our own PUT (``application/octet-stream``): aepp's
  ``uploadSmallFile`` JSON-encodes its payload, so it cannot send Parquet bytes. Files of
  ``large_file_bytes`` (256 MB, AEP's limit for the small-file API) or more go through the
  large-file API (INITIALIZE, PATCH chunks with ``Content-Range``, COMPLETE). A PUT of the
  same file and a chunk PATCH are idempotent and retried.
* ``COMPLETE`` is retried: AEP documents it as safe ("If the operation actually
  succeeded, the API will return success, even after retrying").
"""

from __future__ import annotations

import logging
import time

from cmle.errors import PlatformError
from cmle.platform.aep.catalog import CatalogService
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.errors import AEPError

log = logging.getLogger(__name__)

SMALL_FILE_LIMIT = 256 * 1024 * 1024
CHUNK_BYTES = 64 * 1024 * 1024
INPUT_FORMAT = "Parquet"


class BatchService:
    def __init__(self, client: AEPClient, catalog: CatalogService, large_file_bytes: int = SMALL_FILE_LIMIT,
                 chunk_bytes: int = CHUNK_BYTES):
        self.c = client
        self.catalog = catalog
        self.large_file_bytes = large_file_bytes
        self.chunk_bytes = chunk_bytes

    def create_batch(self, dataset_id: str, tags: dict[str, str] | None = None) -> str:
        aep_tags = {k: [str(v)] for k, v in (tags or {}).items()}
        started = time.time()

        def find():
            # A batch created by a POST whose answer was lost: same tags, still loading, new.
            for b in reversed(self.catalog.list_batches(dataset_id)):
                if b.status == "loading" and b.tags == {k: str(v) for k, v in (tags or {}).items()} \
                        and b.created >= started - 120:
                    return {"id": b.id}
            return None

        res, _ = self.c.transport.create_once(
            what=f"create a batch on dataset {dataset_id}",
            create=lambda: self.c.ingestion.createBatch(datasetId=dataset_id, format=INPUT_FORMAT,
                                                        tags=aep_tags or None),
            find=find)
        if not isinstance(res, dict) or not res.get("id"):
            raise PlatformError(f"create a batch on dataset {dataset_id}: unexpected answer from AEP: {str(res)[:300]}")
        log.info("opened batch %s on dataset %s", res["id"], dataset_id)
        return str(res["id"])

    def _file_url(self, batch_id: str, dataset_id: str, file_name: str) -> str:
        if "/" in file_name or file_name.startswith("."):
            raise PlatformError(f"invalid file name {file_name!r}")
        return self.c.url("ingestion", f"/batches/{batch_id}/datasets/{dataset_id}/files/{file_name}")

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, data: bytes) -> None:
        url = self._file_url(batch_id, dataset_id, file_name)
        # Seconds for the body on a slow link (1 MB/s) on top of the request timeout.
        timeout = self.c.transport.timeout + len(data) / 1e6
        if len(data) < self.large_file_bytes:
            self.c.transport.request("PUT", url, safe=True, data=data, timeout=timeout,
                                     headers={"Content-Type": "application/octet-stream"},
                                     what=f"upload {file_name} to batch {batch_id}")
            return
        self._upload_large(url, batch_id, file_name, data)

    def _upload_large(self, url: str, batch_id: str, file_name: str, data: bytes) -> None:
        what = f"large-file upload of {file_name} ({len(data) >> 20} MB) to batch {batch_id}"
        self.c.transport.request("POST", url, safe=True, params={"action": "INITIALIZE"},
                                 headers={"Content-Type": "application/octet-stream"}, what=what)
        total = len(data)
        for start in range(0, total, self.chunk_bytes):
            chunk = data[start:start + self.chunk_bytes]
            end = start + len(chunk) - 1
            self.c.transport.request("PATCH", url, safe=True, data=chunk,
                                     timeout=self.c.transport.timeout + len(chunk) / 1e6,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Range": f"bytes {start}-{end}/{total}"}, what=what)
        self.c.transport.request("POST", url, safe=True, params={"action": "COMPLETE"},
                                 headers={"Content-Type": "application/octet-stream"}, what=what)

    def complete_batch(self, batch_id: str) -> None:
        try:
            self.c.transport.call(lambda: self.c.ingestion.uploadSmallFileFinish(batch_id, action="COMPLETE"),
                                  what=f"complete batch {batch_id}")
        except AEPError as exc:
            if exc.status in (400, 409):
                # Completing a batch that already left `loading` (a retry whose first try worked).
                b = self.catalog.get_batch(batch_id)
                if b.status != "loading":
                    return
            raise

    def abort_batch(self, batch_id: str) -> None:
        """Abort a batch still loading (``action=ABORT``, batch-ingestion.yaml): a killed run's
        batch stops blocking re-runs. Aborting an already aborted batch (a retry whose first
        try worked) is not an error."""
        try:
            self.c.transport.request("POST", self.c.url("ingestion", f"/batches/{batch_id}"), safe=True,
                                     params={"action": "ABORT"}, what=f"abort batch {batch_id}")
        except AEPError as exc:
            if exc.status in (400, 409) and self.catalog.get_batch(batch_id).status == "aborted":
                return
            raise
        log.info("aborted batch %s", batch_id)

    def revert_batch(self, batch_id: str) -> None:
        """Revert a batch: its rows leave the dataset (``action=REVERT``)."""
        self.c.transport.request("POST", self.c.url("ingestion", f"/batches/{batch_id}"), safe=True,
                                 params={"action": "REVERT"}, what=f"revert batch {batch_id}")
