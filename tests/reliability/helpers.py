"""Running `cmle` as a user would (separate processes, SIGKILL, two at once) and reading back
what a run left: datasets, batches, model versions, aliases, audiences, score files, leftovers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from cmle import naming, storage

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cmle_propensity_model"
# A small pipeline: a few thousand profiles, two tuning evaluations of one family.
TINY = ["--profiles", "2000", "--end_date", "2024-06-01", "--min_positives", "10", "--min_negatives", "10",
        "--max_evals", "2", "--families", "logreg", "--framing", "pit", "--min_eval_positives", "5",
        "--min_auc", "0.5", "--skip", "explore"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMLE_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def start_cmle(folder: Path, argv: list[str], env: dict[str, str], tag: str = "run") -> subprocess.Popen:
    """``cmle <argv>`` in its own interpreter, in ``folder``; output in ``folder/<tag>.out|err``."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "cmle.cli", *argv], cwd=folder, env=env,
                            stdout=open(folder / f"{tag}.out", "w"), stderr=open(folder / f"{tag}.err", "w"))


class ForkServer:
    """See ``forkserver.py``: one preloaded interpreter, one forked child per command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))],
                                     cwd=ROOT, env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.runs = 0

    def run(self, folder: Path, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        out, err = folder / f"fork{self.runs}.out", folder / f"fork{self.runs}.err"
        req = {"cwd": str(folder), "env": env, "argv": argv, "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the fork server died")
        return json.loads(answer)["rc"], out.read_text(), err.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def leftovers(folder: Path, root: Path | None = None) -> list[str]:
    """What a killed run may leave and a finished one must not: loading batches, staging
    files, hidden temporary export folders, in-progress markers."""
    root = root or folder / ".cmle" / "platform"
    found = []
    con = sqlite3.connect(root / "catalog.sqlite")
    try:
        found += [f"batch {b} loading" for (b,) in con.execute("SELECT id FROM batches WHERE status='loading'")]
    finally:
        con.close()
    found += [f"staging {p.name}" for p in (root / "staging").iterdir()]
    found += [str(p) for p in root.rglob(".tmp-*")] + [str(p) for p in root.rglob(storage.IN_PROGRESS)]
    return found


def platform_state(root: Path, owner: str = "cmle") -> dict:
    """Datasets (success batches, rows) and audiences (qualified counts) of one owner."""
    from cmle.platform.local import LocalPlatform

    plat = LocalPlatform(root)
    try:
        resources = [r for r in plat.list_resources() if r.owner == owner]
        datasets = {}
        for r in resources:
            if r.kind == "dataset":
                live = [b for b in plat.list_batches(r.id) if b.status == "success"]
                datasets[r.name] = (len(live), sum(b.records for b in live))
        audiences = {r.name: r.id for r in resources if r.kind == "audience"}
        counts = plat.evaluate_audiences(list(audiences.values()))
        return {"datasets": datasets, "audiences": {n: counts[i] for n, i in audiences.items()},
                "kinds": sorted(r.kind for r in resources)}
    finally:
        plat.close()


def registry_state(db: Path) -> dict:
    client = MlflowClient(f"sqlite:///{db}")
    versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    aliases = dict(client.get_registered_model(MODEL).aliases) if versions else {}
    pending = [k for v in versions for k, val in v.tags.items()
               if k.startswith("cmle.promotion.") and json.loads(val).get("state") == "pending"]
    return {"versions": [str(v.version) for v in versions], "aliases": {k: str(v) for k, v in aliases.items()},
            "fingerprinted": all("cmle.fingerprint" in v.tags for v in versions), "pending": pending}


def newest_scores(folder: Path, owner: str = "cmle"):
    landing = str(folder / ".cmle" / "platform" / "landing")
    run = storage.newest_export(landing, "cmle/ingress", naming.scores_folder(owner))
    df = storage.read_export(run.url).to_pandas()
    return df.sort_values("userid").reset_index(drop=True)[["userid", "propensity", "score", "bucket"]]


def state(folder: Path, owner: str = "cmle") -> dict:
    """Everything a user would count after `main`, for comparing two runs."""
    out = {"leftovers": leftovers(folder), **platform_state(folder / ".cmle" / "platform", owner),
           **registry_state(folder / "mlflow.db")}
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return out
