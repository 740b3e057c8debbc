"""Query Service: interactive queries over the PostgreSQL wire, CTAS over REST.

Interactive queries (EDA, small reads) run through psycopg2 with the parameters of
``GET /connection_parameters`` (host, port, user = the org, password = the access token,
database ``{sandbox}:all``) and ``sslmode`` from ``[Platform] qs_sslmode`` (``require``
for AEP; ``disable`` is for a local test server). aepp's ``InteractiveQuery2`` is not used:
in 0.6.0 its constructor runs ``qsaccel`` queries that fail outside sandboxes with the
accelerated store. Results are capped at ``max_rows`` (AEP caps client results at
50,000); a query is cancelled on the server when it outlives ``timeout_s``; a connection
whose token was refreshed, or that the server closed (the token expired), is reopened
with fresh parameters and the query re-run once (interactive queries only read).

SQL is sent exactly as the stages wrote it (Spark SQL, which Query Service accepts).

CTAS runs as one REST query, ``$$ BEGIN DROP TABLE IF EXISTS t; CREATE TABLE t AS (...);
END $$``, polled to ``SUCCESS``/``FAILED`` with a deadline and cancelled on timeout. The
result replaces the previous dataset: re-running never appends. (On AEP the block is not
one transaction: if the SELECT fails after the drop, the dataset is absent until the
next successful run; it never holds stale or doubled rows.)
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
from cmle.platform.base import Dataset

log = logging.getLogger(__name__)

TERMINAL = {"SUCCESS", "FAILED", "KILLED", "TIMEOUT"}
MAX_INTERACTIVE_ROWS = 50_000


class QueryEngine:
    def __init__(self, client: AEPClient, catalog: CatalogService, sslmode: str = "require",
                 poll_s: float = 5.0, connect_timeout: float = 30.0):
        self.c = client
        self.catalog = catalog
        self.sslmode = sslmode
        self.poll_s = poll_s
        self.connect_timeout = connect_timeout
        self._conn = None
        self._conn_token = ""
        self._lock = threading.RLock()
        self.reconnects = 0

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
        import psycopg2

        max_rows = min(max_rows, MAX_INTERACTIVE_ROWS)
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                cancelled = threading.Event()

                def cancel() -> None:
                    cancelled.set()
                    try:
                        conn.cancel()
                    except Exception:  # noqa: BLE001 - the connection may be gone already
                        pass

                timer = threading.Timer(timeout_s, cancel)
                timer.start()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        if cur.description is None:
                            return pd.DataFrame()
                        columns = [d.name for d in cur.description]
                        rows = cur.fetchmany(max_rows + 1)
                    break
                except psycopg2.Error as exc:
                    if cancelled.is_set():
                        raise QueryError(f"query timed out after {timeout_s:.0f} s and was cancelled "
                                         "(Query Service caps interactive queries at 10 minutes; use a CTAS "
                                         "for longer ones)") from None
                    if attempt == 0 and _connection_lost(exc, conn):
                        log.warning("Query Service connection lost (%s); reconnecting with a fresh token",
                                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                        self.c.transport.tokens.invalidate(self._conn_token)
                        self.close()
                        self.reconnects += 1
                        continue
                    raise QueryError(f"query failed: {_pg_message(exc)}") from None
                finally:
                    timer.cancel()
        if len(rows) > max_rows:
            log.warning("query result capped at %d rows, as Query Service caps interactive results", max_rows)
            rows = rows[:max_rows]
        df = pd.DataFrame.from_records(rows, columns=columns)
        return _decimals_to_float(df)

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
        block = f"$$ BEGIN\nDROP TABLE IF EXISTS {table};\nCREATE TABLE {table} AS ({select});\nEND $$;"
        what = f"CTAS {table}"
        query_id = self.submit(block, what)
        log.info("%s submitted as query %s", what, query_id)
        self.wait(query_id, timeout_s, what)
        # The catalog may list the new dataset a moment after the query succeeded.
        deadline = time.monotonic() + max(30.0, 6 * self.poll_s)
        while True:
            ds = self.catalog.find_dataset(table)
            if ds is not None:
                return ds
            if time.monotonic() >= deadline:
                raise QueryError(f"{what} succeeded but no dataset named {table!r} appeared in the catalog")
            time.sleep(min(self.poll_s, 1.0))


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
    msg = (getattr(exc, "pgerror", None) or str(exc) or type(exc).__name__).strip()
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
