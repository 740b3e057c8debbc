"""Fixtures for the Databricks tests: the workspace double and the project's bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the double lives next to the tests

from databricks_double import WorkspaceDouble  # noqa: E402

PROJECT = Path(__file__).resolve().parents[2]
BUNDLE = PROJECT / "databricks.yml"
TOKEN = "dapi-test-0123456789abcdef"


@pytest.fixture
def double():
    """A fresh local Databricks workspace double."""
    with WorkspaceDouble() as d:
        yield d


@pytest.fixture
def dbx_env(double, monkeypatch):
    """DATABRICKS_HOST/TOKEN pointing at the double (and no other DATABRICKS_* settings)."""
    import os

    for key in list(os.environ):
        if key.startswith(("DATABRICKS_", "BUNDLE_VAR_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", double.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    return {"DATABRICKS_HOST": double.host, "DATABRICKS_TOKEN": TOKEN}


@pytest.fixture
def wheel(tmp_path) -> Path:
    """A stand-in wheel file (the double stores it; nothing installs it)."""
    p = tmp_path / "dist" / "cmle-0.1.0-py3-none-any.whl"
    p.parent.mkdir()
    p.write_bytes(b"PK\x03\x04 not a real wheel " + tmp_path.name.encode())
    return p


@pytest.fixture
def bundle_path() -> Path:
    """The project's databricks.yml."""
    return BUNDLE
