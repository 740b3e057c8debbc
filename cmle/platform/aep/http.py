"""HTTP to AEP: timeouts on every request, errors raised (never returned), retries only
where they are safe.

:class:`Transport` sends one request at a time with the shared token and the AEP headers,
a timeout, and one token refresh on 401. It raises :class:`TransientError` for 429, 5xx,
timeouts and dropped connections, :class:`PermissionDeniedError` for 403 (naming the
permission) and :class:`AEPError` for any other error status.

Retrying is the caller's decision, made per call:

* :meth:`Transport.call` retries a *safe* call (a GET, the PUT of a file, CompleteBatch,
  which AEP documents as safe to retry) with exponential backoff, honouring
  ``Retry-After``.
* :meth:`Transport.create_once` runs a *creating* POST at most once per attempt and, after a
  transient failure, first looks the resource up by name: the POST may have succeeded
  with its answer lost, and a blind retry would create a duplicate.

:class:`AepSession` is the ``requests.Session`` installed into every aepp service object
in place of aepp's own (which retries POSTs on 5xx, has no timeout and disables TLS
verification), so that aepp's methods go through the same transport.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from cmle import redact
from cmle.errors import NotFoundError
from cmle.platform.aep.auth import TokenProvider
from cmle.platform.aep.errors import (
    AEPError,
    AuthError,
    PermissionDeniedError,
    TransientError,
    error_detail,
    permission_for,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class AEPNotFound(AEPError, NotFoundError):
    """AEP answered 404."""


def _transient(message: str, status: int = 0, body=None, method: str = "", path: str = "", *,
               ambiguous: bool) -> TransientError:
    """A TransientError; ``ambiguous`` when the request may have been carried out."""
    err = TransientError(message, status, body, method, path)
    err.ambiguous = ambiguous
    return err


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        if retry_after is not None:
            base = max(base, min(retry_after, self.max_backoff_s))
        return base * (0.8 + 0.4 * random.random())


def _json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:1000]


class Transport:
    """Sends requests to AEP; see the module docstring."""

    def __init__(self, tokens: TokenProvider, headers: dict[str, str], *, timeout: float = 60.0,
                 policy: RetryPolicy | None = None, sandbox: str = "", sleep: Callable[[float], None] = time.sleep):
        self.tokens = tokens
        self.headers = dict(headers)
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.sandbox = sandbox
        self.sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=0, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.stats: Counter = Counter()

    # --- one exchange ------------------------------------------------------------------
    def send(self, method: str, url: str, *, headers: dict | None = None, params: Any = None,
             data: Any = None, json: Any = None, timeout: float | None = None) -> requests.Response:
        """One request (plus one resend after a token refresh on 401); raise on any error status."""
        for refreshed in (False, True):
            token = self.tokens.token()
            hdrs = {**self.headers, **(headers or {}), "Authorization": f"Bearer {token}"}
            if json is not None:
                hdrs.setdefault("Content-Type", "application/json")
            started = time.monotonic()
            path = urlsplit(url).path
            try:
                resp = self.session.request(method, url, headers=hdrs, params=params, data=data, json=json,
                                            timeout=timeout or self.timeout)
            except requests.Timeout:
                self.stats["timeouts"] += 1
                raise _transient(f"{method} {path}: no answer within {timeout or self.timeout:g} s",
                                 method=method, path=path, ambiguous=True) from None
            except requests.ConnectionError as exc:
                self.stats["connection_errors"] += 1
                raise _transient(f"{method} {path}: connection failed ({type(exc).__name__})",
                                 method=method, path=path, ambiguous=True) from None
            log.debug("%s %s -> %s (%.2f s)", method, path, resp.status_code, time.monotonic() - started)
            if resp.status_code == 401 and not refreshed:
                self.stats["token_refreshes_on_401"] += 1
                self.tokens.invalidate(token)
                continue
            if resp.status_code < 400:
                return resp
            self._raise(method, path, resp)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise(self, method: str, path: str, resp: requests.Response) -> None:
        body = _json_or_text(resp)
        detail = redact.scrub(error_detail(body))
        status = resp.status_code
        if status in TRANSIENT_STATUS:
            self.stats[f"http_{status}"] += 1
            # 429 and 503 say the request was not taken; after a 500/502/504 it may have been.
            err = _transient(f"{method} {path}: AEP answered {status} ({detail})", status, body, method, path,
                             ambiguous=status not in (429, 503))
            try:
                err.retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                err.retry_after = None
            raise err
        if status == 401:
            raise AuthError(f"AEP refused the access token for {method} {path} even after a refresh ({detail}); "
                            "check that the credential's org ([Platform] ims_org_id) and sandbox "
                            f"({self.sandbox}) match the project in the Developer Console")
        if status == 403:
            raise PermissionDeniedError(
                f"the credential may not {method} {path} in sandbox {self.sandbox!r}: AEP answered 403 "
                f"({detail}). Give the credential's product profile the permission "
                f"'{permission_for(path)}' for this sandbox in Adobe Admin Console, then re-run.",
                status, body, method, path)
        cls = AEPNotFound if status == 404 else AEPError
        raise cls(f"{method} {path}: AEP answered {status} ({detail})", status, body, method, path)

    def request(self, method: str, url: str, *, safe: bool, what: str = "", **kw) -> requests.Response:
        """:meth:`send`, retried on transient errors when ``safe``."""
        if not safe:
            return self.send(method, url, **kw)
        return self.call(lambda: self.send(method, url, **kw), what=what or f"{method} {urlsplit(url).path}")

    def json(self, method: str, url: str, *, safe: bool, what: str = "", **kw) -> Any:
        resp = self.request(method, url, safe=safe, what=what, **kw)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise AEPError(f"{what or url}: AEP answered {resp.status_code} with a body that is not JSON: "
                           f"{resp.text[:200]!r}") from None

    # --- retry policies ------------------------------------------------------------------
    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run a safe call, retrying transient failures with backoff."""
        attempt = 0
        while True:
            try:
                return fn()
            except TransientError as exc:
                delay = self._backoff(attempt, exc, what, "AEP may be degraded, re-run later")
                self.stats["retries"] += 1
                log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
                self.sleep(delay)
                attempt += 1

    def create_once(self, *, what: str, create: Callable[[], T], find: Callable[[], T | None],
                    settle_lookups: int = 3) -> tuple[T, bool]:
        """Create something without ever creating it twice.

        ``find`` is asked first after any transient failure of ``create`` (a POST that timed
        out may have succeeded); after an ambiguous failure (no answer, 500/502/504) it is
        asked up to ``settle_lookups`` times, with backoff, because a listing may show a new
        resource a moment late. ``create`` is retried only when ``find`` finds nothing. A
        409 (already exists) is answered by ``find`` too. Returns ``(result, created)``.
        """
        attempt = 0
        while True:
            try:
                return create(), True
            except TransientError as exc:
                delay = self._backoff(attempt, exc, what, "re-run later: nothing is created twice")
                log.warning("%s: %s; looking it up before retrying in %.1f s", what, exc, delay)
                attempt += 1
                found = self._look_up(find, what, delay, settle_lookups if getattr(exc, "ambiguous", True) else 1)
                if found is not None:
                    return found, False
                self.stats["retries"] += 1
            except AEPError as exc:
                if exc.status != 409:
                    raise
                found = self._look_up(find, what, self.policy.delay(0), settle_lookups)
                if found is None:
                    raise
                return found, False

    def _backoff(self, attempt: int, exc: TransientError, what: str, advice: str) -> float:
        """The delay before retry ``attempt + 1``; the final TransientError once retries are spent."""
        if attempt >= self.policy.max_retries:
            raise TransientError(f"{what}: still failing after {attempt + 1} attempts: {exc}; {advice}",
                                 exc.status, exc.body, exc.method, exc.path) from None
        return self.policy.delay(attempt, getattr(exc, "retry_after", None))

    def _look_up(self, find: Callable[[], T | None], what: str, delay: float, times: int) -> T | None:
        for i in range(times):
            self.sleep(delay * (2 ** i))
            found = self.call(find, what=f"look-up after {what}")
            if found is not None:
                self.stats["creations_found_after_failure"] += 1
                log.info("%s: it was created after all; using it", what)
                return found
        return None


class AepSession(requests.Session):
    """A ``requests.Session`` for aepp's connectors that sends through :class:`Transport`.

    aepp passes ``verify=False`` on every call; it is ignored (TLS is verified).
    """

    def __init__(self, transport: Transport):
        super().__init__()
        self.transport = transport

    def request(self, method, url, params=None, data=None, headers=None, json=None, **kwargs):  # noqa: D401
        timeout = kwargs.get("timeout")
        return self.transport.send(method.upper(), url, headers=_plain_headers(headers), params=params,
                                   data=data, json=json, timeout=timeout)


def _plain_headers(headers: dict | None) -> dict:
    """aepp's headers minus its stale Authorization (the transport sets the current one)."""
    return {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
