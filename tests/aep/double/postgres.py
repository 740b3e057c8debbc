"""A real PostgreSQL server for the double's Query Service, in a temporary folder.

``PostgresServer`` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL installation
(``$CMLE_PG_BIN``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` or ``PATH``) with
a fresh data folder and a free port on 127.0.0.1, and stops it (``pg_ctl stop -m
immediate``) and removes the folder at the end. PostgreSQL refuses to run as root; when
the tests run as root the server runs as the ``postgres`` system user (``runuser``), which
the Debian ``postgresql`` package creates.

Roles: ``admin`` (superuser, trust; the double's own connections); any other role logs
in with a password (the double creates one named like the IMS org, whose password is the
current access token, so an expired token is refused as Query Service refuses it).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ADMIN = "admin"


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The folder holding initdb/pg_ctl/postgres."""
    candidates = []
    if os.environ.get("CMLE_PG_BIN"):
        candidates.append(Path(os.environ["CMLE_PG_BIN"]))
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the "
                              "`postgresql` package (apt-get install postgresql) or set CMLE_PG_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Start with :meth:`start`, stop with :meth:`stop` (also a context manager)."""

    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = 0
        self.host = "127.0.0.1"
        self._dir: Path | None = None
        self._as_user: list[str] = []

    # --- lifecycle ------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [*self._as_user, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed ({proc.returncode}): "
                                      f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def start(self) -> "PostgresServer":
        self._dir = Path(tempfile.mkdtemp(prefix="cmle-pg-"))
        atexit.register(self.stop)  # also when the test run is interrupted
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the "
                                          "server as; install the postgresql package") from None
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser") or shutil.which("su")
            self._as_user = [runuser, "-u", "postgres", "--"] if runuser.endswith("runuser") else []
            if not self._as_user:
                raise PostgresUnavailable("running as root needs `runuser` to start PostgreSQL as postgres")
        data = self._dir / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", ADMIN, "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions")
        hba = data / "pg_hba.conf"
        # admin: trust; every other role (the org, as Query Service's user): password = the token
        hba_text = (f"local all {ADMIN} trust\nhost all {ADMIN} 127.0.0.1/32 trust\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n")
        self._write_as_owner(hba, hba_text)
        for _ in range(5):
            self.port = free_port()
            opts = (f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
                    "-c shared_buffers=32MB -c TimeZone=UTC -c log_min_messages=warning")
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self._dir / "server.log"),
                          "-w", "-t", "60", "-o", opts, "start", timeout=90)
                break
            except PostgresUnavailable:
                if "could not bind" not in self.log_tail():
                    raise
        return self

    def _write_as_owner(self, path: Path, text: str) -> None:
        st = path.stat()
        path.write_text(text)
        os.chown(path, st.st_uid, st.st_gid)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self._dir / "server.log").read_text()[-n:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self._dir is None:
            return
        data = self._dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
            except (PostgresUnavailable, subprocess.SubprocessError):
                pass
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- connections ------------------------------------------------------------------------
    def admin_connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                con = psycopg2.connect(host=self.host, port=self.port, user=ADMIN, dbname=dbname,
                                       sslmode="disable", connect_timeout=5)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        con.autocommit = autocommit
        return con
