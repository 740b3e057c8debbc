"""Shared fixtures: settings, platform and MLflow stores in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "2")

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run the test in a fresh working directory with no CMLE_* / MLFLOW_* variables set."""
    for key in list(os.environ):
        if key.startswith(("CMLE_", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT",
                           "MLFLOW_REGISTRY_URI")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings(tmp_cwd):
    """Default settings rooted in the temporary directory (local backend, sqlite MLflow)."""
    from cmle.config import load_settings

    return load_settings(env={})


@pytest.fixture
def platform(settings):
    from cmle.platform import get_platform

    p = get_platform(settings)
    yield p
    p.close()


@pytest.fixture
def ctx(settings):
    from cmle.context import Context

    c = Context(settings)
    yield c
    c.close()


@pytest.fixture
def mlflow_store(settings):
    """MLflow pointed at a sqlite store in the temporary directory; ends any active run after."""
    import mlflow

    from cmle import tracking

    tracking.setup(settings)
    yield mlflow.get_tracking_uri()
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local Spark session for the whole test run (start-up takes seconds): the session
    cmle itself uses (:func:`cmle.spark.get_spark`, local[2], UTC, no UI)."""
    from cmle.spark import get_spark

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    return get_spark(conf={"spark.sql.warehouse.dir": str(warehouse)})


# --- the AEP fault-injection tally, printed at the end of the session ------------------------
# With pytest-xdist the fault tests run in a worker: the worker hands its tally to the
# controller (workeroutput), which prints it; in one process it is printed directly.
def _fault_tally() -> list[str]:
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith("test_faults") and hasattr(module, "tally_lines"):
            return module.tally_lines()
    return []


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["aep_fault_tally"] = _fault_tally()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    lines = getattr(node, "workeroutput", {}).get("aep_fault_tally")
    if lines:
        node.config.stash[_TALLY] = lines


_TALLY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter):
    """Print the fault-injection tally when the fault tests ran."""
    lines = terminalreporter.config.stash.get(_TALLY, None) or _fault_tally()
    if lines:
        terminalreporter.write_sep("-", "AEP double")
        for line in lines:
            terminalreporter.write_line(line)
