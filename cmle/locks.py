"""Locks on what runs share, with the ``filelock`` package.

* :func:`owner_lock`: one run at a time per owner and platform folder (the embedded
  platform's data, the owner's batches and exports, the work folder). ``main`` and every
  stage run under it; a second run waits, logging who holds it, and then finds the first
  run's results instead of duplicating them. After ``[Platform] lock_wait`` seconds it
  gives up with a message naming the other run.
* :func:`store_lock`: around the first use of a sqlite MLflow store (its schema migration,
  the experiment's creation), which two first runs would otherwise race.
* :func:`registry_lock`: around model registration, so two runs cannot register the
  same training twice.

The OS releases a lock when its process dies (``flock``), so a killed run never leaves a
stale lock; the holder file next to the lock only serves the messages.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from cmle import holder
from cmle.errors import BusyError, EnvironmentFault

log = logging.getLogger(__name__)

WAIT_LOG_S = 30.0  # a log line at least this often while waiting
_held: dict[str, int] = {}  # path -> depth: a lock this process holds is re-entered, not re-taken


def _holder_file(path: Path) -> Path:
    return path.with_name(path.name + ".holder.json")


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(_holder_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "another run"
    what = info.get("what", "a run")
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("since", 0)))
    return f"{what} ({holder.describe(info.get('holder', ''))}, since {since})"


@contextmanager
def hold(path: str | os.PathLike, what: str, wait_s: float) -> Iterator[None]:
    """Hold the lock file ``path`` for ``what``; wait up to ``wait_s`` seconds for another holder,
    logging who it is, then raise :class:`BusyError` naming it."""
    path = Path(path)
    key = str(path.resolve())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), thread_local=False)
        lock.acquire(timeout=0)
    except Timeout:
        lock = _wait(lock, path, what, wait_s)
    except OSError as exc:
        raise EnvironmentFault(f"cannot create the lock file {path}: {exc.strerror or exc}; make the folder "
                               f"{path.parent} writable or point [Platform] local_root elsewhere") from None
    _held[key] = 1
    try:
        try:
            _holder_file(path).write_text(json.dumps({"holder": holder.this_process(), "what": what,
                                                      "since": time.time()}), encoding="utf-8")
        except OSError:
            pass
        yield
    finally:
        _held.pop(key, None)
        lock.release()


def _wait(lock: FileLock, path: Path, what: str, wait_s: float) -> FileLock:
    deadline = time.monotonic() + wait_s
    while True:
        other = _read_holder(path)
        left = deadline - time.monotonic()
        if left <= 0:
            raise BusyError(f"{what}: {other} holds {path} and has not finished after {wait_s:.0f} s; wait for "
                            "it to end (or stop it), then run again. [Platform] lock_wait sets how long to wait")
        log.info("%s: waiting for %s to finish (it holds %s); giving up in %.0f s", what, other, path, left)
        try:
            lock.acquire(timeout=min(WAIT_LOG_S, left))
            return lock
        except Timeout:
            continue


def lock_dir(settings) -> Path:
    return Path(settings.local_root) / "locks"


@contextmanager
def owner_lock(settings, what: str) -> Iterator[None]:
    """One run at a time for this owner on this platform folder."""
    from cmle.naming import owner_token

    path = lock_dir(settings) / f"run-{owner_token(settings.platform.owner)}.lock"
    with hold(path, what, settings.platform.lock_wait):
        yield


def sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return Path(uri[len(prefix):] if uri[len(prefix):].startswith("/") else uri[len(prefix):])


@contextmanager
def store_lock(uri: str, wait_s: float = 600.0) -> Iterator[None]:
    """Around the first use of a sqlite store (migration); a no-op for other stores."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with hold(db.with_name(db.name + ".lock"), f"MLflow store {db}", wait_s):
        yield


@contextmanager
def registry_lock(settings, model_name: str) -> Iterator[None]:
    """Around registering a version of ``model_name``."""
    import hashlib

    import mlflow

    db = sqlite_path(mlflow.get_registry_uri() or "")
    folder = db.parent if db is not None else lock_dir(settings)
    digest = hashlib.sha256(f"{mlflow.get_registry_uri()}|{model_name}".encode()).hexdigest()[:12]
    with hold(folder / f".cmle-register-{digest}.lock", f"registration of {model_name}",
              settings.platform.lock_wait):
        yield
