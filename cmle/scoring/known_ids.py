"""Which profile ids a dataset holds, asked of the platform's query engine in bounded queries.

The ids to look up are sorted and split into ranges of at most ``CAP // 2`` ids. A range
with few ids is one ``IN (...)`` list; a wider one asks for the distinct identities between
its first and last id, capped at :data:`CAP` rows (Query Service caps interactive results at
50,000): when the cap is hit (the dataset holds many more profiles than the file in that
range), the range is halved and each half asked again. A file that covers the dataset
densely costs one query per 25,000 ids; a sparse one falls back to IN lists of
:data:`IN_LIST_MAX` ids. Strings compare in binary order on every engine cmle runs on
(Spark SQL in Query Service, DuckDB, and the test double's PostgreSQL in the C locale), so
a range holds exactly the ids between its ends.
"""

from __future__ import annotations

import logging
from typing import Sequence

from cmle.features.render import quote_table
from cmle.platform.base import Platform

log = logging.getLogger(__name__)

CAP = 50_000
IN_LIST_MAX = 1_000


def _literal(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"profile id {value!r} holds a quote or backslash; it cannot be looked up")
    return f"'{value}'"


def unknown_ids(platform: Platform, table: str, identity_sql: str, ids: Sequence[str],
                timeout_s: float = 600.0) -> list[str]:
    """The ids among ``ids`` that no row of ``table`` carries as ``identity_sql`` (sorted)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    base = f"SELECT CAST({identity_sql} AS STRING) AS cmle_id FROM {quote_table(table)}"
    found: set[str] = set()
    step = max(CAP // 2, 1)
    ranges = [(lo, min(lo + step, len(wanted))) for lo in range(0, len(wanted), step)][::-1]
    queries = 0
    while ranges:
        lo, hi = ranges.pop()
        chunk = wanted[lo:hi]
        if len(chunk) <= IN_LIST_MAX:
            sql = (f"SELECT DISTINCT cmle_id FROM ({base}) AS cmle_p WHERE cmle_id IN "
                   f"({', '.join(_literal(v) for v in chunk)})")
            rows = platform.query(sql, timeout_s=timeout_s, max_rows=len(chunk))
            found.update(rows["cmle_id"].astype(str) if len(rows) else [])
        else:
            sql = (f"SELECT DISTINCT cmle_id FROM ({base}) AS cmle_p WHERE cmle_id >= {_literal(chunk[0])} AND "
                   f"cmle_id <= {_literal(chunk[-1])} LIMIT {CAP}")
            rows = platform.query(sql, timeout_s=timeout_s, max_rows=CAP)
            if len(rows) >= CAP:  # possibly more in the range: ask for each half
                mid = (lo + hi) // 2
                ranges += [(mid, hi), (lo, mid)]
            else:
                found.update(rows["cmle_id"].astype(str) if len(rows) else [])
        queries += 1
    log.info("looked up %d profile ids in %s with %d queries", len(wanted), table, queries)
    return [v for v in wanted if v not in found]
