"""OAuth server-to-server authentication: aepp's configuration and one shared token.

:func:`configure_aepp` calls ``aepp.configure`` (which maps ``environment`` to hosts:
``prod`` -> ``https://platform.adobe.io`` and ``https://ims-na1.adobelogin.com``, any
other value -> ``https://platform-{env}.adobe.io`` and the stage IMS) and then applies
the explicit overrides ``[Platform] platform_url`` / ``ims_url`` by mutating aepp's
configuration dicts (aepp has no other hook; see reference/aepp.md §1.5).

:class:`TokenProvider` holds the one access token every request uses. It calls IMS
itself rather than through aepp because aepp's token call has no timeout, prints its
errors, turns bad credentials into ``KeyError: 'expires_in'`` and runs once per service
object. The token is refreshed ``margin_s`` before it expires (or at once when the
platform answers 401), and registered with :mod:`cmle.redact` the moment it arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests

from cmle import redact
from cmle.config import Secret
from cmle.platform.aep.backoff import MAX_RETRY_AFTER_S, parse_retry_after, retry_delay
from cmle.platform.aep.errors import AuthError, TransientError, error_detail

log = logging.getLogger(__name__)

IMS_TOKEN_PATH = "/ims/token/v3"
_TRANSIENT = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Hosts:
    platform: str  # API base, e.g. https://platform.adobe.io
    ims: str  # IMS base, e.g. https://ims-na1.adobelogin.com

    @property
    def token_url(self) -> str:
        return self.ims.rstrip("/") + IMS_TOKEN_PATH


def normalise_scopes(scopes: str) -> str:
    """IMS wants a comma-separated list without spaces."""
    return ",".join(s.strip() for s in scopes.replace(";", ",").split(",") if s.strip())


def configure_aepp(*, org_id: str, client_id: str, secret: Secret, scopes: str, sandbox: str,
                   environment: str, platform_url: str = "", ims_url: str = "") -> Hosts:
    """Configure aepp's global state for this sandbox; return the hosts requests go to."""
    import aepp
    from aepp import config as aepp_config

    if not client_id or not secret:
        raise AuthError("backend = aep needs [Authentication] client_id and the client secret in "
                        "CMLE_AUTHENTICATION_CLIENT_SECRET (OAuth server-to-server credential of the "
                        "Adobe Developer Console project)")
    aepp.configure(org_id=org_id, client_id=client_id, secret=secret.get(), scopes=normalise_scopes(scopes),
                   sandbox=sandbox, environment=environment, retry=0)
    platform = (platform_url or aepp_config.endpoints["global"]).rstrip("/")
    ims = (ims_url or aepp_config.config_object["imsEndpoint"]).rstrip("/")
    aepp_config.endpoints["global"] = platform
    aepp_config.endpoints["streaming"]["inlet"] = platform + "/data/core/edge"
    aepp_config.config_object["imsEndpoint"] = ims
    aepp_config.config_object["oauthTokenEndpointV2"] = ims + IMS_TOKEN_PATH
    aepp_config.config_object["retry"] = 0  # we retry, and only what is safe to retry
    return Hosts(platform=platform, ims=ims)


class TokenProvider:
    """The shared IMS access token, fetched on first use and refreshed before it expires."""

    def __init__(self, token_url: str, client_id: str, secret: Secret, scopes: str,
                 session: requests.Session | None = None, timeout: float = 30.0, margin_s: float = 300.0,
                 max_retries: int = 3, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 sleep=time.sleep):
        self.token_url = token_url
        self.client_id = client_id
        self._secret = secret
        self.scopes = normalise_scopes(scopes)
        self.session = session or requests.Session()
        self.timeout = timeout
        self.margin_s = margin_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self._token = ""
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._lock = threading.Lock()
        self.fetches = 0  # how many tokens were obtained (tests check sharing)
        self.retries = 0  # token requests repeated after a transient IMS failure

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def token(self) -> str:
        """A valid token; fetched when missing or within ``margin_s`` of its expiry."""
        with self._lock:
            # Short-lived tokens (tests) refresh at 3/4 of their life rather than every call.
            margin = min(self.margin_s, 0.25 * self._lifetime)
            if not self._token or time.time() >= self._expires_at - margin:
                self._fetch()
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the platform refused it); the next :meth:`token` fetches a new one."""
        with self._lock:
            if token == self._token:
                self._token = ""

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret.get(), "scope": self.scopes}
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                resp = self.session.post(self.token_url, data=form, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                err: Exception = TransientError(f"IMS at {self.token_url} did not answer: {type(exc).__name__}")
            else:
                if resp.status_code in _TRANSIENT:
                    err = TransientError(f"IMS answered {resp.status_code}", status=resp.status_code)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                else:
                    self._accept(resp)
                    return
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                raise AuthError(f"IMS ({self.token_url}) asks to wait {retry_after:.0f} s before the next token "
                                f"request ({err}); re-run later") from None
            if attempt == self.max_retries:
                raise AuthError(f"could not obtain an access token from IMS ({self.token_url}): {err}; "
                                "check [Platform] environment / ims_url and the network") from None
            # Never before IMS's Retry-After: an early retry is refused again and counts against us.
            delay = retry_delay(attempt, self.backoff_s, self.max_backoff_s, retry_after)
            log.warning("IMS token request failed (%s); retrying in %.1f s", err, delay)
            self.retries += 1
            self.sleep(delay)

    def _accept(self, resp: requests.Response) -> None:
        try:
            body = resp.json()
        except ValueError:
            body = {"error": resp.text[:200]}
        if resp.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            detail = redact.scrub(error_detail(body))
            raise AuthError(f"IMS refused the credentials (HTTP {resp.status_code}: {detail}); check "
                            "[Authentication] client_id, scopes and CMLE_AUTHENTICATION_CLIENT_SECRET, and "
                            "that the credential is an OAuth Server-to-Server credential of a Developer "
                            "Console project with the Experience Platform API")
        token = str(body["access_token"])
        redact.register(token)
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        # IMS has sent expires_in in ms in some versions; a value above a day cannot be seconds.
        if expires_in > 86400 * 2:
            expires_in /= 1000.0
        self._token = token
        self._expires_at = time.time() + expires_in
        self._lifetime = expires_in
        self.fetches += 1
        log.info("obtained an access token from IMS (valid %.0f s)", expires_in)
