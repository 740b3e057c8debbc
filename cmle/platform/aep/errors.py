"""Errors of the AEP adapter, all :class:`cmle.errors.CmleError` subclasses with a message
that says what went wrong and what to do."""

from __future__ import annotations

from cmle.errors import ConfigError, PlatformError

# AEP service (path prefix) -> the Admin Console permission a product profile needs for it.
PERMISSIONS = (
    ("/data/foundation/schemaregistry", "Data Modeling > Manage Schemas (View Schemas to read)"),
    ("/data/foundation/catalog", "Data Management > Manage Datasets (View Datasets to read)"),
    ("/data/foundation/import", "Data Management > Manage Datasets (batch ingestion)"),
    ("/data/foundation/export", "Data Management > View Datasets (data access)"),
    ("/data/foundation/query", "Query Service > Manage Queries"),
    ("/data/foundation/flowservice", "Destinations > Manage and Activate Dataset Destinations"),
    ("/data/core/activation", "Destinations > Manage and Activate Dataset Destinations"),
    ("/data/foundation/connectors/landingzone", "Destinations > Manage and Activate Dataset Destinations"),
    ("/data/core/ups", "Profile Management > Manage Audiences"),
    ("/data/foundation/dataset", "Data Governance > Manage Usage Labels"),
)


def permission_for(path: str) -> str:
    for prefix, perm in PERMISSIONS:
        if prefix in path:
            return perm
    return "the Experience Platform permission for this API"


class AEPError(PlatformError):
    """AEP answered a request with an error status."""

    def __init__(self, message: str, status: int = 0, body: object = None, method: str = "", path: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body
        self.method = method
        self.path = path


class TransientError(AEPError):
    """A failure worth retrying for a safe call: 429, 5xx, a timeout or a dropped connection."""


class AuthError(ConfigError):
    """IMS refused the credentials, or none are configured."""


class PermissionDeniedError(AEPError):
    """The credential is valid but lacks a permission (AEP answered 403)."""


def error_detail(body: object) -> str:
    """A one-line summary of an AEP error body (its shapes differ by service)."""
    if isinstance(body, dict):
        parts = []
        for key in ("error_code", "code", "type", "title", "message", "detail", "error", "error_description"):
            if body.get(key) not in (None, ""):
                parts.append(f"{key}={body[key]}")
        for key in ("errors", "report"):
            if body.get(key):
                parts.append(f"{key}={str(body[key])[:300]}")
        if parts:
            return ", ".join(parts)[:600]
    return str(body)[:600]
