"""XDM field paths and identities of a model spec, rendered as safe Spark SQL.

A field path is dotted segments, each a plain XDM field name (letters, digits, ``_``), for
example ``commerce.order.priceTotal`` or ``_{tenant}.orderValue``. ``_{tenant}`` stands for
the custom-field root of the platform's tenant (``_cmle`` locally, ``_<tenant id>`` on AEP).
One segment may end in ``[]``: the field is an array and the path goes on inside its
elements (``productListItems[].priceTotal``); such a path gives, per event, the sum over
the elements.

Nothing from a spec is pasted into SQL: every segment is checked against the field-name
pattern and backtick-quoted, so a path cannot carry SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TENANT_ROOT = "_{tenant}"
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# identityMap namespace codes (ECID, CRMID, Email, custom ones): no quoting is ever needed.
_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
IDENTITY_MAP = "identityMap"
# XDM event types are dotted names; anything else is refused rather than escaped, because
# Spark and DuckDB escape quotes in string literals differently.
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$")
# Lambda variables of the array sum: prefixed so that no XDM field (letters, digits, _) is shadowed.
_ITEM, _ACC, _VAL = "cmle_item", "cmle_acc", "cmle_val"


class PathError(ValueError):
    """A field path, namespace or identity that is not well formed."""


@dataclass(frozen=True)
class Segment:
    name: str
    array: bool = False  # the field is an array; the path continues inside its elements

    @property
    def text(self) -> str:
        return self.name + ("[]" if self.array else "")


@dataclass(frozen=True)
class FieldPath:
    """A dotted XDM field path; see the module docstring."""

    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> "FieldPath":
        if not isinstance(text, str) or not text.strip():
            raise PathError("a field path must be a non-empty string such as commerce.order.priceTotal")
        parts = text.strip().split(".")
        segments = []
        for part in parts:
            array = part.endswith("[]")
            name = part[:-2] if array else part
            if name != TENANT_ROOT and not _SEGMENT.match(name):
                raise PathError(f"{text!r} is not a field path: {part!r} is not a field name (letters, digits and "
                                f"_, not starting with a digit; {TENANT_ROOT} for your tenant's fields)")
            segments.append(Segment(name, array))
        if any(s.name == TENANT_ROOT for s in segments[1:]):
            raise PathError(f"{text!r}: {TENANT_ROOT} can only be the first segment")
        arrays = [s for s in segments if s.array]
        if len(arrays) > 1:
            raise PathError(f"{text!r}: only one array level ([]) is supported in a path")
        if segments[-1].array:
            raise PathError(f"{text!r}: a path into an array must name a field of its elements after [] "
                            "(e.g. productListItems[].priceTotal)")
        return cls(tuple(segments))

    @property
    def text(self) -> str:
        return ".".join(s.text for s in self.segments)

    def __str__(self) -> str:
        return self.text

    @property
    def has_array(self) -> bool:
        return any(s.array for s in self.segments)

    @property
    def uses_tenant(self) -> bool:
        return self.segments[0].name == TENANT_ROOT

    def resolve(self, tenant: str) -> "FieldPath":
        """The path with ``_{tenant}`` replaced by the tenant's root (``_cmle`` for ``cmle``)."""
        if not self.uses_tenant:
            return self
        root = tenant if tenant.startswith("_") else f"_{tenant}"
        if not _SEGMENT.match(root):
            raise PathError(f"invalid tenant id {tenant!r}")
        return FieldPath((Segment(root, self.segments[0].array), *self.segments[1:]))

    @property
    def top(self) -> str:
        """The top-level column the path starts in."""
        return self.segments[0].name

    def sql(self, qualifier: str = "") -> str:
        """Spark SQL of the path's value. A scalar path is the quoted field; an array path
        is the per-row sum over the array's elements (NULL when the array is NULL, 0 when empty)."""
        if self.uses_tenant:
            raise PathError(f"{self.text}: resolve the tenant before rendering")
        prefix = f"{qualifier}." if qualifier else ""
        if not self.has_array:
            return prefix + _quoted(self.segments)
        i = next(k for k, s in enumerate(self.segments) if s.array)
        array = prefix + _quoted(self.segments[: i + 1])
        inner = ".".join([_ITEM, _quoted(self.segments[i + 1:])])
        zero = "CAST(0 AS DOUBLE)"
        # Spark's aggregate: a left fold, the same order on every engine (DuckDB: list_reduce).
        return (f"aggregate(transform({array}, {_ITEM} -> CAST({inner} AS DOUBLE)), {zero}, "
                f"({_ACC}, {_VAL}) -> {_ACC} + COALESCE({_VAL}, {zero}))")


def _quoted(segments) -> str:
    return ".".join(f"`{s.name}`" for s in segments)


def event_type_literal(event_type: str) -> str:
    """``event_type`` as a SQL string literal; PathError for a name no XDM event type has."""
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise PathError(f"event type {event_type!r} is not a dotted XDM event type name (letters, digits, . _ : -)")
    return f"'{event_type}'"


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise PathError(f"identity namespace {namespace!r} is not a namespace code (letters, digits, _ and -, "
                        "e.g. ECID, CRMID, Email)")
    return namespace


@dataclass(frozen=True)
class Identity:
    """Who an event or profile row belongs to: a field path, or the first identity of an
    ``identityMap`` namespace. ``namespace`` is the identity namespace of the values (the
    scores dataset declares it, so scores land on the same profiles)."""

    namespace: str = "ECID"
    field: FieldPath | None = None  # None: identityMap[namespace]

    @property
    def in_identity_map(self) -> bool:
        return self.field is None

    @property
    def text(self) -> str:
        return f"{IDENTITY_MAP}[{self.namespace}]" if self.field is None else self.field.text

    def resolve(self, tenant: str) -> "Identity":
        return self if self.field is None else Identity(self.namespace, self.field.resolve(tenant))

    def sql(self, qualifier: str = "") -> str:
        """Spark SQL of the row's identity (a string; NULL when the row has none)."""
        if self.field is not None:  # as stored: scores cast it to a string when they are written
            return self.field.sql(qualifier)
        prefix = f"{qualifier}." if qualifier else ""
        ids = f"{prefix}`{IDENTITY_MAP}`['{self.namespace}']"
        # [0] of an empty array fails under ANSI SQL (Spark 4, Databricks): test the size first.
        return f"CASE WHEN size({ids}) > 0 THEN {ids}[0].`id` END"

    def top(self) -> str:
        return IDENTITY_MAP if self.field is None else self.field.top


__all__ = ["EVENT_TYPE", "FieldPath", "IDENTITY_MAP", "Identity", "PathError", "Segment", "TENANT_ROOT",
           "check_namespace", "event_type_literal"]
