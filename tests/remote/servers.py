"""A local S3 server (moto in server mode) and an ``mlflow server`` whose artifacts go to
it, as subprocesses on free ports of 127.0.0.1 with private temporary folders: the shape of
SageMaker managed MLflow (a tracking server with a database and an S3 artifact store) on
one machine. Used by tests/remote and bench/bench_main.py.

Both are stopped (their process group is ended) by :meth:`stop` or at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
BUCKET = "cmle-remote"
# Fixed, fake credentials: moto accepts any; the variables make every AWS SDK use them
# (the standard chain) instead of a developer's own profile.
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "cmle-test", "AWS_SECRET_ACCESS_KEY": "cmle-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1"}


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def aws_env(endpoint: str, folder: Path) -> dict[str, str]:
    """The AWS variables a client of the local S3 server needs: the endpoint through the
    standard ``AWS_ENDPOINT_URL``, fake keys, and no shared config or credentials file."""
    return {**AWS_KEYS, "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": str(folder / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "aws-credentials")}


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MLFLOW_", "CMLE_")) and k not in ("PYTEST_CURRENT_TEST",)}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


class _Process:
    """A server subprocess in its own process group, with its output in a log file."""

    name = "server"

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = folder / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)

    def _ready(self) -> bool:
        raise NotImplementedError

    def _start_on_a_free_port(self, command, env: dict[str, str], timeout: float, attempts: int = 5) -> None:
        """Start ``command(port)`` on a free port; another one if a concurrent test took it first."""
        for _ in range(attempts):
            self.port = free_port()
            self._spawn(command(self.port), env)
            try:
                self.wait(timeout=timeout)
                return
            except ServerUnavailable:
                if "in use" not in self.log_tail():
                    raise
                self.stop()
        raise ServerUnavailable(f"{self.name} could not find a free port: {self.log_tail()}")

    def wait(self, timeout: float = 90.0) -> "_Process":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerUnavailable(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if self._ready():
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise ServerUnavailable(f"{self.name} did not answer within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the workers it started
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=15)
        self.proc = None


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status


class S3Server(_Process):
    """moto's S3 in server mode (``python -m moto.server``)."""

    name = "moto"

    def start(self) -> "S3Server":
        self._start_on_a_free_port(lambda port: [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                                   _clean_env({}), timeout=60)
        return self

    def _ready(self) -> bool:
        return _get(f"{self.url}/moto-api/") == 200

    def client(self):
        """A boto3 S3 client of this server (explicit keys: the test process's own AWS setup is ignored)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=AWS_KEYS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_KEYS["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key of ``bucket`` under ``prefix``, sorted."""
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)


class MlflowServer(_Process):
    """``mlflow server`` with a sqlite backend store and ``--artifacts-destination`` on S3
    (proxied artifacts: clients send them through the server, which writes them to S3), or
    in a local folder when there is no ``s3_endpoint``; ``env``: more server variables."""

    name = "mlflow-server"

    def __init__(self, folder: Path, artifacts_destination: str, s3_endpoint: str | None = None,
                 db_template: Path | None = None, env: dict[str, str] | None = None):
        super().__init__(folder)
        self.artifacts_destination = artifacts_destination
        self.s3_endpoint = s3_endpoint
        self.db_template = db_template
        self.env = env or {}

    def start(self) -> "MlflowServer":
        if self.db_template is not None and not (self.folder / "mlflow.db").exists():
            # a database whose tables exist: the server then starts in half the time
            shutil.copyfile(self.db_template, self.folder / "mlflow.db")
        self._start_on_a_free_port(
            lambda port: [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port),
                          "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                          "--artifacts-destination", self.artifacts_destination, "--workers", "1"],
            _clean_env({**(aws_env(self.s3_endpoint, self.folder) if self.s3_endpoint else {}), **self.env}),
            timeout=120)
        return self

    def _ready(self) -> bool:
        return _get(f"{self.url}/health") == 200


class RemoteStack:
    """A local S3 server with one bucket and an MLflow tracking server storing its artifacts
    in that bucket under ``mlartifacts/``; ``env`` is what a client process needs. Pass a
    running ``s3`` server to share it (it is then left running by :meth:`stop`)."""

    def __init__(self, bucket: str = BUCKET, folder: Path | None = None, db_template: Path | None = None,
                 s3: S3Server | None = None):
        self.bucket = bucket
        self.db_template = db_template
        self._own = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="cmle-remote-"))
        self._own_s3 = s3 is None
        self.s3 = s3 or S3Server(self.folder)
        self.mlflow: MlflowServer | None = None

    def start(self) -> "RemoteStack":
        if self._own_s3:
            self.s3.start()
            self.s3.create_bucket(self.bucket)
        self.mlflow = MlflowServer(self.folder, f"s3://{self.bucket}/mlartifacts", self.s3.url,
                                   db_template=self.db_template).start()
        return self

    @property
    def env(self) -> dict[str, str]:
        return {**aws_env(self.s3.url, self.folder), "MLFLOW_TRACKING_URI": self.mlflow.url}

    def storage_url(self, prefix: str = "landing") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def stop(self) -> None:
        if self.mlflow is not None:
            self.mlflow.stop()
        if self._own_s3:
            self.s3.stop()
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "RemoteStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
