"""Fixtures of the remote tests: a local S3 server (moto) and an MLflow tracking server with
its artifacts in it (tests/remote/servers.py), each started once per test session when a
test first needs it, and client environments that point at them through the standard
variables only (AWS_* of the standard chain, AWS_ENDPOINT_URL, MLFLOW_TRACKING_URI).

The tests here skip only where the ``s3`` extra (s3fs, boto3) or moto is not installed; CI
installs both (``pip install -e ".[test,s3]"``).
"""

from __future__ import annotations

import uuid

import pytest

from tests.remote.servers import BUCKET
from tests.scoring.toy import champion, mlflow_db_template, own_store_settings, toy_registry  # noqa: F401 - fixtures

pytest.importorskip("s3fs", reason="the s3 extra is not installed: pip install -e '.[test,s3]'")
pytest.importorskip("boto3", reason="the s3 extra is not installed: pip install -e '.[test,s3]'")
pytest.importorskip("moto", reason="moto is not installed: pip install -e '.[test,s3]'")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 in server mode, with the bucket ``cmle-remote``."""
    from tests.remote.servers import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3-server")).start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def remote_stack(s3_server, tmp_path_factory, mlflow_db_template):
    """``mlflow server`` (sqlite, ``--artifacts-destination s3://cmle-remote/mlartifacts``)."""
    from tests.remote.servers import RemoteStack

    stack = RemoteStack(bucket=BUCKET, folder=tmp_path_factory.mktemp("mlflow-server"),
                        db_template=mlflow_db_template, s3=s3_server).start()
    yield stack
    stack.stop()


def _fresh_s3fs():
    import s3fs

    # s3fs caches file system instances by their options, not by the environment: an
    # instance made before AWS_ENDPOINT_URL changed would talk to the wrong endpoint.
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_env(s3_server, tmp_cwd, monkeypatch):
    """A user's AWS environment for the local S3 server: keys and AWS_ENDPOINT_URL."""
    from tests.remote.servers import aws_env

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in aws_env(s3_server.url, tmp_cwd).items():
        monkeypatch.setenv(key, value)
    _fresh_s3fs()
    yield s3_server
    _fresh_s3fs()


@pytest.fixture
def remote_env(remote_stack, s3_env, monkeypatch):
    """``s3_env`` plus MLFLOW_TRACKING_URI of the server; MLflow's URI restored afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", remote_stack.mlflow.url)
    yield remote_stack
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def prefix() -> str:
    """A storage prefix of this test's own in the shared bucket."""
    return f"t-{uuid.uuid4().hex[:8]}"
