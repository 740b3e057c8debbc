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


__all__ = ["from_arrow", "from_xdm"]
