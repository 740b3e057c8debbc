"""Stage ``webhook``: register (get-or-create by name) the MLflow webhook that the tracking
server calls when the champion alias moves. Not an MLflow run.

The secret that signs the deliveries comes from ``CMLE_WEBHOOK_SECRET`` (never a parameter);
docs/promotion.md shows a local set-up with ``mlflow server`` and the reference receiver.
"""

from __future__ import annotations

import os

from cmle.context import Context
from cmle.errors import ConfigError, ParameterError, RegistryError
from cmle.promotion import events as registry_events
from cmle.registry import Registry
from cmle.stages import Param, Stage


def webhook(ctx: Context, url: str = "", name: str = registry_events.DEFAULT_WEBHOOK_NAME,
            events: str = ",".join(registry_events.DEFAULT_EVENTS), test: bool = False,
            registry: Registry | None = None) -> dict:
    if not url.strip():
        raise ParameterError("webhook: --url is required: the receiver's address, e.g. https://hooks.example.com/cmle")
    wanted = tuple(e.strip() for e in events.split(",") if e.strip())
    registry = registry or Registry.configured(ctx.settings)
    if not registry_events.supports_webhooks(registry.uri):
        raise ConfigError(f"the registry {registry.uri} fires no webhooks: only an MLflow tracking server does "
                          "(set [MLflow] tracking_uri or MLFLOW_TRACKING_URI to http(s)://...). On Databricks, use "
                          "the job's notifications instead")
    secret = os.environ.get(registry_events.SECRET_ENV, "")
    if not secret:
        raise ConfigError(f"set {registry_events.SECRET_ENV} to the secret that signs the deliveries (the receiver "
                          "checks it); it is sent to the server, never logged")
    from mlflow.exceptions import MlflowException

    try:
        hook, done = registry_events.ensure_webhook(registry.client, url.strip(), secret, name, wanted)
    except MlflowException as exc:
        raise RegistryError(f"the tracking server refused the webhook: {str(exc).splitlines()[0][:300]} (a local "
                            "http:// receiver needs the server started with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https "
                            "and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true: docs/promotion.md)") from None
    out = {"webhook_id": hook.webhook_id, "name": hook.name, "url": hook.url,
           "events": sorted(str(e) for e in hook.events), "status": str(hook.status), "action": done}
    if test:
        result = registry.client.test_webhook(hook.webhook_id)
        out["test"] = {"success": result.success, "status": result.response_status,
                       "error": result.error_message}
    return out


STAGE = Stage(
    name="webhook",
    func=webhook,
    params=(
        Param("url", str, "", "where the tracking server sends the events (the receiver)"),
        Param("name", str, registry_events.DEFAULT_WEBHOOK_NAME, "the webhook's name (re-running updates it)"),
        Param("events", str, ",".join(registry_events.DEFAULT_EVENTS), "events, comma separated (entity.action)"),
        Param("test", bool, False, "send a test delivery after registering"),
    ),
    help="Register the MLflow webhook the tracking server calls when the champion alias moves (secret from "
         "CMLE_WEBHOOK_SECRET); needs an http(s) tracking server.",
    tracked=False,
)
