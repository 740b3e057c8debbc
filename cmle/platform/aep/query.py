"""Query Service: interactive queries over the PostgreSQL wire, CTAS over REST.

Interactive queries (EDA, small reads) run through psycopg2 with the parameters of
``GET /connection_parameters`` (host, port, user = the org, password = the access token,
database ``{sandbox}:all``) and ``sslmode`` from ``[Platform] qs_sslmode`` (``require``
for AEP; ``disable`` is for a local test server). aepp's ``InteractiveQuery2`` is not used:
in 0.6.0 its constructor runs ``qsaccel`` queries that fail outside sandboxes with the
accelerated store. Results are capped at ``max_rows`` (AEP caps client results at
50,000); a query is cancelled on the server when it outlives ``timeout_s``; a connection
whose token was refreshed, or that the server closed (the token expired), is reopened
with fresh parameters. A statement that fails for a transient reason (the session was
lost, or the engine answered with an internal or resource error: SQLSTATE classes 08, 53
except 53400, 57P, 40001/40P01, XX000) is re-run with backoff within a budget (the
policy's retries and the query's own timeout); any other SQL error is raised at once
(interactive queries only read, so re-running one is safe).

SQL is sent exactly as the stages wrote it (Spark SQL, which Query Service accepts).

CTAS runs as one REST query, polled to ``SUCCESS``/``FAILED`` with a deadline and
cancelled on timeout, and its result replaces the previous content (re-running never
appends):

* when the dataset exists and the query yields the same columns (names and types, probed
  with ``LIMIT 0``), its successful batches are reverted and the rows are written into the
  *same* dataset with ``INSERT INTO`` (the notebooks' CTAS-or-INSERT): the dataset id stays
  the same across rebuilds, so its export dataflow stays valid and AEP's "new dataflow,
  wait about 10 minutes" does not come back;
* otherwise ``$$ BEGIN DROP TABLE IF EXISTS t; CREATE TABLE t AS (...); END $$`` makes a
  new dataset, and the ad-hoc schema Query Service made for the old one is deleted (AEP
  keeps it otherwise, one per rebuild).

Neither is one transaction on AEP: a failure after the revert or the drop leaves the
dataset empty (or absent) until the next successful run; it never holds stale or doubled
rows.
"""

from __future__ import annotations

import decimal
import logging
import threading
import time
import uuid
from typing import Any

import pandas as pd

from cmle.errors import ParameterError, QueryError
from cmle.platform.aep.catalog import CatalogService, table_name_of
from cmle.platform.aep.client import AEPClient
from cmle.platform.base import BATCH_SUCCESS, Dataset

log = logging.getLogger(__name__)

TERMINAL = {"SUCCESS", "FAILED", "KILLED", "TIMEOUT"}
MAX_INTERACTIVE_ROWS = 50_000
# SQLSTATEs of failures worth re-running: the engine, not the SQL, failed. 53400 is Query
# Service's hard 10-minute limit and 57014 a cancel (ours, on timeout): neither is retried.
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "XX")
TRANSIENT_SQLSTATES = {"40001", "40P01"}
PERMANENT_SQLSTATES = {"53400", "57014"}


def is_transient_sqlstate(code: str | None) -> bool:
    code = (code or "").upper()
    if not code or code in PERMANENT_SQLSTATES:
        return False
    return code in TRANSIENT_SQLSTATES or code.startswith(TRANSIENT_SQLSTATE_PREFIXES)


class QueryEngine:
    def __init__(self, client: AEPClient, catalog: CatalogService, sslmode: str = "require",
                 poll_s: float = 5.0, connect_timeout: float = 30.0, adhoc_schemas=None, batches=None):
        self.c = client
        self.catalog = catalog
        self.adhoc_schemas = adhoc_schemas  # XDM: deletes the ad-hoc schema of a replaced CTAS dataset
        self.batches = batches  # BatchService: reverts the batches an INSERT INTO replaces
        self.sslmode = sslmode
        self.poll_s = poll_s
        self.connect_timeout = connect_timeout
        self._conn = None
        self._conn_token = ""
        self._lock = threading.RLock()
        self.reconnects = 0
        self.retries = 0  # interactive statements re-run after a transient failure

    @property
    def dbname(self) -> str:
        return f"{self.c.sandbox}:all"

    # --- the PostgreSQL connection --------------------------------------------------------
    def _connect(self):
        import psycopg2

        params = self.c.transport.call(self.c.query.connection, what="read Query Service connection parameters")
        missing = [k for k in ("host", "port", "username", "token") if not (isinstance(params, dict) and params.get(k))]
        if missing:
            raise QueryError(f"Query Service connection parameters lack {missing}; the credential may lack "
                             "'Query Service > Manage Queries' for this sandbox")
        from cmle import redact

        redact.register(str(params["token"]))
        try:
            conn = psycopg2.connect(host=params["host"], port=int(params["port"]), dbname=self.dbname,
                                    user=params["username"], password=params["token"], sslmode=self.sslmode,
                                    gssencmode="disable", connect_timeout=int(max(1, self.connect_timeout)),
                                    application_name="cmle")
        except psycopg2.OperationalError as exc:
            raise QueryError(f"cannot connect to Query Service at {params['host']}:{params['port']} "
                             f"(sslmode={self.sslmode}): {str(exc).strip()}") from None
        conn.autocommit = True
        self._conn, self._conn_token = conn, str(params["token"])
        return conn

    def _connection(self):
        # A refreshed token means the session's own token is about to expire: reopen now.
        if self._conn is not None and (self._conn.closed or self._conn_token != self.c.transport.tokens.token()):
            self.close()
        return self._conn if self._conn is not None else self._connect()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
            self._conn = None

    # --- interactive queries ----------------------------------------------------------------
    def query(self, sql: str, timeout_s: float = 600.0, max_rows: int = MAX_INTERACTIVE_ROWS) -> pd.DataFrame:
        max_rows = min(max_rows, MAX_INTERACTIVE_ROWS)
        columns, _types, rows = self._execute(sql, timeout_s, max_rows + 1)
        if columns is None:
            return pd.DataFrame()
        if len(rows) > max_rows:
            log.warning("query result capped at %d rows, as Query Service caps interactive results", max_rows)
            rows = rows[:max_rows]
        df = pd.DataFrame.from_records(rows, columns=columns)
        return _decimals_to_float(df)

    def columns(self, sql: str, timeout_s: float = 120.0) -> list[tuple[str, object]] | None:
        """Names and types of the columns ``sql`` yields (run with ``LIMIT 0``), or None when
        the probe fails (the caller then takes the path that does not need them)."""
        try:
            names, types, _rows = self._execute(f"SELECT * FROM ({sql}) AS cmle_probe LIMIT 0", timeout_s, 1)
        except QueryError as exc:
            log.info("could not read the columns of a query (%s)", exc)
            return None
        return list(zip(names or [], types or []))

    def _execute(self, sql: str, timeout_s: float, fetch: int) -> tuple[list | None, list | None, list]:
        """Run one statement; re-run it after a transient failure within the retry budget
        (the policy's retries, and ``timeout_s`` for all attempts together)."""
        import psycopg2

        policy = self.c.transport.policy
        budget_end = time.monotonic() + timeout_s
        attempt = 0
        with self._lock:
            while True:
                conn = self._connection()
                cancelled = threading.Event()

                def cancel() -> None:
                    cancelled.set()
                    try:
                        conn.cancel()
                    except Exception:  # noqa: BLE001 - the connection may be gone already
                        pass

                timer = threading.Timer(max(0.0, budget_end - time.monotonic()), cancel)
                timer.start()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        if cur.description is None:
                            return None, None, []
                        names = [d.name for d in cur.description]
                        types = [d.type_code for d in cur.description]
                        return names, types, cur.fetchmany(fetch)
                except psycopg2.Error as exc:
                    if cancelled.is_set():
                        raise QueryError(f"query timed out after {timeout_s:.0f} s and was cancelled "
                                         "(Query Service caps interactive queries at 10 minutes; use a CTAS "
                                         "for longer ones)") from None
                    lost = _connection_lost(exc, conn)
                    transient = lost or is_transient_sqlstate(getattr(exc, "pgcode", None))
                    delay = policy.delay(attempt)
                    if not transient or attempt >= policy.max_retries or time.monotonic() + delay >= budget_end:
                        tries = f" (after {attempt + 1} attempts)" if transient and attempt else ""
                        raise QueryError(f"query failed{tries}: {_pg_message(exc)}") from None
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    if lost:
                        log.warning("Query Service connection lost (%s); reconnecting with a fresh token", first)
                        self.c.transport.tokens.invalidate(self._conn_token)
                        self.close()
                        self.reconnects += 1
                    else:
                        log.warning("Query Service failed transiently (%s); re-running in %.1f s", first, delay)
                    self.retries += 1
                    attempt += 1
                    if not lost:
                        time.sleep(delay)
                finally:
                    timer.cancel()

    # --- CTAS over REST ---------------------------------------------------------------------
    def submit(self, sql: str, label: str) -> str:
        """POST a query (never twice: a lost answer is looked up by the query's unique name)."""
        name = f"[CMLE] {label} {uuid.uuid4().hex[:12]}"
        body = {"dbName": self.dbname, "sql": sql, "name": name, "description": f"cmle: {label}"}

        def find():
            res = self.c.get("query", "/queries", params={"orderby": "-created", "limit": 50},
                             what="list recent queries")
            for q in res.get("queries", []) if isinstance(res, dict) else []:
                if q.get("name") == name or (q.get("request") or {}).get("name") == name:
                    return q
            return None

        res, _ = self.c.transport.create_once(what=f"submit {label}", create=lambda: self.c.query.createQuery(data=body),
                                             find=find)
        if not isinstance(res, dict) or not res.get("id"):
            raise QueryError(f"submit {label}: unexpected answer from Query Service: {str(res)[:300]}")
        return str(res["id"])

    def wait(self, query_id: str, timeout_s: float, what: str) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            q = self.c.transport.call(lambda: self.c.query.getQuery(query_id), what=f"poll {what}")
            state = str(q.get("state", "")).upper() if isinstance(q, dict) else ""
            if state in TERMINAL:
                if state != "SUCCESS":
                    errors = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                                       for e in q.get("errors") or [] if isinstance(e, dict)) or "no reason given"
                    raise QueryError(f"{what} ended {state} (query {query_id}): {errors}")
                return q
            if time.monotonic() >= deadline:
                self.cancel(query_id)
                raise QueryError(f"{what} did not finish within {timeout_s:.0f} s (query {query_id}, state "
                                 f"{state or 'unknown'}); it was cancelled. Raise the timeout or simplify the SQL.")
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def cancel(self, query_id: str) -> None:
        try:
            self.c.transport.call(lambda: self.c.query.cancelQuery(query_id), what=f"cancel query {query_id}")
            log.warning("cancelled query %s", query_id)
        except Exception as exc:  # noqa: BLE001 - the timeout error matters more than the cancel's
            log.warning("could not cancel query %s: %s", query_id, exc)

    def create_table_as(self, name: str, sql: str, timeout_s: float = 3600.0) -> Dataset:
        table = table_name_of(name)
        if table != name:
            raise ParameterError(f"CTAS dataset name {name!r} must be a Query Service table name "
                                 f"(lower case, digits, _), e.g. {table!r}: AEP names the dataset after the table")
        select = sql.strip().rstrip(";").strip()
        existing = self.catalog.find_dataset(table)
        if existing is not None and self.batches is not None:
            have = self.columns(f"SELECT * FROM {table}")
            want = self.columns(select) if have else None
            if have and want == have:
                return self._replace_rows(existing, select, timeout_s)
            log.info("CTAS %s: the query's columns differ from the dataset's; re-creating it", table)
        return self._recreate(table, select, timeout_s, existing)

    def _replace_rows(self, ds: Dataset, select: str, timeout_s: float) -> Dataset:
        """New content for an existing CTAS dataset, keeping its id: revert its successful
        batches, then INSERT INTO it."""
        what = f"INSERT INTO {ds.table}"
        old = [b for b in self.catalog.list_batches(ds.id) if b.status == BATCH_SUCCESS]
        for b in old:
            self.batches.revert_batch(b.id)
        block = f"$$ BEGIN\nINSERT INTO {ds.table} SELECT * FROM ({select}) AS cmle_rows;\nEND $$;"
        query_id = self.submit(block, what)
        log.info("%s submitted as query %s (dataset %s keeps its id)", what, query_id, ds.id)
        self.wait(query_id, timeout_s, what)
        return self.catalog.get_dataset(ds.id)

    def _recreate(self, table: str, select: str, timeout_s: float, old: Dataset | None) -> Dataset:
        block = f"$$ BEGIN\nDROP TABLE IF EXISTS {table};\nCREATE TABLE {table} AS ({select});\nEND $$;"
        what = f"CTAS {table}"
        query_id = self.submit(block, what)
        log.info("%s submitted as query %s", what, query_id)
        self.wait(query_id, timeout_s, what)
        # The catalog may list the new dataset a moment after the query succeeded.
        deadline = time.monotonic() + max(30.0, 6 * self.poll_s)
        while True:
            ds = self.catalog.find_dataset(table)
            if ds is not None and (old is None or ds.id != old.id):
                break
            if time.monotonic() >= deadline:
                raise QueryError(f"{what} succeeded but no new dataset named {table!r} appeared in the catalog")
            time.sleep(min(self.poll_s, 1.0))
        if old is not None and old.schema_id and old.schema_id != ds.schema_id and self.adhoc_schemas is not None:
            self.adhoc_schemas.delete_adhoc_schema(old.schema_id)
        return ds


def _connection_lost(exc: Exception, conn: Any) -> bool:
    """The session is gone (server closed it, token expired, network) rather than the SQL failing."""
    import psycopg2

    if getattr(conn, "closed", 0):
        return True
    if isinstance(exc, (psycopg2.InterfaceError,)):
        return True
    code = getattr(exc, "pgcode", None) or ""
    if code.startswith(("08", "57P")) or code == "28P01":  # connection exception, admin shutdown, bad password
        return True
    text = str(exc).lower()
    return any(s in text for s in ("server closed the connection", "terminating connection", "connection already closed",
                                   "password authentication failed", "ssl connection has been closed"))


def _pg_message(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    msg = (getattr(diag, "message_primary", None) or getattr(exc, "pgerror", None) or str(exc)
           or type(exc).__name__).strip()
    code = getattr(exc, "pgcode", None)
    return f"{msg} (SQLSTATE {code})" if code else msg


def _decimals_to_float(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        s = df[col]
        if s.dtype == object:
            non_null = s.dropna()
            if len(non_null) and all(isinstance(v, decimal.Decimal) for v in non_null.head(100)):
                df[col] = s.astype(float)
    return df
