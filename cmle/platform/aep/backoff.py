"""When to retry a request to AEP or IMS: exponential backoff that never comes before the
server's ``Retry-After``.

The jitter only ever adds time: a retry is spread out *after* the wait the server asked
for, never before it (a 429 retried early counts against the caller and is answered 429
again). A ``Retry-After`` longer than :data:`MAX_RETRY_AFTER_S` is not waited out in the
middle of a stage: the caller gives up with a message that says when to re-run.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Callable

JITTER = 0.2  # up to 20 % later than the computed wait, never earlier
MAX_RETRY_AFTER_S = 600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date
    (RFC 9110 §10.2.3); None when absent or unreadable."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(attempt: int, backoff_s: float, max_backoff_s: float, retry_after: float | None = None,
                rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt + 1``: ``backoff_s * 2**attempt`` (at most
    ``max_backoff_s``), or the server's ``retry_after`` when that is longer, plus upward
    jitter. Never less than ``retry_after``."""
    base = min(max_backoff_s, backoff_s * 2 ** attempt)
    if retry_after is not None:
        base = max(base, retry_after)
    return base * (1.0 + JITTER * rng())
