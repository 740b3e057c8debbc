"""Data Distiller's SQL audiences in the double, as strict as Adobe's documentation.

Source: "Build audiences using SQL" (experience-platform
``query/data-distiller-audiences/overview.md``)::

    CREATE AUDIENCE table_name
    WITH (primary_identity='IdentitycolName', identity_namespace='Namespace for the identity used'
          [, schema='target_schema_title'])
    AS (select_query)

    DROP AUDIENCE [IF EXISTS] table_name

* ``primary_identity`` and ``identity_namespace`` are required, ``schema`` optional; any
  other option is refused. Option values are quoted strings or plain names (Adobe's example
  writes ``primary_identity=userId, identity_namespace=lumaCrmId``).
* The audience's dataset holds flat attributes with the primary identity at the root: a
  dotted ``primary_identity`` is refused, so is a SELECT without that column or with a
  nested (struct, array or map) column.
* The name is the table's and the audience's: creating one that exists (an audience, or
  any dataset's table of that name) is refused; ``DROP AUDIENCE`` of a missing audience is
  an error unless ``IF EXISTS``.
* The SELECT's rows become the audience's dataset (not enabled for Profile), as a CTAS
  result does; the audience itself is kept in Query Service's state (``double.sql_audiences``:
  name -> identity, namespace, dataset table, creation time), not among the Segmentation
  API's definitions. Members are read back with ``SELECT ... FROM table_name``.
"""

from __future__ import annotations

import re
import time

from .ddml import _closing, _split

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STATEMENT = re.compile(r"^\s*(?:CREATE|DROP)\s+AUDIENCE\b", re.IGNORECASE)
_CREATE = re.compile(rf"^CREATE\s+AUDIENCE\s+(?P<name>{_IDENT})\s+WITH\s*\(", re.IGNORECASE)
_DROP = re.compile(rf"^DROP\s+AUDIENCE\s+(?P<ifexists>IF\s+EXISTS\s+)?(?P<name>{_IDENT})$", re.IGNORECASE)
OPTIONS = ("primary_identity", "identity_namespace", "schema")
REQUIRED = ("primary_identity", "identity_namespace")
_NESTED_CATEGORIES = ("A", "C")  # pg_type.typcategory: array, composite
_JSON_TYPES = ("json", "jsonb")


class AudienceError(Exception):
    """A statement Data Distiller would refuse; the message is what the client sees."""


def is_audience_sql(sql: str) -> bool:
    return bool(_STATEMENT.match(sql))


def plan(d, sql: str, cur, translate) -> tuple[str, object]:
    """Check an audience statement; return (Spark SQL that makes or drops its dataset, a
    function recording the change once that SQL succeeded)."""
    text = sql.strip().rstrip(";").strip()
    m = _DROP.match(text)
    if m:
        name = m.group("name").lower()
        if name not in d.sql_audiences and not m.group("ifexists"):
            raise AudienceError(f"audience {m.group('name')} does not exist")

        def dropped():
            with d.lock:
                d.sql_audiences.pop(name, None)
        return f"DROP TABLE IF EXISTS {name}", dropped
    m = _CREATE.match(text)
    if not m:
        raise AudienceError(f"malformed audience statement: expected CREATE AUDIENCE name WITH (...) AS (SELECT ...) "
                            f"or DROP AUDIENCE [IF EXISTS] name; found {text[:120]!r}")
    name = m.group("name").lower()
    end = _closing(text, m.end() - 1)
    options = _options(text[m.end():end])
    rest = text[end + 1:].strip()
    a = re.match(r"^AS\s*", rest, re.IGNORECASE)
    if not a:
        raise AudienceError("malformed CREATE AUDIENCE: expected AS (select_query) after WITH (...)")
    select = rest[a.end():].strip()
    if select.startswith("("):
        close = _closing(select, 0)
        if select[close + 1:].strip():
            raise AudienceError(f"unexpected text after AS (select_query): {select[close + 1:][:60]!r}")
        select = select[1:close].strip()
    if not re.match(r"^(SELECT|WITH)\b", select, re.IGNORECASE):
        raise AudienceError("CREATE AUDIENCE ... AS takes a SELECT query")
    if name in d.sql_audiences or any(_table(ds) == name for ds in list(d.datasets.values())):
        raise AudienceError(f"audience {m.group('name')} already exists (a table of that name exists): drop it with "
                            "DROP AUDIENCE first")
    identity = options["primary_identity"]
    if "." in identity:
        raise AudienceError(f"primary_identity {identity!r} is nested: the primary identity must be at the root level "
                            "of the audience's dataset (select it as a top-level column)")
    columns = _columns(cur, translate, select)
    if identity.lower() not in columns:
        raise AudienceError(f"primary_identity {identity!r} is not a column of the SELECT ({', '.join(columns)})")
    nested = [c for c, kind in columns.items() if kind == "nested"]
    if nested:
        raise AudienceError(f"nested attributes are not supported in an audience: {', '.join(nested)} (flatten them "
                            "into top-level columns)")

    def created():
        with d.lock:
            d.sql_audiences[name] = {"name": name, "primary_identity": identity,
                                     "identity_namespace": options["identity_namespace"],
                                     "schema": options.get("schema"), "table": name, "created": time.time()}
    return f"CREATE TABLE {name} AS {select}", created


def _options(text: str) -> dict:
    out = {}
    for item in _split(text):
        m = re.fullmatch(rf"(?P<key>{_IDENT})\s*=\s*(?P<value>'[^']*'|[A-Za-z_][A-Za-z0-9_.]*)", item.strip())
        if not m:
            raise AudienceError(f"malformed option {item!r}: expected key='value'")
        key = m.group("key").lower()
        if key not in OPTIONS:
            raise AudienceError(f"unknown CREATE AUDIENCE option {m.group('key')!r}; options: {', '.join(OPTIONS)}")
        if key in out:
            raise AudienceError(f"option {key} is given twice")
        value = m.group("value").strip("'")
        if not value:
            raise AudienceError(f"option {key} is empty")
        out[key] = value
    missing = [k for k in REQUIRED if k not in out]
    if missing:
        raise AudienceError(f"CREATE AUDIENCE needs WITH ({', '.join(f'{k}=...' for k in missing)})")
    return out


def _columns(cur, translate, select: str) -> dict[str, str]:
    """The SELECT's columns (lower case) -> 'flat' or 'nested', without reading its rows."""
    statements = translate(select)
    if len(statements) != 1:
        raise AudienceError("the SELECT of CREATE AUDIENCE must be one statement")
    cur.execute(f"SELECT * FROM ({statements[0]}) AS audience_columns LIMIT 0")
    out = {}
    for col in cur.description:
        cur.execute("SELECT typname, typcategory FROM pg_type WHERE oid = %s", (col.type_code,))
        typname, category = cur.fetchone()
        out[col.name.lower()] = "nested" if category in _NESTED_CATEGORIES or typname in _JSON_TYPES else "flat"
    return out


def _table(ds: dict) -> str:
    return ((ds.get("tags") or {}).get("adobe/pqs/table") or [""])[0].lower()
