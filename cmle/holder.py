"""Which process holds something, and whether that process is still alive.

A batch being loaded, a temporary export folder or a lock records its holder as
``host/pid/start`` (:func:`this_process`), where ``start`` is the process's start time as the
kernel counts it, so a recycled pid is not mistaken for the original process. A later run
asks :func:`is_alive`: a holder on this host whose process is gone has abandoned what it
held, which may then be aborted or removed. A holder on another host cannot be checked
here; callers fall back on age.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

TAG = "cmle.holder"  # the tag that names the holder (on batches and stage runs)


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may hold spaces, so count from its closing ')'.
    return stat.rsplit(")", 1)[-1].split()[19]


@lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def this_process() -> str:
    """``host/pid/start`` of the running process."""
    pid = os.getpid()
    return f"{_host()}/{pid}/{_start_ticks(pid)}"


def parse(holder: str) -> tuple[str, int, str] | None:
    parts = (holder or "").split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def is_alive(holder: str) -> bool | None:
    """True/False for a holder on this host; None when it cannot be told (another host, no record)."""
    parsed = parse(holder)
    if parsed is None:
        return None
    host, pid, start = parsed
    if host != _host():
        return None
    if pid == os.getpid():
        return start == _start_ticks(pid) or not start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    now = _start_ticks(pid)
    if start and now and now != start:
        return False  # the pid was recycled
    if now and _is_zombie(pid):
        return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def describe(holder: str) -> str:
    parsed = parse(holder)
    if parsed is None:
        return holder or "an unknown process"
    host, pid, _ = parsed
    return f"process {pid} on {host}"
