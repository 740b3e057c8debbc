"""A customer's own dataset in the AEP double, as it would already be in their sandbox: an
XDM schema of theirs (expanded ``properties``, standard field groups such as identityMap
and productListItems, their tenant's fields) and a dataset holding the rows, queryable in
Query Service. cmle did not create either, so cleanup must leave them alone."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from aep.double import pgload
from aep.double.server import new_id, now_ms
from aep.double.svc_catalog import register_dataset, table_of
from cmle.platform.base import XDM_CLASSES


def xdm_property(t: pa.DataType) -> dict:
    """The XDM JSON schema of an Arrow type, as the Schema Registry expands it (``xed-full``)."""
    if pa.types.is_struct(t):
        return {"type": "object", "properties": {f.name: xdm_property(f.type) for f in t}}
    if pa.types.is_map(t):
        return {"type": "object", "meta:xdmType": "map", "additionalProperties": xdm_property(t.item_type)}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"type": "array", "items": xdm_property(t.value_type)}
    if pa.types.is_timestamp(t):
        return {"type": "string", "format": "date-time"}
    if pa.types.is_date(t):
        return {"type": "string", "format": "date"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return {"type": "number"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    return {"type": "string"}


def seed_dataset(double, name: str, table: pa.Table, xdm_class: str) -> str:
    """Put ``table`` into the double as the customer's dataset ``name``; returns its id."""
    hexid = double.new_hex()
    schema_id = f"https://ns.adobe.com/{double.tenant}/schemas/{hexid}"
    cls = XDM_CLASSES[xdm_class]
    schema = {"$id": schema_id, "meta:altId": f"_{double.tenant}.schemas.{hexid}", "meta:resourceType": "schemas",
              "version": "1.0", "title": f"{name} (customer schema)", "type": "object", "meta:class": cls,
              "meta:containerId": "tenant", "allOf": [{"$ref": cls}],
              "properties": {f.name: xdm_property(f.type) for f in table.schema}}
    with double.lock:
        double.schemas[schema_id] = schema
    ds_id = register_dataset(double, name, schema_id)
    b_id = new_id("b")
    with double.admin(autocommit=False) as cur:
        pgload.create_dataset_table(cur, table_of(double.datasets[ds_id]), table.schema)
        pgload.insert_rows(cur, table_of(double.datasets[ds_id]), table, b_id, table.schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with double.lock:
        double.batches[b_id] = {"id": b_id, "status": "success", "created": now_ms(), "updated": now_ms(),
                                "completed": now_ms(), "imsOrg": double.org_id, "tags": {},
                                "relatedObjects": [{"type": "dataSet", "id": ds_id}], "errors": [],
                                "metrics": {"recordCount": table.num_rows, "outputRecordCount": table.num_rows}}
        double.batch_files[b_id] = {"part-00000.parquet": buf.getvalue()}
        double.dataset_schemas[ds_id] = table.schema
    return ds_id
