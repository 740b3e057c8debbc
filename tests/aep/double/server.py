"""The AEP double: an HTTP server on 127.0.0.1 with state, that the real aepp client and the
adapter talk to.

Every request to the platform is validated against Adobe's OpenAPI specs
(:mod:`.specs`) before anything else; a request that does not validate is answered 400
and recorded in :attr:`AEPDouble.violations` (the test fixtures fail on any). Then the
token, API key, org and sandbox headers are checked (401/403 as AEP answers), permissions
(:attr:`AEPDouble.denied`: path prefixes that answer 403), and the request goes to the
handler of its operation (``svc_*`` modules). Faults (:mod:`.faults`) are injected
around that.

Query Service's PostgreSQL endpoint is :class:`.pgproxy.ProxyProcess` in front of a real
PostgreSQL server; its database ``{sandbox}:all`` holds every dataset as a table.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from . import sqlxlate
from .faults import FaultPlan
from .pgproxy import CONTROL_SQL, ProxyProcess
from .postgres import ADMIN, PostgresServer
from .router import ROUTES, HTTPErr, Req, Resp, norm
from .specs import SpecRegistry, SpecViolation

log = logging.getLogger("aep-double")

TEMPLATE_DB = "cmle_double_template"  # a database with the shim functions, cloned per double
_SPECS: SpecRegistry | None = None
_SPECS_LOCK = threading.Lock()


def spec_registry() -> SpecRegistry:
    """The specs, loaded once per process (about a second)."""
    global _SPECS
    with _SPECS_LOCK:
        if _SPECS is None:
            _SPECS = SpecRegistry()
        return _SPECS


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:24]


def now_ms() -> int:
    return int(time.time() * 1000)


class AEPDouble:
    """A stateful stand-in for one AEP sandbox (see the module docstring)."""

    def __init__(self, pg: PostgresServer, workdir: Path, *, org_id: str = "TESTORG0000@AdobeOrg",
                 client_id: str = "cmle-test-client", client_secret: str = "double-client-secret-7f3a9c",
                 sandbox: str = "dev", tenant: str = "cmle", token_ttl: float = 3600.0,
                 delay_s: float = 0.05, hang_s: float = 1.5, flow_ready_s: float = 0.0,
                 retry_after_s: float = 1.0, late_s: float = 2.0):
        from . import (  # noqa: F401 - routes
            svc_catalog, svc_flows, svc_labels, svc_profile_export, svc_query, svc_segments, svc_xdm)

        self.pg = pg
        self.workdir = Path(workdir)
        self.landing_zone = self.workdir / "landing-zone"
        self.landing_zone.mkdir(parents=True, exist_ok=True)
        self.org_id, self.client_id, self.client_secret = org_id, client_id, client_secret
        self.sandbox, self.tenant, self.token_ttl = sandbox, tenant, token_ttl
        self.delay_s, self.hang_s, self.flow_ready_s = delay_s, hang_s, flow_ready_s
        # Seconds a 429 asks the client to wait (AEP sends whole seconds; tests may use less to
        # stay fast: the client must honour whatever it is told) and how late "late" requests run.
        self.retry_after_s, self.late_s = retry_after_s, late_s
        self.db = f"{sandbox}:all"
        self.specs = spec_registry()
        self.faults = FaultPlan()
        self.lock = threading.RLock()
        self.role_lock = threading.Lock()  # serialises ALTER ROLE (PostgreSQL refuses concurrent ones)
        # --- observable behaviour -------------------------------------------------------
        self.violations: list[str] = []
        self.unimplemented: list[str] = []
        self.errors: list[str] = []  # exceptions in the double's own handlers
        self.calls: list[tuple[str, str, int]] = []
        self.retry_not_before: dict[tuple[str, str], float] = {}  # (method, path) -> when a retry may come
        self.early_retries: list[str] = []  # requests that came before their 429's Retry-After
        self.requests = 0  # every HTTP request received, faulted or not
        self.request_paths: list[str] = []  # their paths, in order
        self.denied: set[str] = set()  # path prefixes the credential may not use (403)
        self.stats_without_tenant = False
        self.dlz_sas_token = "sv=2023-11-03&sr=c&sp=rl&sig=" + secrets.token_urlsafe(32)
        # --- state --------------------------------------------------------------------------
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch s)
        self.fieldgroups: dict[str, dict] = {}
        self.schemas: dict[str, dict] = {}
        self.descriptors: dict[str, dict] = {}
        self.datasets: dict[str, dict] = {}
        self.dataset_schemas: dict[str, object] = {}  # dataset id -> Arrow schema of its table
        self.batches: dict[str, dict] = {}
        self.batch_files: dict[str, dict[str, bytes]] = {}
        self.chunks: dict[tuple[str, str], dict[int, bytes]] = {}  # large-file uploads in progress
        self.queries: dict[str, dict] = {}
        self.sql_audiences: dict[str, dict] = {}  # Data Distiller SQL audiences by name (ddaud)
        self.query_pids: dict[str, int] = {}
        self.connections: dict[str, dict] = {}
        self.source_connections: dict[str, dict] = {}
        self.target_connections: dict[str, dict] = {}
        self.flows: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.segments: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.merge_policies: dict[str, dict] = {}  # besides the default one (svc_profile_export)
        self.export_jobs: dict[int, dict] = {}
        self.labels: dict[str, tuple[dict, str]] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self.proxy: ProxyProcess | None = None

    @staticmethod
    def new_hex() -> str:
        return uuid.uuid4().hex

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> "AEPDouble":
        con = self.pg.admin_connect()
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,))
            if cur.fetchone() is None:  # the first double of this server prepares a template
                cur.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
                tcon = self.pg.admin_connect(TEMPLATE_DB)
                with tcon.cursor() as tcur:
                    tcur.execute(sqlxlate.SHIM_FUNCTIONS)
                    tcur.execute(CONTROL_SQL)
                tcon.close()
            cur.execute(f'CREATE DATABASE "{self.db}" TEMPLATE "{TEMPLATE_DB}"')
            cur.execute(f'CREATE ROLE "{self.org_id}" LOGIN PASSWORD %s', (secrets.token_hex(16),))
        con.close()
        with self.admin() as cur:
            cur.execute(f'GRANT ALL ON SCHEMA public TO "{self.org_id}"')
            cur.execute(f'ALTER DEFAULT PRIVILEGES FOR ROLE {ADMIN} IN SCHEMA public GRANT SELECT ON TABLES '
                        f'TO "{self.org_id}"')
        self.proxy = ProxyProcess((self.pg.host, self.pg.port), ADMIN, self.db)
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # one write per answer: headers and body in separate segments cost 40 ms

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                double.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # dropped connections are on purpose
                pass

        self._http = Server(("127.0.0.1", 0), Handler)
        t = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="aep-double",
                             daemon=True)
        t.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self.proxy is not None:
            self.proxy.stop()
        with self.lock:
            for q in self.queries.values():  # let hung queries go
                q["cancel_requested"] = True
        try:
            con = self.pg.admin_connect()
            with con.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
                cur.execute(f'DROP ROLE IF EXISTS "{self.org_id}"')
            con.close()
        except Exception:  # noqa: BLE001 - the server may be gone already
            log.warning("could not drop the double's database", exc_info=True)
        for t in list(self._threads):
            t.join(timeout=2)

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    # --- PostgreSQL --------------------------------------------------------------------------
    @contextmanager
    def admin(self, autocommit: bool = True):
        """A cursor on the sandbox database as the superuser (a new connection each time)."""
        con = self.pg.admin_connect(self.db, autocommit=autocommit)
        try:
            with con.cursor() as cur:
                yield cur
            if not autocommit:
                con.commit()
        except BaseException:
            if not autocommit:
                con.rollback()
            raise
        finally:
            con.close()

    def translate(self, sql: str) -> str:
        """PostgreSQL for Spark SQL, as the wire endpoint and the REST queries translate it."""
        with self.admin() as cur:
            catalog = sqlxlate.load_catalog(cur)
        return ";\n".join(sqlxlate.translate(sql, catalog)) or "SELECT 1 WHERE false"

    def wire_fault(self, name: str, times: int = 1) -> None:
        """Arm a fault of the PostgreSQL endpoint: ``slow_interactive``, ``fail_interactive`` (a
        SQL error), ``overload_interactive`` (SQLSTATE XX000, as an overloaded engine answers)
        or ``drop_interactive`` (the connection is closed when the query arrives)."""
        with self.admin() as cur:
            cur.execute("INSERT INTO double.control (name, remaining) VALUES (%s, %s) ON CONFLICT (name) "
                        "DO UPDATE SET remaining = double.control.remaining + EXCLUDED.remaining", (name, times))

    def wire_random(self, rate: float, kinds: tuple[str, ...] = ("overload_interactive", "drop_interactive")) -> None:
        """Give each query on the PostgreSQL endpoint a ``rate`` chance of one of ``kinds``."""
        with self.admin() as cur:
            cur.execute("INSERT INTO double.wire_random (id, rate, kinds) VALUES (1, %s, %s) ON CONFLICT (id) "
                        "DO UPDATE SET rate = EXCLUDED.rate, kinds = EXCLUDED.kinds", (rate, list(kinds)))

    def wire_faults_used(self) -> dict[str, int]:
        with self.admin() as cur:
            cur.execute("SELECT name, used FROM double.control")
            return dict(cur.fetchall())

    def wire_queries(self) -> list[str]:
        """Every SQL text clients sent to the PostgreSQL endpoint, in order."""
        with self.admin() as cur:
            cur.execute("SELECT sql FROM double.wire_log ORDER BY id")
            return [r[0] for r in cur.fetchall()]

    # --- tokens ----------------------------------------------------------------------------
    def issue_token(self) -> tuple[str, float]:
        token = "eyJ" + secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[token] = time.time() + self.token_ttl
        return token, self.token_ttl

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return token in self.tokens and self.tokens[token] > time.time()

    def expire_tokens(self) -> None:
        """Every token issued so far expires now: REST answers 401, Query Service sessions end."""
        with self.lock:
            for t in self.tokens:
                self.tokens[t] = 0.0
        with self.role_lock, self.admin() as cur:
            cur.execute(f'ALTER ROLE "{self.org_id}" PASSWORD %s', (secrets.token_hex(16),))
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (self.org_id,))

    def set_qs_password(self, token: str) -> None:
        # two ALTER ROLEs at once make PostgreSQL fail one ("tuple concurrently updated")
        with self.role_lock, self.admin() as cur:
            cur.execute(f'ALTER ROLE "{self.org_id}" PASSWORD %s', (token,))

    # --- background work -------------------------------------------------------------------------
    def spawn(self, fn, *args) -> None:
        def run():
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a worker failure must not kill the double
                log.exception("double worker %s failed", getattr(fn, "__name__", fn))

        t = threading.Thread(target=run, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def sleep(self, seconds: float) -> bool:
        """Wait; False when the double is stopping."""
        return not self._stopping.wait(seconds)

    # --- HTTP ------------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        path, _, query = h.path.partition("?")
        with self.lock:
            self.requests += 1
            self.request_paths.append(path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        if path == "/ims/token/v3" and method == "POST":
            op = "POST /ims/token/v3"
        else:
            try:
                op = self.specs.match(path, method)[0][0].key
            except SpecViolation:
                op = f"{method} {path}"
        self._check_retry_after(method, path)
        fault = self.faults.take(method, path, op)
        if fault in ("429", "500", "503"):
            headers = {}
            if fault == "429":
                headers["Retry-After"] = f"{self.retry_after_s:g}"
                with self.lock:
                    self.retry_not_before[(method, path)] = time.monotonic() + self.retry_after_s
            self._send(h, Resp(int(fault), {"error_code": f"{fault}000", "message": "injected fault"}, headers))
            self._record(method, op, int(fault))
            return
        if fault == "drop_before":
            self._drop(h)
            return
        if fault == "late":  # the client loses the connection; the request runs late_s later
            self._drop(h)
            self.spawn(self._process_late, method, path, query, headers, body, op)
            return
        if op == "POST /ims/token/v3":
            resp = self.ims(body)
        else:
            resp = self.process(method, path, query, headers, body)
        if fault == "timeout":
            time.sleep(self.hang_s)
        if fault in ("drop", "timeout"):
            self._drop(h)
            return
        self._send(h, resp)

    def _process_late(self, method: str, path: str, query: str, headers: dict, body: bytes, op: str) -> None:
        if self.sleep(self.late_s):
            if op == "POST /ims/token/v3":
                self.ims(body)
            else:
                self.process(method, path, query, headers, body)

    def _check_retry_after(self, method: str, path: str) -> None:
        """A request that repeats one answered 429 before its Retry-After is an early retry."""
        with self.lock:
            not_before = self.retry_not_before.pop((method, path), None)
            if not_before is not None and time.monotonic() < not_before:
                early = f"{method} {path}: retried {not_before - time.monotonic():.3f} s before its Retry-After"
                self.early_retries.append(early)
                self.violations.append(f"early retry: {early}")

    def _record(self, method: str, key: str, status: int) -> None:
        with self.lock:
            self.calls.append((method, key, status))

    def process(self, method: str, path: str, query: str, headers: dict, body: bytes) -> Resp:
        try:
            try:
                op, params = self.specs.validate(path, method, headers, query, body)
            except SpecViolation as exc:
                with self.lock:
                    self.violations.append(str(exc))
                raise HTTPErr(400, {"error_code": "400-SPEC", "message": f"request does not match the AEP API "
                                                                          f"spec: {exc}"}) from None
            key = op.key
            auth = headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not self.token_valid(token):
                raise HTTPErr(401, {"error_code": "401013", "message": "Oauth token is not valid"})
            if headers.get("x-api-key") != self.client_id:
                raise HTTPErr(403, {"error_code": "403003", "message": "Api Key is invalid"})
            if headers.get("x-gw-ims-org-id") != self.org_id:
                raise HTTPErr(403, {"error_code": "403025", "message": "Profile is not valid"})
            if headers.get("x-sandbox-name", self.sandbox) != self.sandbox:
                raise HTTPErr(403, {"error_code": "403030", "message": "Sandbox is not accessible"})
            if any(path.startswith(p) for p in self.denied):
                raise HTTPErr(403, {"error_code": "403027", "message": "User does not have access to this resource"})
            fn = ROUTES.get((method, norm(op.base + op.template)))
            if fn is None:
                with self.lock:
                    self.unimplemented.append(key)
                raise HTTPErr(501, {"message": f"the double does not implement {key}"})
            req = Req(method, path, query, headers, body, args=list(params.values()), token=token)
            out = fn(self, req)
            resp = out if isinstance(out, Resp) else Resp(200, out)
        except HTTPErr as exc:
            key = locals().get("key", path)
            resp = Resp(exc.status, exc.body, exc.headers)
        except Exception as exc:  # a bug of the double: answer 500 and make the test fail
            key = locals().get("key", path)
            log.exception("double failed on %s %s", method, path)
            with self.lock:
                self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            resp = Resp(500, {"message": f"double error: {exc}"})
        self._record(method, key, resp.status)
        return resp

    def _send(self, h: BaseHTTPRequestHandler, resp: Resp) -> None:
        if isinstance(resp.body, (bytes, bytearray)):
            data, ctype = bytes(resp.body), "application/octet-stream"
        elif resp.body is None:
            data, ctype = b"", "application/json"
        else:
            data, ctype = json.dumps(resp.body).encode(), "application/json"
        try:
            h.send_response(resp.status)
            h.send_header("Content-Type", resp.headers.pop("Content-Type", ctype))
            h.send_header("Content-Length", str(len(data)))
            for k, v in resp.headers.items():
                h.send_header(k, v)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- IMS ---------------------------------------------------------------------------------------
    def ims(self, body: bytes) -> Resp:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return Resp(400, {"error": "invalid_request", "error_description": "grant_type and scope are required"})
        if form.get("client_id") != self.client_id:
            return Resp(400, {"error": "invalid_client", "error_description": "invalid client_id parameter"})
        if form.get("client_secret") != self.client_secret:
            return Resp(401, {"error": "invalid_client", "error_description": "invalid client_secret parameter"})
        token, ttl = self.issue_token()
        return Resp(200, {"access_token": token, "token_type": "bearer", "expires_in": int(ttl)})

    # --- tallies for tests ----------------------------------------------------------------------
    def duplicates(self) -> dict[str, list[str]]:
        """Names held more than once, by kind (what a blindly retried creation leaves)."""
        out: dict[str, list[str]] = {}

        def dup(kind: str, names: list[str]) -> None:
            c = Counter(names)
            d = sorted(n for n, k in c.items() if k > 1)
            if d:
                out[kind] = d

        with self.lock:
            dup("fieldgroup", [f["title"] for f in self.fieldgroups.values()])
            dup("schema", [s["title"] for s in self.schemas.values()])
            dup("descriptor", [f"{d['xdm:sourceSchema']} {d['xdm:sourceProperty']}" for d in self.descriptors.values()])
            dup("dataset", [d["name"] for d in self.datasets.values()])
            dup("connection", [c["name"] for c in self.connections.values()])
            dup("sourceConnection", [c["name"] for c in self.source_connections.values()])
            dup("targetConnection", [c["name"] for c in self.target_connections.values()])
            dup("flow", [f["name"] for f in self.flows.values()])
            dup("segment", [s["name"] for s in self.segments.values()])
            live = [b for b in self.batches.values() if b["status"] not in ("failed", "aborted", "abandoned", "inactive")
                    and (b.get("tags") or {}).get("cmle.key")]
            dup("batch", [f"{b['relatedObjects'][0]['id']} {b['tags']['cmle.key'][0]}" for b in live])
        return out

    def table_name_for(self, name: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "dataset"
        taken = {(d.get("tags") or {}).get("adobe/pqs/table", [""])[0] for d in self.datasets.values()}
        table, i = base, 1
        while table in taken:
            table, i = f"{base}_{i}", i + 1
        return table
