"""The aepp service objects of one sandbox, wired to one :class:`Transport`.

aepp keeps its configuration in module-level dicts that every service object copies at
construction, and each service object normally fetches its own IMS token. Here the
shared token is seeded into aepp's configuration first (``token``, ``date_limit``,
``connectionType``: the recipe of reference/aepp.md §1.5), every service is built at once
under a lock, and each one's HTTP session is replaced by :class:`AepSession` with aepp's
own retries switched off. aepp's logging stays off: at DEBUG it logs the token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cmle.platform.aep.auth import Hosts
from cmle.platform.aep.http import AepSession, Transport

_AEPP_LOCK = threading.Lock()

SERVICE_PATHS = {
    "schemas": "/data/foundation/schemaregistry",
    "catalog": "/data/foundation/catalog",
    "ingestion": "/data/foundation/import",
    "export": "/data/foundation/export",
    "query": "/data/foundation/query",
    "flow": "/data/foundation/flowservice",
    "activation": "/data/core/activation/disflowprovider",
    "segmentation": "/data/core/ups",
    "dataset": "/data/foundation/dataset",
    "landingzone": "/data/foundation/connectors/landingzone",
}


@dataclass
class AEPClient:
    """Everything the adapter's modules need to talk to one sandbox."""

    transport: Transport
    hosts: Hosts
    sandbox: str
    schema: Any
    catalog: Any
    ingestion: Any
    query: Any
    flows: Any
    destinations: Any
    segmentation: Any
    datasets: Any

    def url(self, service: str, path: str) -> str:
        """Absolute URL of ``path`` under a service's base path (for our own calls)."""
        return f"{self.hosts.platform}{SERVICE_PATHS[service]}{path}"

    def get(self, service: str, path: str, **kw) -> Any:
        return self.transport.json("GET", self.url(service, path), safe=True, **kw)


def build_client(transport: Transport, hosts: Hosts, sandbox: str) -> AEPClient:
    """Construct the aepp services (after :func:`cmle.platform.aep.auth.configure_aepp`)."""
    from aepp import (
        catalog,
        config,
        datasets,
        destinationinstanceservice,
        flowservice,
        ingestion,
        queryservice,
        schema,
        segmentation,
    )

    with _AEPP_LOCK:
        config.endpoints["global"] = hosts.platform
        config.config_object["token"] = transport.tokens.token()
        # aepp refreshes on its own when date_limit passes; the transport owns refresh instead.
        config.config_object["date_limit"] = time.time() + 10 * 365 * 86400
        config.config_object["connectionType"] = "oauthV2"
        config.config_object["sandbox"] = sandbox
        config.header["x-sandbox-name"] = sandbox
        services = {
            "schema": schema.Schema(),
            "catalog": catalog.Catalog(),
            "ingestion": ingestion.DataIngestion(),
            "query": queryservice.QueryService(),
            "flows": flowservice.FlowService(),
            "destinations": destinationinstanceservice.DestinationInstanceService(),
            "segmentation": segmentation.Segmentation(),
            "datasets": datasets.DataSets(),
        }
        config.config_object["token"] = ""  # the token lives in the TokenProvider only
    for svc in services.values():
        conn = svc.connector
        conn.session = AepSession(transport)
        conn.retry = 0
        conn.loggingEnabled = False
        conn.config["date_limit"] = float("inf")
        conn.config["token"] = ""
    return AEPClient(transport=transport, hosts=hosts, sandbox=sandbox, **services)
