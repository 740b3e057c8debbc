"""SQL written once in the Spark SQL dialect (AEP Query Service, Databricks) and translated
for DuckDB with sqlglot."""

from __future__ import annotations

from functools import lru_cache

import sqlglot

from cmle.errors import QueryError

SOURCE_DIALECT = "spark"


@lru_cache(maxsize=256)
def to_duckdb(sql: str) -> str:
    """Translate Spark SQL (one or more statements) to DuckDB SQL."""
    try:
        statements = sqlglot.transpile(sql, read=SOURCE_DIALECT, write="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"SQL does not parse as Spark SQL: {exc}") from None
    return ";\n".join(statements)
