"""Batch ingestion through the platform seam, idempotent and with a deadline.

A batch is tagged with a deterministic ``cmle.key`` (what it holds, e.g. the synthetic
data's parameters or a score run's id). Ingesting the same key again finds the successful
batch and returns it instead of sending the data twice; a batch of the same key still in
progress is waited for; failed ones are retried with a new batch. With ``replace=True``
the dataset's other successful batches are reverted once the new one succeeded, so the
dataset then holds exactly this content.

A batch records the process that loads it (tag ``cmle.holder``). A batch of the same key
left ``loading`` by a process that is gone (a killed run) is abandoned: it is aborted and a
new batch takes its place, instead of being waited for. The first file is read and
converted before any batch is created, so unreadable input creates no batch; a failure
while uploading aborts the batch it opened. Every wait logs a line at least every
:data:`WAIT_LOG_S` seconds.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from cmle import failpoints, holder
from cmle.errors import BatchFailedError, PlatformError
from cmle.platform.base import BATCH_SUCCESS, Batch, Platform

log = logging.getLogger(__name__)

KEY_TAG = "cmle.key"
HOLDER_TAG = holder.TAG
WAIT_LOG_S = 30.0
# A loading batch whose holder cannot be checked (another host, no record) counts as
# abandoned once it is this old: uploads of one batch take minutes, not hours.
ABANDONED_AFTER_S = 3 * 3600.0
_GONE = ("failed", "aborted", "abandoned", "deleted", "inactive")
# AEP's advice: files under 256 MB through the small-file upload.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class IngestResult:
    batch: Batch
    reused: bool  # True when an existing successful batch with the same key was found


def find_batch(platform: Platform, dataset_id: str, key: str) -> Batch | None:
    """The newest successful-or-running batch of the dataset carrying ``key``."""
    found = None
    for b in platform.list_batches(dataset_id):
        if b.tags.get(KEY_TAG) == key and b.status not in _GONE:
            found = b
    return found


def is_abandoned(b: Batch, now: float | None = None) -> bool:
    """True for a batch still ``loading`` whose loading process is gone (or, when that cannot
    be checked, that has been loading for :data:`ABANDONED_AFTER_S`)."""
    if b.status != "loading":
        return False
    alive = holder.is_alive(b.tags.get(HOLDER_TAG, ""))
    if alive is not None:
        return not alive
    return b.created > 0 and (now or time.time()) - b.created > ABANDONED_AFTER_S


def abort_abandoned(platform: Platform, dataset_id: str, key: str | None = None) -> list[str]:
    """Abort the dataset's abandoned batches (of ``key``, or all); return their ids."""
    aborted = []
    for b in platform.list_batches(dataset_id):
        if (key is None or b.tags.get(KEY_TAG) == key) and is_abandoned(b):
            who = holder.describe(b.tags.get(HOLDER_TAG, ""))
            log.warning("batch %s of dataset %s was left loading by %s, which is gone: aborting it and "
                        "starting afresh", b.id, dataset_id, who)
            platform.abort_batch(b.id)
            aborted.append(b.id)
    return aborted


def wait_for_batch(platform: Platform, batch_id: str, timeout_s: float = 1800.0,
                   poll_s: float = 0.2, max_poll_s: float = 30.0) -> Batch:
    """Poll until the batch is terminal; raise on failure (with the platform's reasons) or timeout."""
    started = time.monotonic()
    deadline = started + timeout_s
    next_log = started + WAIT_LOG_S
    delay = poll_s
    while True:
        b = platform.get_batch(batch_id)
        if b.terminal:
            if b.status != BATCH_SUCCESS:
                reasons = "; ".join(b.errors) or "no reason given"
                raise BatchFailedError(f"batch {batch_id} ended {b.status}: {reasons}")
            return b
        now = time.monotonic()
        if now >= deadline:
            raise BatchFailedError(f"batch {batch_id} still {b.status} after {timeout_s:.0f} s; "
                                   "check it on the platform and re-run: the stage will not ingest twice")
        if is_abandoned(b):
            raise BatchFailedError(f"batch {batch_id} was left {b.status} by "
                                   f"{holder.describe(b.tags.get(HOLDER_TAG, ''))}, which is gone; re-run: "
                                   "the abandoned batch is aborted and a new one sent")
        if now >= next_log:
            log.info("waiting for batch %s (%s) for %.0f s; giving up after %.0f s", batch_id, b.status,
                     now - started, timeout_s)
            next_log = now + WAIT_LOG_S
        time.sleep(min(delay, max(deadline - now, 0.01)))
        delay = min(delay * 2, max_poll_s)


def parquet_bytes(table: pa.Table, compression: str = "snappy") -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    return buf.getvalue()


def split_table(table: pa.Table, max_rows: int) -> list[pa.Table]:
    return [table.slice(i, max_rows) for i in range(0, max(table.num_rows, 1), max_rows)]


def ingest_tables(platform: Platform, dataset_id: str, tables: Iterable[pa.Table], key: str,
                  replace: bool = False, timeout_s: float = 1800.0, file_prefix: str = "part",
                  keeps: Callable[[str], bool] | None = None) -> IngestResult:
    """Ingest ``tables`` (each one file) as ONE batch tagged ``key``; idempotent by key.

    With ``replace``, the dataset's other successful batches are reverted afterwards, except
    those whose key ``keeps`` accepts (e.g. the extension of the synthetic data it belongs to)."""
    abort_abandoned(platform, dataset_id, key)
    existing = find_batch(platform, dataset_id, key)
    if existing is not None:
        if not existing.terminal:
            log.info("batch %s of dataset %s for %s is %s: waiting for it", existing.id, dataset_id, key,
                     existing.status)
        b = wait_for_batch(platform, existing.id, timeout_s) if not existing.terminal else existing
        log.info("dataset %s already holds batch %s for %s: not ingesting again", dataset_id, b.id, key)
        if replace:
            _revert_others(platform, dataset_id, keep=b.id, keeps=keeps)
        return IngestResult(batch=b, reused=True)
    files = iter(tables)
    first = next(files, None)  # read and converted before a batch exists: bad input creates none
    if first is None:
        raise PlatformError(f"nothing to ingest into dataset {dataset_id}")
    first_data = _file_bytes(first, 0)
    batch_id = platform.create_batch(dataset_id, {KEY_TAG: key, HOLDER_TAG: holder.this_process()})
    try:
        platform.upload_file(batch_id, dataset_id, f"{file_prefix}-00000.parquet", first_data)
        for i, table in enumerate(files, start=1):
            platform.upload_file(batch_id, dataset_id, f"{file_prefix}-{i:05d}.parquet", _file_bytes(table, i))
        failpoints.hit("batch.uploaded")
    except BaseException:
        _abort_quietly(platform, batch_id)
        raise
    platform.complete_batch(batch_id)
    b = wait_for_batch(platform, batch_id, timeout_s)
    log.info("batch %s: %d records ingested into dataset %s", b.id, b.records, dataset_id)
    if replace:
        _revert_others(platform, dataset_id, keep=b.id, keeps=keeps)
    return IngestResult(batch=b, reused=False)


def _file_bytes(table: pa.Table, i: int) -> bytes:
    data = parquet_bytes(table)
    if len(data) > MAX_FILE_BYTES:
        raise PlatformError(f"file {i} of the batch is {len(data) >> 20} MB; split it below 256 MB")
    return data


def _abort_quietly(platform: Platform, batch_id: str) -> None:
    """Abort a batch this run opened and cannot finish (the original error is what matters)."""
    try:
        platform.abort_batch(batch_id)
    except Exception as exc:  # noqa: BLE001 - the next run aborts it as abandoned
        log.warning("could not abort batch %s (%s); the next run will", batch_id, exc)


def dataset_version(platform: Platform, dataset_id: str) -> str:
    """A short fingerprint of the dataset's current content (its successful batches).

    It changes whenever a batch is added or reverted, so a stage can key its own output
    on the versions of its inputs and skip work that is already done.
    """
    import hashlib

    live = sorted(b.id for b in platform.list_batches(dataset_id) if b.status == BATCH_SUCCESS)
    return hashlib.sha256(",".join(live).encode()).hexdigest()[:16]


def last_change(platform: Platform, dataset_id: str) -> float:
    """Epoch seconds of the newest successful batch (0 when the dataset is empty)."""
    return max((b.created for b in platform.list_batches(dataset_id) if b.status == BATCH_SUCCESS), default=0.0)


def _revert_others(platform: Platform, dataset_id: str, keep: str,
                   keeps: Callable[[str], bool] | None = None) -> None:
    for other in platform.list_batches(dataset_id):
        if keeps is not None and keeps(other.tags.get(KEY_TAG, "")):
            continue
        if other.id != keep and other.status == BATCH_SUCCESS:
            log.info("reverting batch %s of dataset %s (replaced by %s)", other.id, dataset_id, keep)
            platform.delete_batch(other.id)
