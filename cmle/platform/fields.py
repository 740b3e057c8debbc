"""A dataset's fields as flat paths with XDM types, from an Arrow schema or an XDM JSON schema.

``Platform.dataset_fields`` returns ``{path: type}``: dotted paths to the leaf fields
(``commerce.order.priceTotal``), ``name[].field`` inside arrays of objects
(``productListItems[].priceTotal``), and the XDM type of each leaf: ``string``, ``number``,
``integer``, ``boolean``, ``date-time``, ``date``, ``array`` (of scalars) or ``map``
(``identityMap``). Pure functions; the platforms call them on what they hold.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

MAX_DEPTH = 12


def _arrow_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "date-time"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_map(t):
        return "map"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "array"
    return "string"


def from_arrow(schema: pa.Schema) -> dict[str, str]:
    """The leaf fields of an Arrow schema (as the embedded platform stores a dataset)."""
    out: dict[str, str] = {}

    def walk(prefix: str, t: pa.DataType, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if pa.types.is_struct(t):
            for f in t:
                walk(f"{prefix}.{f.name}" if prefix else f.name, f.type, depth + 1)
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type):
            walk(prefix + "[]", t.value_type, depth + 1)
        else:
            out[prefix] = _arrow_type(t)

    for f in schema:
        walk(f.name, f.type, 0)
    return out


def _xdm_type(node: dict) -> str:
    kind = node.get("type")
    fmt = node.get("format")
    if kind == "string" and fmt in ("date-time", "date"):
        return fmt
    if node.get("meta:xdmType") == "map" or (kind == "object" and "additionalProperties" in node):
        return "map"
    return kind if kind in ("string", "number", "integer", "boolean", "array") else "string"


def from_xdm(schema: dict[str, Any]) -> dict[str, str]:
    """The leaf fields of an expanded XDM JSON schema (``properties``, as the Schema Registry
    returns it with ``Accept: application/vnd.adobe.xed-full+json``)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: dict, depth: int) -> None:
        if depth > MAX_DEPTH or not isinstance(node, dict):
            return
        props = node.get("properties")
        if node.get("type") == "object" and isinstance(props, dict) and _xdm_type(node) != "map":
            for name, child in props.items():
                walk(f"{prefix}.{name}" if prefix else name, child, depth + 1)
        elif node.get("type") == "array" and isinstance(node.get("items"), dict) \
                and node["items"].get("type") == "object":
            walk(prefix + "[]", node["items"], depth + 1)
        elif prefix:
            out[prefix] = _xdm_type(node)

    walk("", {"type": "object", "properties": schema.get("properties") or {}}, 0)
    return out


# --- the seam's field types (Platform.get_or_create_field_group) -----------------------------
# A field is a scalar type name, or an array of objects written {"type": "array", "items":
# {name: scalar type, ...}} (the scores' influential factors).
XDM_SCALARS: dict[str, dict] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}


def is_object_array(field_type) -> bool:
    return isinstance(field_type, dict) and field_type.get("type") == "array" and isinstance(field_type.get("items"), dict)


def field_type_ok(field_type) -> bool:
    """A scalar type name or an array of objects of scalar fields."""
    if isinstance(field_type, str):
        return field_type in XDM_SCALARS
    return is_object_array(field_type) and bool(field_type["items"]) and all(
        isinstance(t, str) and t in XDM_SCALARS for t in field_type["items"].values())


def xdm_property(name: str, field_type) -> dict:
    """The JSON-schema property of a field in an XDM field group (Schema Registry)."""
    if is_object_array(field_type):
        return {"title": name, "type": "array",
                "items": {"type": "object", "properties": {k: {"title": k, **XDM_SCALARS[t]}
                                                           for k, t in field_type["items"].items()}}}
    return {"title": name, **XDM_SCALARS[field_type]}


def arrow_matches(arrow_type: pa.DataType, field_type) -> bool:
    """Whether Arrow data of ``arrow_type`` can be stored in a field of ``field_type``."""
    if is_object_array(field_type):
        if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)) \
                or not pa.types.is_struct(arrow_type.value_type):
            return pa.types.is_null(arrow_type)
        struct = arrow_type.value_type
        have = {struct.field(i).name: struct.field(i).type for i in range(struct.num_fields)}
        items = field_type["items"]
        return set(have) <= set(items) and all(arrow_matches(t, items[k]) for k, t in have.items())
    if field_type == "string":
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if field_type == "number":
        return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_decimal(arrow_type)
    if field_type == "integer":
        return pa.types.is_integer(arrow_type)
    if field_type == "boolean":
        return pa.types.is_boolean(arrow_type)
    if field_type in ("date-time", "date"):
        return pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)
    return False


__all__ = ["XDM_SCALARS", "arrow_matches", "field_type_ok", "from_arrow", "from_xdm", "is_object_array",
           "xdm_property"]
