"""The getting-started page's commands, run as written, in a copy of the project.

The page marks each command block with ``<!-- test: KIND -->``. Every block is run with bash in
one copy of the project, in the page's order, each after ``. .venv/bin/activate`` (the reader's
shell after the set-up block). What this test changes, and only this:

* **setup**: the dependencies come from the test's own environment instead of the package index
  (the fresh ``.venv`` is seeded with a ``.pth`` to this interpreter's site-packages and an
  ``mlflow`` command), so ``pip install -e .`` installs the project itself and finds every
  requirement satisfied; the block itself runs verbatim.
* **run**: ``mlflow run . -e main`` gets the small sizes of :data:`SMALL` appended.
* **ui**: ``mlflow ui`` gets ``--host 127.0.0.1 --port <free port>`` appended and is stopped once
  it has served the registered model with its champion.
* **ci**: the test suite is not run from inside itself: the block must be CI's own commands
  (tests/test_docs.py checks it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_entrypoints import project_copy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
SMALL = ("profiles=6000", "end_date=2024-06-01", "min_positives=40", "min_negatives=40", "max_evals=3",
         "min_auc=0.5")
MODEL = "cmle_propensity_model"


def blocks() -> list[tuple[str, str]]:
    """The page's tested blocks, in order: (kind, commands)."""
    found = re.findall(r"<!-- test: (\w+) -->\n```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert [kind for kind, _ in found] == ["setup", "run", "ui", "inspect", "ci"], found
    return found


def test_the_page_marks_its_commands():
    kinds = dict(blocks())
    assert kinds["setup"].strip() == "python3 -m venv .venv && . .venv/bin/activate && pip install -e ."
    assert kinds["run"].strip() == "mlflow run . -e main --env-manager local"


def _env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CMLE_", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="2")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _bash(proj: Path, env: dict, commands: str, timeout: float) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\n" + ("" if commands.startswith("python3 -m venv") else ". .venv/bin/activate\n")
    res = subprocess.run(["bash", "-c", script + commands], cwd=proj, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{commands}\nfailed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def _seed_venv(proj: Path) -> None:
    """A .venv whose requirements are this environment's, so `pip install -e .` needs no download
    of them (only of the build backend, as for any user)."""
    subprocess.run([sys.executable, "-m", "venv", str(proj / ".venv")], check=True, capture_output=True)
    site = next((proj / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "_cmle_test_requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    mlflow = proj / ".venv" / "bin" / "mlflow"
    mlflow.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m mlflow "$@"\n')
    mlflow.chmod(0o755)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(port: int, path: str, body: dict | None = None, timeout_s: float = 30) -> dict:
    """GET (or POST ``body`` to) the UI server's REST API, waiting for the server to answer."""
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}"
    data = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_getting_started_commands_run_as_written(tmp_path):
    proj = project_copy(tmp_path)
    bin_dir = tmp_path / "bin"  # `python3` is this interpreter, as the page's Python 3.11
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = _env(bin_dir)
    _seed_venv(proj)
    kinds = dict(blocks())

    _bash(proj, env, kinds["setup"], timeout=600)
    assert (proj / ".venv" / "bin" / "cmle").exists(), "pip install -e . did not install the cmle command"

    small = " ".join(f"-P {shlex.quote(p)}" for p in SMALL)
    run = "\n".join(f"{line} {small}" if line.startswith("mlflow run . -e main") else line
                    for line in kinds["run"].splitlines())
    _bash(proj, env, run, timeout=900)

    out = _bash(proj, env, kinds["inspect"], timeout=300).stdout
    assert re.search(r"^part-\d+\.parquet$", out, flags=re.M), out
    assert "activation_log.jsonl" in out
    assert "propensity" in out and "model_version" in out  # the head of the newest score file

    port = _free_port()
    ui = subprocess.Popen(["bash", "-c", ". .venv/bin/activate\nexec " + kinds["ui"].strip()
                           + f" --host 127.0.0.1 --port {port}"], cwd=proj, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        model = _api(port, f"registered-models/get?name={MODEL}", timeout_s=120)["registered_model"]
        assert {"challenger", "champion"} <= {a["alias"] for a in model.get("aliases", [])}, model
        experiments = {e["name"]: e["experiment_id"] for e in
                       _api(port, "experiments/search", {"max_results": 100})["experiments"]}
        # `mlflow run` puts its run, and so main's nested runs, in the Default experiment
        runs = _api(port, "runs/search", {"experiment_ids": [experiments["Default"]], "max_results": 200})["runs"]
        names = {r["info"].get("run_name") for r in runs}
        assert {"main", "synthetic", "train", "promote", "score", "audience"} <= names, names
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the process group started here
        ui.wait(timeout=60)
