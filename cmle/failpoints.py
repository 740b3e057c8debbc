"""Named points where a test can kill the process, to prove that a re-run resumes.

``CMLE_FAILPOINT=name[,name...]`` makes :func:`hit` send SIGKILL to the running process
when it reaches one of those points (``name@N``: at its N-th pass). Unset (always, outside
the kill-and-resume tests), :func:`hit` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "CMLE_FAILPOINT"
_passes: dict[str, int] = {}


def hit(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    _passes[name] = _passes.get(name, 0) + 1
    for item in wanted.split(","):
        point, _, nth = item.strip().partition("@")
        if point == name and (not nth or int(nth) == _passes[name]):
            sys.stderr.write(f"cmle: failpoint {name}: killing process {os.getpid()}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
