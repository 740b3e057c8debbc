"""The double's Query Service wire endpoint: a PostgreSQL protocol proxy.

psycopg2 in the adapter connects here exactly as it connects to
``<org>.platform-query.adobe.io`` and sends Spark SQL. The proxy forwards the protocol to
the real PostgreSQL server unchanged, except simple-query messages (``Q``, the only kind
libpq's ``PQexec`` sends), whose SQL it translates (:mod:`.sqlxlate`) first. SSL and
GSS encryption requests are declined (the local server speaks plain TCP; the adapter uses
``sslmode=disable`` against the double and ``require`` against AEP). Cancel requests are
forwarded, so client-side cancellation works as on AEP.

It runs in its **own process** (:class:`ProxyProcess`): psycopg2's ``cancel()`` holds the
GIL while libpq waits for the server's answer, so a proxy thread in the test process could
never answer it. The proxy keeps its state in the sandbox database, schema ``double``:
``wire_log`` (every SQL text a client sent) and ``control`` (armed wire faults:
``slow_interactive`` prepends a long ``pg_sleep``, ``fail_interactive`` fails the query
with a SQL error, ``overload_interactive`` fails it as an overloaded engine does (SQLSTATE
XX000, worth re-running), ``drop_interactive`` closes the connection) and ``wire_random``
(a rate at which every query gets one of the given faults).
"""

from __future__ import annotations

import argparse
import atexit
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

CONTROL_SQL = """
CREATE SCHEMA IF NOT EXISTS double;
CREATE TABLE IF NOT EXISTS double.control (name text PRIMARY KEY, remaining int NOT NULL, used int NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS double.wire_log (id serial PRIMARY KEY, sql text NOT NULL);
CREATE TABLE IF NOT EXISTS double.wire_random (id int PRIMARY KEY DEFAULT 1, rate float8 NOT NULL,
                                               kinds text[] NOT NULL);
"""
WIRE_FAULTS = ("slow_interactive", "fail_interactive", "overload_interactive", "drop_interactive")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return bytes(buf)


def _error_sql(message: str) -> str:
    safe = message.replace("$m$", "$ m $")
    return f"SELECT cmle_double_error($m${safe}$m$)"


class _Proxy:
    """The proxy itself (runs in the child process)."""

    def __init__(self, upstream: tuple[str, int], admin_user: str, db: str):
        self.upstream = upstream
        self.admin_user = admin_user
        self.db = db
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy.serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)

    def _admin(self):
        import psycopg2

        con = psycopg2.connect(host=self.upstream[0], port=self.upstream[1], user=self.admin_user, dbname=self.db,
                               sslmode="disable", connect_timeout=10)
        con.autocommit = True
        return con

    def rewrite(self, sql: str, session: dict | None = None) -> str:
        from aep.double import ddml, sqlxlate

        session = {} if session is None else session
        try:
            con = self._admin()
            try:
                with con.cursor() as cur:
                    cur.execute("INSERT INTO double.wire_log (sql) VALUES (%s)", (sql,))
                    ddml.session_setting(sql, session)
                    if ddml.is_model_sql(sql):  # Data Distiller's SQL ML: run here, its result read below
                        sql = ddml.run(sql, cur, lambda s: sqlxlate.translate(s, sqlxlate.load_catalog(cur)),
                                       session) or ""
                    catalog = sqlxlate.load_catalog(cur)
                    out = ";\n".join(sqlxlate.translate(sql, catalog)) or "SELECT 1 WHERE false"
                    cur.execute("UPDATE double.control SET remaining = remaining - 1, used = used + 1 "
                                "WHERE name = (SELECT name FROM double.control WHERE remaining > 0 AND name = "
                                "ANY(%s) ORDER BY name LIMIT 1) RETURNING name", (list(WIRE_FAULTS),))
                    row = cur.fetchone()
                    if row is None:
                        row = self._random_fault(cur)
            finally:
                con.close()
        except ddml.ModelError as exc:
            return _error_sql(str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets a SQL error, as from QS
            return _error_sql(f"Query Service (double) could not run this SQL: {exc}")
        if row and row[0] == "drop_interactive":
            raise ConnectionError("injected: connection dropped")
        if row and row[0] == "slow_interactive":
            return "SELECT pg_sleep(30);\n" + out
        if row and row[0] == "fail_interactive":
            return _error_sql("injected failure")
        if row and row[0] == "overload_interactive":
            safe = "injected: internal error, the query engine is overloaded"
            return f"SELECT cmle_double_internal_error($m${safe}$m$)"
        return out

    @staticmethod
    def _random_fault(cur):
        import random

        cur.execute("SELECT rate, kinds FROM double.wire_random WHERE id = 1")
        got = cur.fetchone()
        if not got or random.random() >= got[0]:
            return None
        kind = random.choice(got[1])
        cur.execute("INSERT INTO double.control (name, remaining, used) VALUES (%s, 0, 1) ON CONFLICT (name) "
                    "DO UPDATE SET used = double.control.used + 1", (kind,))
        return (kind,)

    def serve(self, client: socket.socket) -> None:
        upstream = None
        session: dict = {}  # this connection's session settings
        try:
            while True:
                head = _recv_exact(client, 8)
                length, code = struct.unpack("!ii", head)
                rest = _recv_exact(client, length - 8)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                break
            upstream = socket.create_connection(self.upstream, timeout=30)
            upstream.settimeout(None)
            upstream.sendall(head + rest)
            if code == CANCEL_REQUEST:
                upstream.recv(1)  # the server closes the connection when done
                return
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            while True:
                kind = _recv_exact(client, 1)
                length = struct.unpack("!i", _recv_exact(client, 4))[0]
                payload = _recv_exact(client, length - 4)
                if kind == b"Q":
                    sql = payload.rstrip(b"\0").decode("utf-8")
                    payload = self.rewrite(sql, session).encode("utf-8") + b"\0"
                    upstream.sendall(b"Q" + struct.pack("!i", len(payload) + 4) + payload)
                    continue
                upstream.sendall(kind + struct.pack("!i", length) + payload)
                if kind == b"X":
                    return
        except (ConnectionError, OSError):
            return
        finally:
            for s in (upstream, client):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--admin-user", required=True)
    ap.add_argument("--db", required=True)
    args = ap.parse_args(argv)
    proxy = _Proxy((args.upstream_host, args.upstream_port), args.admin_user, args.db)
    print(proxy.server.server_address[1], flush=True)
    proxy.server.serve_forever(poll_interval=0.05)


class ProxyProcess:
    """The proxy as a child process of the tests (see the module docstring)."""

    def __init__(self, upstream: tuple[str, int], admin_user: str, db: str):
        tests_dir = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {tests_dir!r}); from aep.double.pgproxy import main; main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, "--upstream-host", upstream[0], "--upstream-port", str(upstream[1]),
             "--admin-user", admin_user, "--db", db],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self._proc.kill()
            raise RuntimeError(f"the Query Service proxy did not start (said {line!r})")
        self.port = int(line)
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if not self._proc.stdout.closed:
            self._proc.stdout.close()


if __name__ == "__main__":  # pragma: no cover
    main()
