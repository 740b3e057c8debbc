"""HTTP to AEP: timeouts on every request, errors raised (never returned), retries only
where they are safe.

:class:`Transport` sends one request at a time with the shared token and the AEP headers,
a timeout, and one token refresh on 401. It raises :class:`TransientError` for 429, 5xx,
timeouts and dropped connections, :class:`PermissionDeniedError` for 403 (naming the
permission) and :class:`AEPError` for any other error status.

Retrying is the caller's decision, made per call:

* :meth:`Transport.call` retries a *safe* call (a GET, the PUT of a file, CompleteBatch,
  which AEP documents as safe to retry) with exponential backoff, never before the
  server's ``Retry-After`` (:mod:`.backoff`: jitter only adds time).
* :meth:`Transport.create_once` runs a *creating* POST at most once per attempt and, after a
  transient failure, first looks the resource up by name: the POST may have succeeded
  with its answer lost, and a blind retry would create a duplicate. None of the AEP APIs
  used here takes an idempotency key (the specs offer ``x-request-id`` for tracing only),
  so after a failure that may have been carried out (no answer, 500/502/504) the look-up
  goes on for ``lookup_s`` seconds (``[Platform] create_lookup_s``: AEP's gateway may
  still hand the request on that long after the client gave up) before it is sent again.

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
from cmle.platform.aep.backoff import MAX_RETRY_AFTER_S, parse_retry_after, retry_delay
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
    max_retry_after_s: float = MAX_RETRY_AFTER_S  # a longer Retry-After ends the attempt instead

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt + 1``; never less than ``retry_after``."""
        return retry_delay(attempt, self.backoff_s, self.max_backoff_s, retry_after, random.random)


def _json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:1000]


class Transport:
    """Sends requests to AEP; see the module docstring."""

    def __init__(self, tokens: TokenProvider, headers: dict[str, str], *, timeout: float = 60.0,
                 policy: RetryPolicy | None = None, sandbox: str = "", sleep: Callable[[float], None] = time.sleep,
                 lookup_s: float = 120.0):
        self.tokens = tokens
        self.headers = dict(headers)
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.lookup_s = lookup_s
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
            err.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
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
                    lookup_s: float | None = None) -> tuple[T, bool]:
        """Create something without ever creating it twice.

        ``find`` is asked first after any transient failure of ``create``. After a failure
        that may have been carried out (no answer, 500/502/504) it is asked again and again,
        with backoff, for ``lookup_s`` seconds (default: the transport's ``lookup_s``),
        because the request may still be processed after the client gave up, and a listing
        may show a new resource a moment late; after a refusal (429, 503) once.
        ``create`` is retried only when ``find`` finds nothing. A 409 (already exists) is
        answered by ``find`` too. Returns ``(result, created)``.
        """
        window = self.lookup_s if lookup_s is None else lookup_s
        attempt = 0
        while True:
            try:
                return create(), True
            except TransientError as exc:
                delay = self._backoff(attempt, exc, what, "re-run later: nothing is created twice")
                ambiguous = getattr(exc, "ambiguous", True)
                log.warning("%s: %s; looking it up before retrying%s", what, exc,
                            f" (for up to {window:.0f} s)" if ambiguous else "")
                attempt += 1
                found = self._look_up(find, what, delay, window if ambiguous else 0.0)
                if found is not None:
                    return found, False
                self.stats["retries"] += 1
                self.stats["creates_resent"] += 1
            except AEPError as exc:
                if exc.status != 409:
                    raise
                found = self._look_up(find, what, self.policy.delay(0), window)
                if found is None:
                    raise
                return found, False

    def _backoff(self, attempt: int, exc: TransientError, what: str, advice: str) -> float:
        """The delay before retry ``attempt + 1``; the final TransientError once retries are
        spent, or when the server asks for a wait longer than the policy allows."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > self.policy.max_retry_after_s:
            raise TransientError(f"{what}: AEP asks to wait {retry_after:.0f} s before trying again ({exc}); "
                                 f"{advice}", exc.status, exc.body, exc.method, exc.path) from None
        if attempt >= self.policy.max_retries:
            raise TransientError(f"{what}: still failing after {attempt + 1} attempts: {exc}; {advice}",
                                 exc.status, exc.body, exc.method, exc.path) from None
        return self.policy.delay(attempt, retry_after)

    def _look_up(self, find: Callable[[], T | None], what: str, delay: float, window: float) -> T | None:
        """Ask ``find`` after ``delay``, then with growing pauses until ``window`` seconds
        of waiting have passed (at least once)."""
        waited = 0.0
        while True:
            self.sleep(delay)
            waited += delay
            found = self.call(find, what=f"look-up after {what}")
            if found is not None:
                self.stats["creations_found_after_failure"] += 1
                log.info("%s: it was created after all; using it", what)
                return found
            if waited >= window:
                return None
            delay = min(max(delay * 2, self.policy.backoff_s), self.policy.max_backoff_s, window - waited)
            delay = max(delay, 1e-3)


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
