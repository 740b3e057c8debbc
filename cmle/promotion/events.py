"""Registry events: MLflow webhooks that fire when the champion alias moves.

An MLflow tracking server (``mlflow server``; 3.17.2 here) calls registered webhooks
itself when a registry event happens through it: moving alias ``champion`` (promote,
rollback) is a ``model_version_alias.created`` event with ``{"name", "alias", "version"}``.
cmle only registers the webhook (get-or-create by name, :func:`ensure_webhook`) and gives
receivers a signature check (:func:`verify`) and a small reference receiver
(``python -m cmle.promotion.events``). Events fire only where a server does the registry
work: not with a local sqlite store (no server), and not on Databricks, whose registry
has no MLflow webhooks API (use the job's notifications there).

Deliveries are signed the Standard Webhooks way: header ``X-MLflow-Signature`` is
``v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>" with the secret>``, beside
``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds). The secret comes from the
environment (``CMLE_WEBHOOK_SECRET``), never from a parameter.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

ALIAS_CREATED = "model_version_alias.created"
DEFAULT_EVENTS = (ALIAS_CREATED,)
DEFAULT_WEBHOOK_NAME = "cmle-champion"
SECRET_ENV = "CMLE_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
MAX_AGE_S = 300  # a delivery older than this is refused (replay)


def supports_webhooks(registry_uri: str) -> bool:
    """True for a registry reached through an MLflow server (http/https), which fires webhooks."""
    return urllib.parse.urlparse(registry_uri or "").scheme in ("http", "https")


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature MLflow sends for this delivery."""
    payload = body.decode("utf-8") if isinstance(body, bytes) else body
    digest = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{payload}".encode("utf-8"),
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
           max_age_s: float = MAX_AGE_S) -> bool:
    """True when the delivery carries a valid signature made with ``secret`` and is recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    sent = lower.get(SIGNATURE_HEADER.lower(), "")
    delivery, stamp = lower.get(DELIVERY_HEADER.lower(), ""), lower.get(TIMESTAMP_HEADER.lower(), "")
    if not (sent and delivery and stamp and secret):
        return False
    try:
        age = (time.time() if now is None else now) - int(stamp)
    except ValueError:
        return False
    if abs(age) > max_age_s:
        return False
    expected = signature(secret, delivery, stamp, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in [sent] + sent.split(" "))


def ensure_webhook(client, url: str, secret: str | None, name: str = DEFAULT_WEBHOOK_NAME,
                   events: tuple[str, ...] = DEFAULT_EVENTS) -> tuple[object, str]:
    """The webhook called ``name``, created or brought up to date; returns it and what was done
    (``created``, ``updated`` or ``unchanged``). The secret is always sent on create and update
    (the server never returns it, so it cannot be compared)."""
    existing = None
    token = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        existing = next((w for w in page if w.name == name), None) or existing
        token = getattr(page, "token", None)
        if existing is not None or not token:
            break
    wanted = sorted(events)
    if existing is None:
        return client.create_webhook(name=name, url=url, events=list(events), secret=secret,
                                     description="cmle: the champion alias moved (promote, rollback)"), "created"
    current = sorted(str(e) for e in existing.events)
    if existing.url == url and current == wanted and str(existing.status).upper().endswith("ACTIVE") and not secret:
        return existing, "unchanged"
    return client.update_webhook(existing.webhook_id, url=url, events=list(events), secret=secret,
                                 status="ACTIVE"), "updated"


def registered_for(client, event: str = ALIAS_CREATED) -> list[str]:
    """``name -> url`` of the active webhooks listening to ``event`` (for the decision record)."""
    out, token = [], None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        out += [f"{w.name} -> {w.url}" for w in page
                if str(w.status).upper().endswith("ACTIVE") and event in {str(e) for e in w.events}]
        token = getattr(page, "token", None)
        if not token:
            return out


# --- a reference receiver -----------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    secret = ""
    out: Path | None = None

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        valid = verify(self.secret, dict(self.headers.items()), body)
        if not valid:
            self.send_response(401)
            self.end_headers()
            log.warning("refused a delivery without a valid signature")
            return
        event = json.loads(body)
        # what was received, as sent: the signature can be checked again from this line
        line = {"received": time.time(), "headers": {h: self.headers.get(h) for h in
                                                    (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)},
                "body": body.decode("utf-8"), "event": event}
        if self.out is not None:
            with self.out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        data = event.get("data") or {}
        if event.get("entity") == "model_version_alias" and data.get("alias") == "champion":
            log.info("champion of %s is now v%s", data.get("name"), data.get("version"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, fmt, *args):  # quiet: one line per event is logged above
        log.debug(fmt, *args)


def serve(host: str, port: int, secret: str, out: Path | None) -> ThreadingHTTPServer:
    """A receiver that checks each delivery's signature and appends valid ones to ``out`` (JSON
    lines: ``headers``, raw ``body``, parsed ``event``) and refuses the others (401); call
    ``serve_forever()`` on it (or run it in a thread)."""
    handler = type("Receiver", (_Handler,), {"secret": secret, "out": out})
    return ThreadingHTTPServer((host, port), handler)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Receive MLflow registry webhooks, check their signature "
                                                 f"(secret from ${SECRET_ENV}), append them to a file.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", default="webhook-events.jsonl", help="JSON lines file of the valid deliveries")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"set {SECRET_ENV} to the webhook's secret", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = serve(args.host, args.port, secret, Path(args.out))
    log.info("listening on http://%s:%d/ ; valid deliveries go to %s", args.host, server.server_port, args.out)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
