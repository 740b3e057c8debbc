"""The platform seam: what the stages need from AEP, in AEP's own terms.

Two implementations: :mod:`cmle.platform.local` (the embedded default) and
:mod:`cmle.platform.aep` (aepp + psycopg2). Stage code talks only to :class:`Platform`.

Semantics both keep:

* XDM resources and datasets are get-or-create by title/name: calling twice returns the
  same id and creates nothing.
* Data arrives in batches: ``create_batch`` -> ``upload_file`` (one or more Parquet files)
  -> ``complete_batch``; the batch then reaches a terminal status, ``success`` or
  ``failed``, and a failed batch contributes no row. :mod:`cmle.ingestion` drives this
  (idempotency by batch tag, waiting with a deadline) for both backends.
* ``query`` runs SQL written in the Spark SQL dialect that AEP Query Service accepts over
  the datasets' table names (``Dataset.table``); ``create_table_as`` is a CTAS that
  creates (or replaces) a dataset.
* ``export_dataset`` writes a dataset to cloud storage laid out as AEP lays out exports:
  ``{storage_url}/{export_path}/{dataset_id}/exportTime=YYYYMMDDHHMMSS/part-*.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

# XDM classes a schema can implement.
PROFILE = "profile"
EXPERIENCE_EVENT = "experienceevent"
XDM_CLASSES = {
    PROFILE: "https://ns.adobe.com/xdm/context/profile",
    EXPERIENCE_EVENT: "https://ns.adobe.com/xdm/context/experienceevent",
}

# Batch statuses (AEP's, lower-cased). Terminal ones end a wait.
BATCH_SUCCESS = "success"
BATCH_FAILED = "failed"
BATCH_TERMINAL = {BATCH_SUCCESS, BATCH_FAILED, "aborted", "abandoned", "inactive", "deleted"}

# Data usage labels that forbid data science use (Adobe's advice for CMLE credentials).
FORBIDDEN_LABELS = {"C9": "no data science", "PSPD": "permitted sensitive personal data",
                    "RHD": "regulated health data"}


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    table: str  # the name queries use (AEP: the `adobe/pqs/table` tag)
    schema_id: str = ""
    profile_enabled: bool = False


@dataclass(frozen=True)
class Batch:
    id: str
    dataset_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    records: int = 0
    created: float = 0.0  # epoch seconds

    @property
    def terminal(self) -> bool:
        return self.status in BATCH_TERMINAL


@dataclass(frozen=True)
class ExportResult:
    dataset_id: str
    url: str  # the exportTime=... folder
    export_time: str  # YYYYMMDDHHMMSS, UTC
    files: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class Audience:
    id: str
    name: str
    pql: str
    description: str = ""


@dataclass(frozen=True)
class Activation:
    audience_id: str
    destination: str
    status: str  # success | failed
    members: int
    location: str = ""  # where the members file went, if file based
    detail: str = ""


@dataclass(frozen=True)
class Resource:
    """A platform resource this package created, found by name for ``cleanup``."""

    kind: str  # fieldgroup | schema | dataset | audience | flow | connection | ...
    id: str
    name: str
    owner: str | None = None  # the owner recorded on the platform at creation; None: no record


@runtime_checkable
class Platform(Protocol):
    backend: str

    @property
    def tenant_id(self) -> str:
        """The tenant id; custom XDM fields live under ``_{tenant_id}``."""

    # --- XDM and datasets -------------------------------------------------------------
    def get_or_create_field_group(self, title: str, fields: dict[str, str], extends: str) -> str:
        """Field group with ``fields`` (name -> XDM type: string|number|integer|boolean|date-time)
        under ``_{tenant}``, for class ``extends`` (PROFILE or EXPERIENCE_EVENT). Returns its id."""

    def get_or_create_schema(self, title: str, xdm_class: str, field_group_ids: list[str],
                             identity_field: str = "userid", profile_enabled: bool = False,
                             identity_namespace: str = "ECID") -> str:
        """Schema of ``xdm_class`` with the field groups, the primary identity on
        ``/_{tenant}/{identity_field}`` in namespace ``identity_namespace`` (ECID, CRMID, ...),
        optionally enabled for Profile (union). Returns its id. PlatformError when a schema of
        that title exists with its primary identity in another namespace."""

    def get_or_create_dataset(self, name: str, schema_id: str, profile_enabled: bool = False) -> Dataset:
        """Dataset on the schema, found by name or created."""

    def find_dataset(self, name: str) -> Dataset | None:
        """The dataset with this name, or None."""

    def get_dataset(self, dataset_id: str) -> Dataset:
        """The dataset with this id; NotFoundError if none."""

    def dataset_fields(self, dataset_id: str) -> dict[str, str]:
        """The dataset's leaf fields as ``{path: XDM type}`` (see :mod:`cmle.platform.fields`):
        what ``explore`` lists and a starter spec picks from; empty when unknown."""

    # --- batch ingestion ----------------------------------------------------------------
    def create_batch(self, dataset_id: str, tags: dict[str, str] | None = None) -> str:
        """Open a batch on the dataset; returns the batch id."""

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, data: bytes) -> None:
        """Upload one Parquet file into an open batch."""

    def complete_batch(self, batch_id: str) -> None:
        """Signal that all files are uploaded; the batch then moves to a terminal status."""

    def get_batch(self, batch_id: str) -> Batch:
        """Current state of a batch."""

    def list_batches(self, dataset_id: str) -> list[Batch]:
        """Every batch of the dataset, oldest first."""

    def delete_batch(self, batch_id: str) -> None:
        """Revert a batch: its rows leave the dataset."""

    def abort_batch(self, batch_id: str) -> None:
        """Abort a batch that is still loading (abandoned by a killed run): it never becomes
        visible and a new batch can take its place."""

    # --- queries ------------------------------------------------------------------------
    def query(self, sql: str, timeout_s: float = 600.0, max_rows: int = 50_000) -> "pd.DataFrame":
        """Interactive query (Spark SQL dialect); results capped at ``max_rows`` as AEP caps them."""

    def create_table_as(self, name: str, sql: str, timeout_s: float = 3600.0, key: str | None = None) -> Dataset:
        """CTAS: run ``sql`` and make its result the dataset ``name``, replacing its previous
        content atomically (re-running never appends). With ``key``, a dataset whose current
        content was made with the same key is returned as is, without running the query."""

    def read_dataset(self, dataset_id: str, columns: list[str] | None = None) -> "pa.Table":
        """All rows of a dataset as Arrow (for small datasets and tests; stages use exports)."""

    # --- export and governance ----------------------------------------------------------
    def export_dataset(self, dataset_id: str, export_path: str, data_format: str = "parquet",
                       compression: str = "gzip", timeout_s: float = 3600.0) -> ExportResult:
        """Export the dataset to cloud storage under ``export_path`` (AEP layout)."""

    def get_labels(self, dataset_id: str) -> set[str]:
        """Data usage labels on the dataset (and its fields)."""

    def set_labels(self, dataset_id: str, labels: set[str]) -> None:
        """Set the dataset's data usage labels."""

    # --- audiences ----------------------------------------------------------------------
    def get_or_create_audience(self, name: str, pql: str, description: str = "") -> Audience:
        """Segment definition from a PQL rule over profile attributes, by name."""

    def evaluate_audiences(self, audience_ids: list[str], timeout_s: float = 1800.0) -> dict[str, int]:
        """Evaluate the audiences now; returns audience id -> qualified profile count."""

    def activate_audience(self, audience: Audience, destination: str, fields: list[str]) -> Activation:
        """Send the audience's members (identity and ``fields``) to a destination."""

    def create_sql_audience(self, name: str, select_sql: str, identity_field: str, namespace: str,
                            timeout_s: float = 3600.0) -> int:
        """Data Distiller SQL audience ``name`` (``CREATE AUDIENCE ... AS (select_sql)``, the
        primary identity the root column ``identity_field`` in ``namespace``), replacing one of
        that name (``DROP AUDIENCE IF EXISTS`` first); returns its member count. AEP only: the
        embedded platform raises ParameterError (see :mod:`cmle.audiences.sql`)."""

    # --- profile ------------------------------------------------------------------------
    def profile_attributes(self, fields: list[str]) -> "pd.DataFrame":
        """Merged profile attributes (latest value per identity) for ``fields``, with ``userid``."""

    def profile_union(self, name: str, fields: list[str], merge_policy: str = "", fresh_after: float = 0.0,
                      timeout_s: float = 3600.0) -> Dataset:
        """The merged (union) profiles as the dataset ``name`` (get-or-create), one row per
        profile: its ``identityMap`` and the XDM ``fields`` (dotted paths, nested as in XDM),
        merged with the merge policy ``merge_policy`` (an id; "" = the platform's default,
        timestamp-ordered). A union of the same fields and merge policy that is still fresh is
        reused, not made again: on AEP, one made after ``fresh_after`` (epoch seconds); on the
        embedded platform, one made from the current profile batches.
        See :mod:`cmle.platform.union`."""

    # --- cleanup ------------------------------------------------------------------------
    def list_resources(self) -> list[Resource]:
        """Every resource of the kinds this package creates, with the owner recorded at
        creation where the platform keeps one (``cleanup`` filters with
        :func:`cmle.stages.cleanup.is_owned`)."""

    def delete_resource(self, resource: Resource) -> None:
        """Delete one resource (idempotent: deleting a missing one is not an error)."""

    def close(self) -> None:
        """Release connections."""
