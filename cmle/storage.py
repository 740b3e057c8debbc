"""Cloud storage laid out as AEP lays out dataset exports.

``{root}/{path}/{dataset_id}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``

The root is a URL: a local folder (default), ``s3://``, ``abfs://``/``abfss://`` or
``gs://`` through fsspec (the matching driver comes with an extra: ``pip install
'cmle[s3]'``, ``cmle[azure]`` or ``cmle[gcs]``; see :mod:`cmle.storage_schemes`). Writes
are atomic: on a local file system a folder is written under a hidden temporary name and
renamed into place; on object stores, where there is no rename, an
``_IN_PROGRESS`` marker is written first and removed last, and readers skip folders that
still carry it. Readers pick the newest export by the *parsed* timestamp, never by listing
order, and read every part.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cmle import failpoints, holder, storage_schemes
from cmle.errors import ConfigError, DataCheckError, EnvironmentFault, NotFoundError

EXPORT_TIME_FORMAT = "%Y%m%d%H%M%S"
_EXPORT_DIR = re.compile(r"^exportTime=(\d{14})$")
IN_PROGRESS = "_IN_PROGRESS"


@dataclass(frozen=True)
class ExportFolder:
    url: str
    export_time: str

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.strptime(self.export_time, EXPORT_TIME_FORMAT).replace(tzinfo=dt.timezone.utc)


def is_remote(url: str) -> bool:
    return storage_schemes.is_remote(url)


def join(root: str, *parts: str) -> str:
    base = root.rstrip("/")
    return "/".join([base, *[p.strip("/") for p in parts if p]])


def filesystem(url: str):
    """(fsspec filesystem, path) for a URL; a clear error when the driver is missing."""
    import fsspec

    storage_schemes.require_driver(url)
    if not is_remote(url):
        return fsspec.filesystem("file"), str(Path(url).expanduser().absolute())
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(storage_schemes.missing_driver_message(url, exc)) from None
    return fs, path


def format_export_time(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime(EXPORT_TIME_FORMAT)


def dataset_folder(root: str, path: str, dataset_id: str) -> str:
    return join(root, path, dataset_id)


def list_exports(root: str, path: str, dataset_id: str) -> list[ExportFolder]:
    """Complete exports of a dataset, oldest first by parsed export time."""
    folder = dataset_folder(root, path, dataset_id)
    fs, fpath = filesystem(folder)
    fs.invalidate_cache(fpath)  # object stores: other processes (Spark tasks, AEP) write here too
    if not fs.exists(fpath):
        return []
    if not is_remote(folder):
        sweep_partial(folder)  # what killed writers left (cheap locally: one more listing)
    found = []
    for entry in fs.ls(fpath, detail=True):
        if entry.get("type") != "directory":
            continue
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        m = _EXPORT_DIR.match(name)
        if not m:
            continue  # temporary folders and anything else
        if fs.exists(f"{entry['name'].rstrip('/')}/{IN_PROGRESS}"):
            continue
        found.append(ExportFolder(url=join(folder, name), export_time=m.group(1)))
    return sorted(found, key=lambda e: e.time)


def newest_export(root: str, path: str, dataset_id: str) -> ExportFolder:
    """The newest complete export; NotFoundError naming the folder when there is none."""
    exports = list_exports(root, path, dataset_id)
    if not exports:
        raise NotFoundError(f"no export of dataset {dataset_id} under {dataset_folder(root, path, dataset_id)}; "
                            "run the stage that writes it first (export for feature sets, score for scores)")
    return exports[-1]


def part_files(folder_url: str) -> list[str]:
    """Every data file of an export folder, sorted (parquet parts, any compression)."""
    fs, fpath = filesystem(folder_url)
    fs.invalidate_cache(fpath)
    files = [f for f in fs.ls(fpath, detail=False)
             if not f.rsplit("/", 1)[-1].startswith(("_", "."))]
    return sorted(files)


def read_export(folder_url: str, columns: list[str] | None = None) -> pa.Table:
    """All parts of an export folder as one Arrow table."""
    fs, _ = filesystem(folder_url)
    files = part_files(folder_url)
    if not files:
        raise NotFoundError(f"export folder {folder_url} holds no data file")
    tables = []
    for f in files:
        with unreadable_file(f):
            tables.append(pq.read_table(f, columns=columns, filesystem=fs))
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


@contextmanager
def unreadable_file(f: str) -> Iterator[None]:
    """Turn a corrupt or truncated Parquet file into one clear :class:`DataCheckError`."""
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        if isinstance(exc, PermissionError):
            raise EnvironmentFault(f"cannot read {f}: {exc.strerror or exc}; make it readable") from None
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataCheckError(f"{f} is not a readable Parquet file ({reason}); remove its export folder and run "
                             "the stage that wrote it again (export for feature sets, score for scores)") from None


def iter_export_batches(folder_url: str, batch_rows: int = 65_536,
                        columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows over every part, in bounded memory."""
    fs, _ = filesystem(folder_url)
    for f in part_files(folder_url):
        with fs.open(f, "rb") as fh:
            # pre_buffer keeps every pre-read column chunk until the reader closes, so memory
            # would grow with the file (4 GB peak scoring 10 M rows); read row group by row group.
            with unreadable_file(f):
                pf = pq.ParquetFile(fh, pre_buffer=False)
                batches = pf.iter_batches(batch_size=batch_rows, columns=columns)
            while True:
                with unreadable_file(f):
                    batch = next(batches, None)
                if batch is None:
                    break
                yield batch


def count_rows(folder_url: str) -> int:
    fs, _ = filesystem(folder_url)
    total = 0
    for f in part_files(folder_url):
        with fs.open(f, "rb") as fh, unreadable_file(f):
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


@contextmanager
def atomic_export_folder(root: str, path: str, dataset_id: str,
                         when: dt.datetime | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(local_or_remote_folder_to_write, export_time)``; publish on success.

    A local write goes to a hidden sibling folder that is renamed into
    ``exportTime=...`` at the end; a failure removes it. On object stores the final folder
    is written directly under an ``_IN_PROGRESS`` marker that is removed last. The export
    time is unique per dataset: if that second is taken, the next free second is used.
    """
    folder = dataset_folder(root, path, dataset_id)
    fs, fpath = filesystem(folder)
    try:
        fs.makedirs(fpath, exist_ok=True)
    except PermissionError as exc:
        raise EnvironmentFault(f"cannot write under {folder}: {exc.strerror or exc}; make the folder writable or "
                               "set [Cloud] storage_url (or [Platform] local_root) elsewhere") from None
    sweep_partial(folder)
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(microsecond=0)
    taken = {e.export_time for e in list_exports(root, path, dataset_id)}
    while format_export_time(when) in taken or fs.exists(f"{fpath}/exportTime={format_export_time(when)}"):
        when += dt.timedelta(seconds=1)
    export_time = format_export_time(when)
    final = f"{fpath}/exportTime={export_time}"
    if not is_remote(folder):
        owner = holder.this_process().replace("/", "~")
        tmp = f"{fpath}/.tmp-{export_time}-{owner}~{uuid.uuid4().hex[:8]}"
        os.makedirs(tmp)
        try:
            yield tmp, export_time
            failpoints.hit("export_folder.written")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    fs.makedirs(final, exist_ok=True)
    fs.pipe(f"{final}/{IN_PROGRESS}", holder.this_process().encode())
    try:
        yield join(folder, f"exportTime={export_time}"), export_time
    except BaseException:
        fs.rm(final, recursive=True)
        raise
    fs.rm(f"{final}/{IN_PROGRESS}")


def sweep_partial(folder: str) -> int:
    """Remove what killed runs left in ``folder``: hidden ``.tmp-*`` folders (local) and
    ``exportTime=`` folders still marked in progress (object stores) whose writing process is
    gone. Folders of live runs, or of runs on another host, are left alone. Returns the count."""
    fs, fpath = filesystem(folder)
    if not fs.exists(fpath):
        return 0
    removed = 0
    for entry in fs.ls(fpath, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        who = ""
        if name.startswith(".tmp-"):
            parts = name.split("-", 2)[-1].split("~")
            who = "/".join(parts[:3]) if len(parts) >= 4 else ""
        elif _EXPORT_DIR.match(name) and fs.exists(f"{entry.rstrip('/')}/{IN_PROGRESS}"):
            try:
                who = fs.cat(f"{entry.rstrip('/')}/{IN_PROGRESS}").decode(errors="replace")
            except (OSError, FileNotFoundError):
                continue
        else:
            continue
        if holder.is_alive(who) is False:
            fs.rm(entry, recursive=True)
            removed += 1
    return removed


def write_table(folder: str, table: pa.Table, name: str = "part-00000.parquet", compression: str = "snappy") -> str:
    """Write one Parquet part into a folder (local or remote); returns its path."""
    fs, fpath = filesystem(folder)
    target = f"{fpath}/{name}"
    comp = None if compression == "none" else compression
    with fs.open(target, "wb") as fh:
        pq.write_table(table, fh, compression=comp)
    return target
