"""Reading a dataset's rows back (Data Access API, ``/data/foundation/export``) and merged
profile attributes (Query Service over the Profile-enabled datasets).

``read_dataset`` downloads the Parquet files of the dataset's successful batches (for
small datasets and tests; the stages read exports). Our own GETs: aepp's ``getFiles``
buffers through its ``getResource`` helper with JSON-or-raw guessing.
"""

from __future__ import annotations

import io
import logging
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cmle.errors import QueryError
from cmle.platform.aep.catalog import CatalogService
from cmle.platform.aep.client import AEPClient
from cmle.platform.base import BATCH_SUCCESS, Dataset

log = logging.getLogger(__name__)


class DataAccess:
    def __init__(self, client: AEPClient, catalog: CatalogService):
        self.c = client
        self.catalog = catalog

    def _files(self, batch_id: str) -> list[str]:
        """Download URLs of every file of a batch."""
        urls: list[str] = []
        listing = self.c.get("export", f"/batches/{batch_id}/files", what=f"list the files of batch {batch_id}")
        for entry in listing.get("data") or []:
            file_id = entry.get("dataSetFileId")
            if not file_id:
                continue
            detail = self.c.get("export", f"/files/{file_id}", what=f"list file {file_id}")
            for part in detail.get("data") or []:
                name = part.get("name")
                if name and not name.rsplit("/", 1)[-1].startswith(("_", ".")):
                    urls.append((file_id, name))
        return urls

    def read_dataset(self, dataset_id: str, columns: list[str] | None = None) -> pa.Table:
        self.catalog.get_dataset(dataset_id)  # NotFoundError for an unknown id
        tables = []
        for b in self.catalog.list_batches(dataset_id):
            if b.status != BATCH_SUCCESS:
                continue
            for file_id, name in self._files(b.id):
                resp = self.c.transport.request("GET", self.c.url("export", f"/files/{file_id}"), safe=True,
                                                params={"path": name}, what=f"download {name}")
                tables.append(pq.read_table(io.BytesIO(resp.content), columns=columns))
        if not tables:
            return pa.table({c: pa.array([], pa.null()) for c in columns or []})
        return pa.concat_tables(tables, promote_options="default")


def profile_attributes(query, xdm, datasets: list[Dataset], fields: list[str],
                       page_rows: int = 50_000) -> pd.DataFrame:
    """Per identity, the latest non-null value of each field across ``datasets`` (the
    caller's Profile-enabled datasets; later ones win), read through Query Service in pages
    of ``page_rows``. Each dataset contributes the fields its schema has (the others are NULL)."""
    tenant = f"_{xdm.tenant_id()}"
    frames = []
    for ds in datasets:
        if not ds.profile_enabled or not ds.schema_id:
            continue
        have = xdm.tenant_fields(ds.schema_id)
        if "userid" not in have or not have & set(fields):
            continue
        cols = ", ".join([f"{tenant}.userid AS userid",
                          *(f"{tenant}.{f} AS {f}" if f in have else f"NULL AS {f}" for f in fields)])
        offset = 0
        try:
            while True:
                df = query.query(f"SELECT {cols} FROM {ds.table} ORDER BY userid LIMIT {page_rows} OFFSET {offset}",
                                 max_rows=page_rows)
                frames.append(df)
                if len(df) < page_rows:
                    break
                offset += page_rows
        except QueryError as exc:
            if "does not exist" in str(exc) or "not found" in str(exc):
                log.debug("dataset %s has no table yet: %s", ds.name, exc)
                continue
            raise
    if not frames:
        return pd.DataFrame(columns=["userid", *fields])
    with warnings.catch_warnings():  # all-NULL columns of a dataset without the field
        warnings.simplefilter("ignore", FutureWarning)
        merged = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True).infer_objects()
    out = merged.groupby("userid", sort=True).agg({f: "last" for f in fields}).reset_index()
    return out[["userid", *fields]]
