"""Spark SQL (what Query Service accepts) to PostgreSQL (what the double runs), with sqlglot.

The adapter sends the stages' SQL unchanged, as it would to AEP; the double translates it
here before PostgreSQL sees it. Rules beyond sqlglot's Spark -> Postgres transpilation:

* **Nested XDM fields.** Datasets keep XDM structs as PostgreSQL composite columns
  (``_cmle``, ``web``, ...). Spark's ``_cmle.userid`` / ``t._cmle.userid`` /
  ``web.webPageDetails.pageViews.value`` become field selections
  ``("_cmle")."userid"`` / ``("t"."_cmle")."userid"`` / ``("web")."webPageDetails"...``:
  the first part is a table reference when it names a table or alias of the query,
  otherwise the column.
* **Case.** Spark resolves names case-insensitively; PostgreSQL folds unquoted names to
  lower case. Every identifier is quoted, and one that matches a known column, struct
  field or table regardless of case takes the catalog's spelling.
* **Anonymous blocks.** ``$$ BEGIN stmt; ...; END $$`` (how Query Service runs several
  statements as one query) becomes the list of its statements.
* **Spark functions PostgreSQL lacks** are defined once per database by
  :data:`SHIM_FUNCTIONS` (``unix_micros``, ``hour``, ``day_of_week``, ``arg_max``, ``round`` of a double, ...).
* **Arrays and maps** (``identityMap``, ``productListItems``) are ``jsonb`` columns:
  ``identityMap['ECID'][0].id`` becomes ``"identityMap" -> 'ECID' -> 0 ->> 'id'``,
  ``size(x)`` ``jsonb_array_length(x)``, and the per-row sum over an array's elements,
  ``aggregate(transform(arr, v -> CAST(v.f AS DOUBLE)), 0D, (acc, y) -> acc + COALESCE(y, 0D))``,
  a ``SUM`` over ``jsonb_array_elements(arr)``, and Spark's ``exists(arr, f -> <predicate on
  f.field>)`` an ``EXISTS (SELECT 1 FROM jsonb_array_elements(arr) ...)``.

Limitation (documented in the README of the double): composite values come back to a
client as PostgreSQL row literals, not as Spark structs; stages select leaf fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

# Functions sqlglot emits for Spark built-ins that PostgreSQL does not have.
SHIM_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION str_to_unix(ts timestamptz, fmt text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT floor(extract(epoch FROM ts))::bigint $f$;
CREATE OR REPLACE FUNCTION str_to_unix(ts text, fmt text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT floor(extract(epoch FROM ts::timestamptz))::bigint $f$;
CREATE OR REPLACE FUNCTION unix_micros(ts timestamptz) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT (extract(epoch FROM ts) * 1000000)::bigint $f$;
CREATE OR REPLACE FUNCTION unix_millis(ts timestamptz) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT floor(extract(epoch FROM ts) * 1000)::bigint $f$;
CREATE OR REPLACE FUNCTION unix_seconds(ts timestamptz) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT floor(extract(epoch FROM ts))::bigint $f$;
CREATE OR REPLACE FUNCTION bitwise_count(x bigint) RETURNS int
  LANGUAGE sql IMMUTABLE AS $f$ SELECT length(replace(x::bit(64)::text, '0', '')) $f$;
CREATE OR REPLACE FUNCTION round(x double precision, d int) RETURNS double precision
  LANGUAGE sql IMMUTABLE AS $f$ SELECT round(x::numeric, d)::double precision $f$;
CREATE OR REPLACE FUNCTION hour(ts timestamptz) RETURNS int
  LANGUAGE sql IMMUTABLE AS $f$ SELECT extract(hour FROM ts)::int $f$;
CREATE OR REPLACE FUNCTION minute(ts timestamptz) RETURNS int
  LANGUAGE sql IMMUTABLE AS $f$ SELECT extract(minute FROM ts)::int $f$;
CREATE OR REPLACE FUNCTION day_of_week(d date) RETURNS int
  LANGUAGE sql IMMUTABLE AS $f$ SELECT extract(dow FROM d)::int + 1 $f$;
CREATE OR REPLACE FUNCTION day_of_month(d date) RETURNS int
  LANGUAGE sql IMMUTABLE AS $f$ SELECT extract(day FROM d)::int $f$;
CREATE OR REPLACE FUNCTION cmle_double_error(msg text) RETURNS void LANGUAGE plpgsql AS $f$
  BEGIN RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = '42601'; END $f$;
CREATE OR REPLACE FUNCTION cmle_double_internal_error(msg text) RETURNS void LANGUAGE plpgsql AS $f$
  BEGIN RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = 'XX000'; END $f$;
CREATE OR REPLACE FUNCTION _argmax_sfunc(state anycompatiblearray, val anycompatible, key anycompatible)
  RETURNS anycompatiblearray LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE WHEN key IS NULL THEN state
              WHEN state IS NULL OR key > state[2] THEN ARRAY[val, key] ELSE state END $f$;
CREATE OR REPLACE FUNCTION _argmax_final(state anycompatiblearray) RETURNS anycompatible
  LANGUAGE sql IMMUTABLE AS $f$ SELECT state[1] $f$;
CREATE OR REPLACE AGGREGATE arg_max(anycompatible, anycompatible) (
  SFUNC = _argmax_sfunc, STYPE = anycompatiblearray, FINALFUNC = _argmax_final);
CREATE OR REPLACE FUNCTION _argmin_sfunc(state anycompatiblearray, val anycompatible, key anycompatible)
  RETURNS anycompatiblearray LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE WHEN key IS NULL THEN state
              WHEN state IS NULL OR key < state[2] THEN ARRAY[val, key] ELSE state END $f$;
CREATE OR REPLACE AGGREGATE arg_min(anycompatible, anycompatible) (
  SFUNC = _argmin_sfunc, STYPE = anycompatiblearray, FINALFUNC = _argmax_final);
CREATE OR REPLACE FUNCTION approx_distinct_sfunc(state text[], val anyelement) RETURNS text[]
  LANGUAGE sql IMMUTABLE AS $f$ SELECT CASE WHEN val IS NULL THEN state ELSE array_append(state, val::text) END $f$;
CREATE OR REPLACE FUNCTION approx_distinct_final(state text[]) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT count(DISTINCT v) FROM unnest(state) AS v $f$;
CREATE OR REPLACE AGGREGATE approx_distinct(anyelement) (
  SFUNC = approx_distinct_sfunc, STYPE = text[], FINALFUNC = approx_distinct_final, INITCOND = '{}');
"""

_BLOCK = re.compile(r"^\s*\$\$\s*BEGIN\b(?P<body>.*)\bEND\s*\$\$\s*;?\s*$", re.IGNORECASE | re.DOTALL)


class TranslationError(ValueError):
    pass


@dataclass
class Catalog:
    """What the translator knows about the database: table names and every column and
    struct field name (for case-insensitive resolution)."""

    tables: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # lower -> spelling in the catalog
    json_names: set[str] = field(default_factory=set)  # lower-case names of jsonb columns and fields

    def spell(self, name: str) -> str:
        return self.names.get(name.lower(), name)


def split_block(sql: str) -> list[str]:
    """The statements of a Query Service anonymous block (``$$ BEGIN ...; [EXCEPTION WHEN
    OTHER THEN ...;] END $$;``, Adobe's "Anonymous block in Query Service") or of a
    ``;``-separated text. The optional exception section is not run: the statements run in
    one transaction here, and a failure fails the whole query."""
    m = _BLOCK.match(sql)
    body = m.group("body") if m else sql
    out = []
    for s in _split_statements(body):
        if m and re.match(r"^\s*EXCEPTION\b", s, re.IGNORECASE):
            break
        if s.strip():
            out.append(s.strip())
    return out


def _split_statements(text: str) -> list[str]:
    """Split on ``;`` outside quotes."""
    out, cur, quote = [], [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"', "`"):
            quote = ch
        if ch == ";":
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def _table_refs(tree: exp.Expression) -> set[str]:
    refs = set()
    for t in tree.find_all(exp.Table):
        if t.alias:
            refs.add(t.alias.lower())
        if t.name:
            refs.add(t.name.lower())
    for cte in tree.find_all(exp.CTE):
        if cte.alias:
            refs.add(cte.alias.lower())
    for sub in tree.find_all(exp.Subquery):
        if sub.alias:
            refs.add(sub.alias.lower())
    return refs


def _ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def _rewrite_columns(tree: exp.Expression, catalog: Catalog) -> exp.Expression:
    refs = _table_refs(tree)

    def visit(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name and node.name.lower() in catalog.tables:
            node.set("this", _ident(node.name.lower()))
            return node
        if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
            return node
        parts = [p for p in (node.args.get("catalog"), node.args.get("db"), node.args.get("table"), node.this)
                 if p is not None]
        names = [p.name for p in parts]
        if len(names) >= 2 and names[0].lower() in refs:
            table, column, fields = names[0], names[1], names[2:]
        else:
            table, column, fields = None, names[0], names[1:]
        column = catalog.spell(column)
        col = exp.Column(this=_ident(column), table=_ident(table) if table else None)
        if not fields:
            return col
        out: exp.Expression = exp.Paren(this=col)
        for f in fields:
            out = exp.Dot(this=out, expression=_ident(catalog.spell(f)))
        return out

    # Aliases keep the spelling the query gives them (Spark returns them as written).
    return tree.transform(visit)


def _json_base(node: exp.Expression, catalog: Catalog) -> bool:
    """True for a reference to a jsonb column or composite field (an array or a map)."""
    if isinstance(node, exp.Paren):
        return _json_base(node.this, catalog)
    if isinstance(node, exp.Column) and not node.args.get("table"):
        return node.name.lower() in catalog.json_names
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        return node.expression.name.lower() in catalog.json_names and not _json_chain(node.this, catalog)
    return False


def _json_chain(node: exp.Expression, catalog: Catalog):
    """(base, steps) when ``node`` is a Bracket/Dot chain into a jsonb value, else None."""
    steps, cur = [], node
    while True:
        if _json_base(cur, catalog):
            return (cur, list(reversed(steps))) if steps else None
        if isinstance(cur, exp.Bracket) and len(cur.expressions) == 1 and isinstance(cur.expressions[0], exp.Literal):
            lit = cur.expressions[0]
            steps.append(lit.this if lit.is_string else int(lit.this))
            cur = cur.this
        elif isinstance(cur, exp.Dot) and isinstance(cur.expression, exp.Identifier):
            steps.append(cur.expression.name)
            cur = cur.this
        else:
            return None


def _json_sql(base_sql: str, steps: list, text: bool) -> str:
    out = base_sql
    for i, step in enumerate(steps):
        op = "->>" if text and i == len(steps) - 1 else "->"
        out += f" {op} " + (str(step) if isinstance(step, int) else "'" + str(step).replace("'", "''") + "'")
    return f"({out})"


def _pg(node: exp.Expression) -> str:
    return node.sql(dialect="postgres", identify=True)


def _rewrite_json(tree: exp.Expression, catalog: Catalog) -> exp.Expression:
    """Arrays and maps held as jsonb: see the module docstring."""
    if not catalog.json_names:
        return tree

    def array_sum(node: exp.Reduce):
        tr = node.this
        lam = tr.expression if isinstance(tr, exp.Transform) else None
        if lam is None or not isinstance(lam, exp.Lambda) or len(lam.expressions) != 1:
            return None
        chain = _json_chain(tr.this, catalog)
        arr = _pg(tr.this) if chain is None and _json_base(tr.this, catalog) else \
            _json_sql(_pg(chain[0]), chain[1], text=False) if chain else None
        if arr is None:
            return None
        var = lam.expressions[0].name
        body = lam.this.this if isinstance(lam.this, (exp.Cast, exp.TryCast)) else lam.this
        steps, cur = [], body
        while isinstance(cur, exp.Dot):
            steps.append(cur.expression.name)
            cur = cur.this
        if not isinstance(cur, (exp.Identifier, exp.Column)) or cur.name != var or not steps:
            return None
        elem = _json_sql(f'"{var}"', list(reversed(steps)), text=True)
        return sqlglot.parse_one(f"CASE WHEN {arr} IS NULL THEN NULL ELSE COALESCE((SELECT SUM(CAST({elem} AS DOUBLE "
                                 f"PRECISION)) FROM jsonb_array_elements({arr}) AS \"{var}\"), 0) END", read="postgres")

    def array_exists(node: exp.Exists):
        lam = node.args.get("expression")
        if not isinstance(lam, exp.Lambda) or len(lam.expressions) != 1:
            return None  # EXISTS (subquery): PostgreSQL's own
        chain = _json_chain(node.this, catalog)
        arr = _json_sql(_pg(chain[0]), chain[1], text=False) if chain else \
            _pg(node.this) if _json_base(node.this, catalog) else None
        if arr is None:
            return None
        var = lam.expressions[0].name
        body = lam.this.copy()
        for dot in list(body.find_all(exp.Dot)):
            steps, cur = [], dot
            while isinstance(cur, exp.Dot):
                steps.append(cur.expression.name)
                cur = cur.this
            if isinstance(cur, (exp.Identifier, exp.Column)) and cur.name == var:
                dot.replace(sqlglot.parse_one(_json_sql(f'"{var}"', list(reversed(steps)), text=True),
                                              read="postgres"))
        return sqlglot.parse_one(f'EXISTS (SELECT 1 FROM jsonb_array_elements({arr}) AS "{var}" WHERE {_pg(body)})',
                                 read="postgres")

    for node in list(tree.find_all(exp.Exists)):
        new = array_exists(node)
        if new is not None:
            node.replace(new)
    for node in list(tree.find_all(exp.Reduce)):
        new = array_sum(node)
        if new is not None:
            node.replace(new)
    for node in list(tree.find_all(exp.ArraySize)):
        chain = _json_chain(node.this, catalog)
        if chain is not None or _json_base(node.this, catalog):
            arr = _json_sql(_pg(chain[0]), chain[1], text=False) if chain else _pg(node.this)
            node.replace(sqlglot.parse_one(f"jsonb_array_length({arr})", read="postgres"))
    for node in list(tree.find_all(exp.Bracket, exp.Dot)):
        if node.parent is not None and isinstance(node.parent, (exp.Bracket, exp.Dot)) and node.arg_key == "this":
            continue  # inside a longer chain: its top is rewritten
        chain = _json_chain(node, catalog)
        if chain is not None:
            node.replace(sqlglot.parse_one(_json_sql(_pg(chain[0]), chain[1], text=True), read="postgres"))
    return tree


def translate(sql: str, catalog: Catalog) -> list[str]:
    """PostgreSQL statements for one Spark SQL text (one statement, several, or a block)."""
    out = []
    for stmt in split_block(sql):
        if re.match(r"^\s*SET\s+[\w.]+\s*=", stmt, re.IGNORECASE):
            continue  # Query Service session settings (auto_to_json, aqp, ...) mean nothing here
        try:
            trees = sqlglot.parse(stmt, read="spark")
        except sqlglot.errors.ParseError as exc:
            raise TranslationError(f"SQL does not parse as Spark SQL: {exc}") from None
        for tree in trees:
            if tree is None:
                continue
            tree = _rewrite_json(_rewrite_columns(tree, catalog), catalog)
            out.append(tree.sql(dialect="postgres", identify=True))
    return out


def load_catalog(cur) -> Catalog:
    """Table, column and composite field names of the ``public`` schema."""
    cur.execute("""
        SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, NULL)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'c', 'm')""")
    cat = Catalog()
    for relname, relkind, attname, typ in cur.fetchall():
        if typ == "jsonb":
            cat.json_names.add(attname.lower())
        if relkind in ("r", "v", "m"):
            cat.tables.add(relname.lower())
        # A column named like another in lower case keeps the first spelling seen.
        cat.names.setdefault(attname.lower(), attname)
    return cat
