"""A local double of Adobe Experience Platform for the AEP adapter's tests.

:class:`~.server.AEPDouble` serves the REST APIs the adapter uses (validated against the
official OpenAPI specs), an IMS token endpoint, and Query Service's PostgreSQL endpoint
(a protocol proxy that translates Spark SQL in front of a real PostgreSQL server,
:class:`~.postgres.PostgresServer`). See ``README.md`` in this folder.
"""

__all__ = ["AEPDouble", "PostgresServer", "PostgresUnavailable"]


def __getattr__(name):  # lazy: the proxy process imports only what it needs
    if name == "AEPDouble":
        from .server import AEPDouble

        return AEPDouble
    if name in ("PostgresServer", "PostgresUnavailable"):
        from . import postgres

        return getattr(postgres, name)
    raise AttributeError(name)
