"""Keep secrets and tokens out of logs.

Secret values (client secret, access tokens) are registered here as soon as they are read
or received. :class:`RedactingFilter`, installed on the root logger's handlers by
:func:`install`, masks them in every record, whichever library emits it (aepp logs its
token at DEBUG). :func:`scrub` masks them in any string we write elsewhere.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_MIN_LEN = 6  # shorter values would mask ordinary words
_lock = threading.Lock()
_secrets: set[str] = set()
# Bearer tokens and key=value secrets are masked even if nobody registered them.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    re.compile(r"(?i)((?:client_secret|access_token|password|passwd|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
]


def register(value: str | None) -> None:
    """Remember a secret value so it is masked from now on."""
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret and token-like value masked."""
    if not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = scrub(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


_installed = False


def install() -> None:
    """Attach the filter to the root logger and its handlers (idempotent)."""
    global _installed
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flt = RedactingFilter()
    for h in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(flt)
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(flt)
    _installed = True
