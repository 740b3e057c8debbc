"""``backend = aep``: the :class:`~cmle.platform.base.Platform` on a real AEP sandbox.

aepp (0.6.0) for the REST APIs and psycopg2 for Query Service, behind our own transport
(:mod:`.http`: timeouts, errors raised, retries only where safe, never a duplicate
creation) and one shared token (:mod:`.auth`). One module per AEP area:

=====================  =====================================================================
:mod:`.xdm`            field groups, schemas, identity descriptors, Profile enablement
:mod:`.catalog`        datasets, batch state
:mod:`.batches`        batch ingestion (create, upload Parquet, complete, revert)
:mod:`.query`          interactive queries (psycopg2) and CTAS (REST)
:mod:`.flows`          dataset export through Flow Service, landing-zone files
:mod:`.segments`       audiences, evaluation jobs, activation
:mod:`.labels`         data usage labels
:mod:`.models`         Data Distiller models (SQL ML): CREATE MODEL, cleanup
:mod:`.dataaccess`     reading a dataset back, merged profile attributes
:mod:`.profileexport`  the profile union as a dataset (Segmentation export jobs)
=====================  =====================================================================

Where aepp is broken or unsafe a module calls the endpoint through the transport itself
and says why in its docstring.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from cmle import ecid, naming
from cmle.config import Settings
from cmle.errors import DataCheckError, NotFoundError, PlatformError
from cmle.platform.aep.auth import Hosts, TokenProvider, configure_aepp
from cmle.platform.aep.batches import SMALL_FILE_LIMIT, BatchService
from cmle.platform.aep.catalog import CatalogService
from cmle.platform.aep.client import AEPClient, build_client
from cmle.platform.aep.dataaccess import DataAccess, profile_attributes
from cmle.platform.aep.errors import AEPError, AuthError, PermissionDeniedError, TransientError
from cmle.platform.aep.flows import ExportService
from cmle.platform.aep.http import RetryPolicy, Transport
from cmle.platform.aep.labels import LabelService
from cmle.platform.aep.models import ModelService
from cmle.platform.aep.profileexport import ProfileExportService
from cmle.platform.aep.query import QueryEngine
from cmle.platform.aep.segments import AudienceService
from cmle.platform.aep.xdm import XDM
from cmle.platform.base import Activation, Audience, Batch, Dataset, ExportResult, Resource

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)


class AEPPlatform:
    """The Platform protocol on an AEP sandbox; build it with :meth:`from_settings`."""

    backend = "aep"

    def __init__(self, client: AEPClient, *, owner: str = "cmle", qs_sslmode: str = "require",
                 poll_s: float = 10.0, export_destination: str = "dlz", destination_connection_id: str = "",
                 storage_url: str = "", large_file_bytes: int = SMALL_FILE_LIMIT):
        self.client = client
        self.owner = owner
        self.xdm = XDM(client)
        self.catalog = CatalogService(client, owner=owner)
        self.batches = BatchService(client, self.catalog, large_file_bytes=large_file_bytes)
        self.queries = QueryEngine(client, self.catalog, sslmode=qs_sslmode, poll_s=poll_s, adhoc_schemas=self.xdm,
                                   batches=self.batches)
        self.exports = ExportService(client, self.catalog, owner, destination=export_destination,
                                     base_connection_id=destination_connection_id, storage_url=storage_url,
                                     poll_s=poll_s)
        self.audiences = AudienceService(client, self.xdm.tenant_id, poll_s=poll_s,
                                         data_changed_at=self._profile_data_changed_at)
        self.labels = LabelService(client)
        self.models = ModelService(self.queries)
        self.data = DataAccess(client, self.catalog)
        self.profile_exports = ProfileExportService(client, self.catalog, self.batches, poll_s=poll_s)
        self._ecid_fields: dict[str, str | None] = {}  # dataset id -> its ECID identity field (None: none)

    @classmethod
    def from_settings(cls, settings: Settings) -> "AEPPlatform":
        """Authenticate (OAuth server-to-server) and connect to the configured sandbox."""
        p, a, cloud = settings.platform, settings.authentication, settings.cloud
        hosts: Hosts = configure_aepp(org_id=p.ims_org_id, client_id=a.client_id, secret=a.client_secret,
                                      scopes=a.scopes, sandbox=p.sandbox_name, environment=p.environment,
                                      platform_url=p.platform_url, ims_url=p.ims_url)
        policy = RetryPolicy(backoff_s=p.retry_backoff, max_backoff_s=max(30.0, p.retry_backoff))
        tokens = TokenProvider(hosts.token_url, a.client_id, a.client_secret, a.scopes, timeout=p.request_timeout,
                               max_retries=policy.max_retries, backoff_s=p.retry_backoff,
                               max_backoff_s=policy.max_backoff_s)
        headers = {"x-api-key": a.client_id, "x-gw-ims-org-id": p.ims_org_id, "x-sandbox-name": p.sandbox_name,
                   "Accept": "application/json"}
        transport = Transport(tokens, headers, timeout=p.request_timeout, policy=policy, sandbox=p.sandbox_name,
                              lookup_s=p.create_lookup_s)
        client = build_client(transport, hosts, p.sandbox_name)
        return cls(client, owner=p.owner, qs_sslmode=p.qs_sslmode, poll_s=p.poll_interval,
                   export_destination=cloud.export_destination,
                   destination_connection_id=cloud.destination_connection_id, storage_url=cloud.storage_url)

    @property
    def tenant_id(self) -> str:
        return self.xdm.tenant_id()

    # --- XDM and datasets -------------------------------------------------------------
    def get_or_create_field_group(self, title: str, fields: dict[str, str], extends: str) -> str:
        return self.xdm.get_or_create_field_group(title, fields, extends)

    def get_or_create_schema(self, title: str, xdm_class: str, field_group_ids: list[str],
                             identity_field: str = "userid", profile_enabled: bool = False,
                             identity_namespace: str = "ECID") -> str:
        return self.xdm.get_or_create_schema(title, xdm_class, field_group_ids, identity_field, profile_enabled,
                                             identity_namespace)

    def get_or_create_dataset(self, name: str, schema_id: str, profile_enabled: bool = False) -> Dataset:
        if profile_enabled and not self.xdm.schema_is_profile(schema_id):
            raise PlatformError(f"dataset {name!r}: its schema is not enabled for Profile")
        return self.catalog.get_or_create_dataset(name, schema_id, profile_enabled)

    def find_dataset(self, name: str) -> Dataset | None:
        return self.catalog.find_dataset(name)

    def get_dataset(self, dataset_id: str) -> Dataset:
        return self.catalog.get_dataset(dataset_id)

    def dataset_fields(self, dataset_id: str) -> dict[str, str]:
        schema_id = self.catalog.get_dataset(dataset_id).schema_id
        return self.xdm.schema_fields(schema_id) if schema_id else {}

    # --- batch ingestion ----------------------------------------------------------------
    def create_batch(self, dataset_id: str, tags: dict[str, str] | None = None) -> str:
        return self.batches.create_batch(dataset_id, tags)

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, data: bytes) -> None:
        self._check_identities(dataset_id, file_name, data)
        self.batches.upload_file(batch_id, dataset_id, file_name, data)

    def _check_identities(self, dataset_id: str, file_name: str, data: bytes) -> None:
        """Refuse a file whose ECID identities AEP would reject, before it is uploaded."""
        if dataset_id not in self._ecid_fields:
            schema_id = self.catalog.get_dataset(dataset_id).schema_id
            self._ecid_fields[dataset_id] = self.xdm.ecid_identity_field(schema_id) if schema_id else None
        field = self._ecid_fields[dataset_id]
        if field is None:
            return
        root = f"_{self.tenant_id}"
        try:
            table = pq.read_table(io.BytesIO(data), columns=[root])
        except Exception:  # noqa: BLE001 - not our check: the platform refuses unreadable files itself
            return
        struct = table.column(root).combine_chunks()
        if field not in [struct.type.field(i).name for i in range(struct.type.num_fields)]:
            return
        bad, examples = ecid.problems(struct.field(field))
        if bad:
            raise DataCheckError(f"{file_name}: {bad} of {table.num_rows} rows have an invalid ECID in {root}.{field} "
                                 f"(e.g. {examples}); {ecid.describe_rule()}. AEP would refuse them (Invalid ECID); "
                                 f"fix the identities before ingesting into dataset {dataset_id}")

    def complete_batch(self, batch_id: str) -> None:
        self.batches.complete_batch(batch_id)

    def get_batch(self, batch_id: str) -> Batch:
        return self.catalog.get_batch(batch_id)

    def list_batches(self, dataset_id: str) -> list[Batch]:
        return self.catalog.list_batches(dataset_id)

    def delete_batch(self, batch_id: str) -> None:
        self.batches.revert_batch(batch_id)

    def abort_batch(self, batch_id: str) -> None:
        self.batches.abort_batch(batch_id)

    # --- queries ------------------------------------------------------------------------
    def query(self, sql: str, timeout_s: float = 600.0, max_rows: int = 50_000) -> "pd.DataFrame":
        return self.queries.query(sql, timeout_s=timeout_s, max_rows=max_rows)

    def create_table_as(self, name: str, sql: str, timeout_s: float = 3600.0) -> Dataset:
        ds = self.queries.create_table_as(name, sql, timeout_s)
        self.catalog.record_owner(ds.id)  # the ownership record cleanup follows
        return ds

    def read_dataset(self, dataset_id: str, columns: list[str] | None = None) -> "pa.Table":
        return self.data.read_dataset(dataset_id, columns)

    def run_statement(self, sql: str, label: str, timeout_s: float = 3600.0) -> None:
        """Run one statement without result rows (Data Distiller's ``CREATE MODEL``) as a
        Query Service REST query, polled to success; QueryError when it fails or times out.
        Only on AEP: the embedded platform has no Data Distiller."""
        self.models.run(sql, label, timeout_s)

    def create_sql_audience(self, name: str, select_sql: str, identity_field: str, namespace: str,
                            timeout_s: float = 3600.0) -> int:
        return self.models.create_sql_audience(name, select_sql, identity_field, namespace, timeout_s)

    def configure_landing_zone(self) -> str:
        """Hand the Data Landing Zone credentials (Azure SAS or AWS STS) to fsspec's
        configuration so that :mod:`cmle.storage` can read the exports; return the landing
        zone's root URL (what ``[Cloud] storage_url`` should be on AEP)."""
        return self.exports.landing_zone().url

    # --- export and governance ----------------------------------------------------------
    def export_dataset(self, dataset_id: str, export_path: str, data_format: str = "parquet",
                       compression: str = "gzip", timeout_s: float = 3600.0) -> ExportResult:
        return self.exports.export_dataset(dataset_id, export_path, data_format, compression, timeout_s)

    def get_labels(self, dataset_id: str) -> set[str]:
        return self.labels.get_labels(dataset_id)

    def set_labels(self, dataset_id: str, labels: set[str]) -> None:
        self.labels.set_labels(dataset_id, labels)

    # --- audiences ----------------------------------------------------------------------
    def get_or_create_audience(self, name: str, pql: str, description: str = "") -> Audience:
        return self.audiences.get_or_create_audience(name, pql, description)

    def evaluate_audiences(self, audience_ids: list[str], timeout_s: float = 1800.0) -> dict[str, int]:
        return self.audiences.evaluate(audience_ids, timeout_s)

    def activate_audience(self, audience: Audience, destination: str, fields: list[str]) -> Activation:
        return self.audiences.activate(audience, destination, fields)

    # --- profile ------------------------------------------------------------------------
    def profile_attributes(self, fields: list[str]) -> "pd.DataFrame":
        return profile_attributes(self.queries, self.xdm, self._owner_profile_datasets(), fields)

    def profile_union(self, name: str, fields: list[str], merge_policy: str = "", fresh_after: float = 0.0,
                      timeout_s: float = 3600.0) -> Dataset:
        return self.profile_exports.profile_union(name, fields, merge_policy, fresh_after, timeout_s)

    def _owner_profile_datasets(self) -> list[Dataset]:
        """This owner's Profile-enabled datasets (found by this package's names): the only
        ones whose attributes the stages read, never another owner's scores."""
        found = [self.catalog.find_dataset(name) for name in (naming.profiles_dataset(self.owner),
                                                               naming.scores_dataset(self.owner))]
        return [ds for ds in found if ds is not None and ds.profile_enabled]

    def _profile_data_changed_at(self) -> float:
        return max((self.catalog.last_change(ds.id) for ds in self._owner_profile_datasets()), default=0.0)

    # --- cleanup ------------------------------------------------------------------------
    def list_resources(self) -> list[Resource]:
        # a SQL audience's dataset is the audience: DROP AUDIENCE removes both (kind "sqlaudience")
        datasets = self.catalog.dataset_resources()
        sql_audiences = [Resource("sqlaudience", r.name, r.name, owner=r.owner) for r in datasets
                         if naming.is_sql_audience(r.name)]
        return [*self.audiences.list_resources(), *sql_audiences, *self.exports.list_resources(),
                *[r for r in datasets if not naming.is_sql_audience(r.name)], *self.xdm.list_resources(),
                *self.models.list_resources()]

    def delete_resource(self, resource: Resource) -> None:
        if resource.kind == "audience":
            self.audiences.delete(resource.id)
        elif resource.kind in ("flow", "connection"):
            self.exports.delete(resource)
        elif resource.kind == "dataset":
            schema_id = self._schema_of(resource.id)
            self.catalog.delete_dataset(resource.id)
            if schema_id:  # a CTAS dataset's ad-hoc schema goes with it
                self.xdm.delete_adhoc_schema(schema_id)
        elif resource.kind in ("schema", "fieldgroup", "descriptor"):
            self.xdm.delete(resource.kind, resource.id)
        elif resource.kind == "model":
            self.models.delete(resource.name)
        elif resource.kind == "sqlaudience":
            self.models.drop_audience(resource.name)
        else:
            raise PlatformError(f"cannot delete a {resource.kind} on AEP")

    def _schema_of(self, dataset_id: str) -> str:
        try:
            return self.catalog.get_dataset(dataset_id).schema_id
        except NotFoundError:
            return ""

    def close(self) -> None:
        self.queries.close()


__all__ = ["AEPPlatform", "AEPError", "AuthError", "PermissionDeniedError", "TransientError"]
