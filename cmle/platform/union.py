"""The profile union as a dataset: what both platforms share, and the embedded platform's merge.

AEP exposes the merged (union) profiles to queries only through a dataset on the XDM
Individual Profile union schema, filled by a Segmentation export job; the embedded platform
builds the same dataset with DuckDB. Either way a union dataset's rows are one per profile:
``identityMap`` (namespace -> ``[{id, primary}]``) and the requested XDM fields, nested as in
XDM (``_cmle.age`` is the ``age`` field of the ``_cmle`` object).

The embedded merge is AEP's default, timestamp-ordered merge policy: per profile (an identity
in its namespace) and per attribute, the non-null value of the newest fragment wins; newer
means ingested later (a later batch; within a batch, a later row).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

UNION_SCHEMA = "https://ns.adobe.com/xdm/context/profile__union"
PROFILE_SCHEMA_NAME = "_xdm.context.profile"  # the export job's schema.name for the union schema


def union_key(fields: list[str], merge_policy: str, *more: object) -> str:
    """A short hash of what a union dataset holds (its fields and merge policy, and ``more``)."""
    text = json.dumps([sorted(set(fields)), merge_policy, *[str(m) for m in more]])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Fragment:
    """The profile fragments of one successful batch of a Profile-enabled dataset."""

    files: tuple[str, ...]
    seq: int  # ingestion order of the batch (newer is larger)
    identity: tuple[str, ...]  # the primary identity field's path, e.g. ("_cmle", "userid")
    namespace: str
    fields: frozenset[str]  # the dotted leaf paths its rows have


def _col(path: tuple[str, ...]) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in path)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def union_sql(fragments: list[Fragment], fields: list[str]) -> str:
    """DuckDB SQL of the union of ``fragments``: one row per (namespace, identity) with its
    ``identityMap`` and each of ``fields`` (dotted paths, nested in the output) merged
    timestamp-ordered. ``fragments`` must not be empty."""
    wanted = sorted(set(fields))
    flat = [f"f{i}" for i in range(len(wanted))]
    parts = []
    for frag in fragments:
        cols = ", ".join(f"{_col(tuple(p.split('.')))} AS {c}" if p in frag.fields else f"NULL AS {c}"
                         for p, c in zip(wanted, flat))
        files = ", ".join(_literal(f) for f in frag.files)
        parts.append(f"SELECT {_literal(frag.namespace)} AS _ns, CAST({_col(frag.identity)} AS VARCHAR) AS _id"
                     f"{', ' + cols if cols else ''}, struct_pack(s := {frag.seq}, f := filename, "
                     f"r := file_row_number) AS _ord "
                     f"FROM read_parquet([{files}], union_by_name = true, filename = true, file_row_number = true)")
    merged = ", ".join(f"arg_max({c}, _ord) FILTER (WHERE {c} IS NOT NULL) AS {c}" for c in flat)
    identity_map = "map([_ns], [[struct_pack(id := _id, \"primary\" := true)]]) AS \"identityMap\""
    nested = _nest(wanted, flat)
    return (f"SELECT {identity_map}{', ' + nested if nested else ''} FROM ("
            f"SELECT _ns, _id{', ' + merged if merged else ''} FROM ({' UNION ALL BY NAME '.join(parts)}) "
            f"WHERE _id IS NOT NULL GROUP BY _ns, _id) ORDER BY _ns, _id")


def _nest(paths: list[str], cols: list[str]) -> str:
    """Select items that rebuild nested objects from flat columns: ``a.b``, ``a.c`` -> ``a``."""
    tree: dict = {}
    for path, col in zip(paths, cols):
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = col

    def expr(node) -> str:
        if isinstance(node, str):
            return node
        return "struct_pack(" + ", ".join(f"{_col((k,))} := {expr(v)}" for k, v in node.items()) + ")"

    return ", ".join(f"{expr(v)} AS {_col((k,))}" for k, v in tree.items())


__all__ = ["Fragment", "PROFILE_SCHEMA_NAME", "UNION_SCHEMA", "union_key", "union_sql"]
