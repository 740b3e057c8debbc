"""Entry points run through `mlflow run . -e <stage> --env-manager local` in a temporary copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def project_copy(tmp_path: Path) -> Path:
    """A copy of the project as a user would have it (no local state)."""
    dest = tmp_path / "proj"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cmle", "mlruns", "mlartifacts", "mlflow.db*", "__pycache__", ".pytest_cache",
        "*.egg-info", "spark-warehouse"))
    return dest


def mlflow_run(proj: Path, entry: str, *params: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMLE_", "MLFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "mlflow", "run", ".", "-e", entry, "--env-manager", "local"]
    for p in params:
        cmd += ["-P", p]
    res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=900)
    if check and res.returncode != 0:
        raise AssertionError(f"mlflow run -e {entry} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


def runs(proj: Path):
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_cleanup_entry_point_and_user_error(tmp_path):
    proj = project_copy(tmp_path)
    mlflow_run(proj, "cleanup", "dry_run=true")
    bad = mlflow_run(proj, "cleanup", "dry_run=perhaps", check=False)
    assert bad.returncode != 0
    assert "parameter dry_run = 'perhaps' is not a valid bool" in bad.stderr
    assert "Traceback" not in bad.stderr.split("cmle cleanup: error")[-1]
    statuses = sorted(r.info.status for r in runs(proj))
    assert statuses == ["FAILED", "FINISHED"]
