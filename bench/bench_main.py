"""Wall time of the default `main` job, end to end, as a user runs it.

Runs ``mlflow run . -e main --env-manager local`` (default parameters: 100,000 profiles)
in a fresh copy of the project, ``--repeat`` times, and prints the median wall time next to
the goal (≤ 120 s on 2 cores), then each stage's time from the MLflow runs of the last
repetition.

With ``--remote``, each repetition also runs the same ``main`` against a remote stack, the
SageMaker managed MLflow shape (docs/remote-mlflow-s3.md): ``MLFLOW_TRACKING_URI`` of an
``mlflow server`` (sqlite backend, ``--artifacts-destination s3://...``) and
``storage_url = s3://...`` for exports and score files, on a local S3 server (moto), fresh
for each repetition; the figures are printed beside the local sqlite baseline. Needs
``pip install -e ".[test,s3]"``.

    python bench/bench_main.py [--repeat 1] [--remote] [-P name=value ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 120.0


def fresh_copy(base: Path) -> Path:
    dest = base / "proj"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cmle", "mlruns", "mlartifacts", "mlflow.db*", "__pycache__", ".pytest_cache",
        "*.egg-info", "spark-warehouse"))
    return dest


def run_main(proj: Path, params: list[str], extra_env: dict[str, str] | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMLE_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"), **(extra_env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "mlflow", "run", ".", "-e", "main", "--env-manager", "local"]
    for p in params:
        cmd += ["-P", p]
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-5000:])
        raise SystemExit(f"main failed (exit {res.returncode})")
    return elapsed


def stage_times(tracking_uri: str) -> list[tuple[str, float]]:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.`cmle.stage` != 'main'")
    out = [(r.data.tags.get("cmle.stage", "?"), r.data.metrics.get("stage_seconds", float("nan")), r.info.start_time)
           for r in runs if "cmle.stage" in r.data.tags]
    return [(s, t) for s, t, _ in sorted(out, key=lambda x: x[2])]


def run_remote(params: list[str]) -> tuple[float, list[tuple[str, float]], int]:
    """One ``main`` against a fresh remote stack: (wall time, stage times, objects in the bucket)."""
    sys.path.insert(0, str(ROOT))
    from tests.remote.servers import RemoteStack

    with tempfile.TemporaryDirectory() as tmp, RemoteStack() as stack:
        proj = fresh_copy(Path(tmp))
        env = {**stack.env, "CMLE_CLOUD_STORAGE_URL": stack.storage_url("landing")}
        elapsed = run_main(proj, params, env)
        return elapsed, stage_times(stack.mlflow.url), len(stack.s3.keys(stack.bucket))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--remote", action="store_true",
                    help="also run main against an mlflow server with S3 artifacts and s3:// storage (moto)")
    ap.add_argument("-P", dest="params", action="append", default=[], help="main parameter name=value")
    args = ap.parse_args()
    times, remote_times = [], []
    per_stage = remote_stages = []
    objects = 0
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            proj = fresh_copy(Path(tmp))
            times.append(run_main(proj, args.params))
            print(f"run {i + 1}: main finished in {times[-1]:.1f} s (local sqlite, local folder)", flush=True)
            if i == args.repeat - 1:
                per_stage = stage_times(f"sqlite:///{proj / 'mlflow.db'}")
        if args.remote:
            elapsed, remote_stages, objects = run_remote(args.params)
            remote_times.append(elapsed)
            print(f"run {i + 1}: main finished in {elapsed:.1f} s (mlflow server + S3 artifacts, s3:// storage; "
                  f"{objects} objects in the bucket)", flush=True)
    med = statistics.median(times)
    print()
    if not args.remote:
        print(f"{'figure':40s} {'measured':>12s} {'goal':>12s}")
        print(f"{'default main wall time (median, s)':40s} {med:12.1f} {GOAL_S:12.1f}   "
              f"{'OK' if med <= GOAL_S else 'MISSED'}")
        print(f"\nstage times of the last run (MLflow metric stage_seconds):")
        for stage, secs in per_stage:
            print(f"  {stage:12s} {secs:8.1f} s")
        return
    rmed = statistics.median(remote_times)
    print(f"{'main wall time (median of ' + str(args.repeat) + ', s)':40s} {'local sqlite':>14s} "
          f"{'remote + S3':>14s} {'ratio':>8s}")
    print(f"{'':40s} {med:14.1f} {rmed:14.1f} {rmed / med:8.2f}")
    print(f"\nstage times of the last run (MLflow metric stage_seconds):")
    print(f"  {'stage':12s} {'local':>8s} {'remote':>8s}")
    remote_by_stage = dict(remote_stages)
    for stage, secs in per_stage:
        print(f"  {stage:12s} {secs:8.1f} {remote_by_stage.get(stage, float('nan')):8.1f}")


if __name__ == "__main__":
    main()
