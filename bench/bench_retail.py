"""Bring-your-own-data figures: the Luma-style retail export through load, featurize and train.

In a fresh temporary project (embedded platform, sqlite MLflow) it writes the retail export
(:mod:`cmle.synthetic.retail`, ``--users`` visitors over 13 weeks, seeded), then runs the
real stages with ``conf/models/retail.yaml``: ``load`` (events and profiles), ``featurize``
(``--repeats`` times with ``rebuild=true``; median wall time and events per second),
``export`` and ``train`` with its default parameters. It prints, side by side on the same
holdout: the model's ROC-AUC, PR-AUC, log loss and ECE, and the trivial baselines (ranking by
recent activity; the base rate for everyone) with the model's margin over them.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_retail.py --users 20000
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402

from cmle.config import load_settings  # noqa: E402
from cmle.runner import run_stage  # noqa: E402
from cmle.synthetic import retail  # noqa: E402

SPEC = str(Path(__file__).resolve().parents[1] / "conf" / "models" / "retail.yaml")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--weeks", type=int, default=13)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="featurize runs (median)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    root = Path(tempfile.mkdtemp(prefix="bench-retail-"))
    os.chdir(root)
    settings = load_settings(env={"CMLE_MODEL_SPEC": SPEC})
    print(f"project {root}; {args.users:,} visitors, {args.weeks} weeks; OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    written = retail.write_export(root / "export", users=args.users, weeks=args.weeks, seed=args.seed)
    print(f"  export     {time.perf_counter() - started:7.1f} s  {written['events']:,} events, "
          f"{written['profiles']:,} profiles", flush=True)
    for kind in ("events", "profiles"):
        started = time.perf_counter()
        out = run_stage("load", settings, {"files": str(root / "export" / kind), "kind": kind})
        print(f"  load {kind:<9} {time.perf_counter() - started:5.1f} s  {out['rows_loaded']:,} rows", flush=True)

    walls, out = [], {}
    for i in range(args.repeats):
        started = time.perf_counter()
        out = run_stage("featurize", settings, {"rebuild": True})
        walls.append(time.perf_counter() - started)
    f = out
    print(f"  featurize  {statistics.median(walls):7.1f} s median of {args.repeats} (stage wall time: checks, "
          f"auto types, training and scoring sets); training set {f['training_seconds']:.2f} s, scoring set "
          f"{f['scoring_seconds']:.2f} s; {f['training_rows']:,} rows x {f['training_features']} features, "
          f"{f['training_positives']:,} positives", flush=True)
    run_stage("export", settings, {})
    started = time.perf_counter()
    t = run_stage("train", settings, {})
    train_wall = time.perf_counter() - started
    m = mlflow.get_run(t["training_run_id"]).data.metrics
    events = f["n_events"]
    print()
    print(f"{'':<34} {'value':>10}")
    rows = [
        ("events", f"{events:,}"),
        ("featurize, stage (median s)", f"{statistics.median(walls):.2f}"),
        ("featurize, training set CTAS (s)", f"{f['training_seconds']:.2f}"),
        ("training set events/s (M)", f"{events / f['training_seconds'] / 1e6:.2f}"),
        ("train, stage (s)", f"{train_wall:.1f}"),
        ("model family", t["family"]),
        ("holdout rows / base rate", f"{int(m['holdout_rows']):,} / {m['baseline_rate']:.3f}"),
        ("model ROC-AUC", f"{m['holdout_roc_auc']:.4f}"),
        ("model PR-AUC", f"{m['holdout_pr_auc']:.4f}"),
        ("model ECE", f"{m['holdout_ece']:.4f}"),
        ("baseline: recent activity ROC-AUC", f"{m['baseline_activity_roc_auc']:.4f}"),
        ("margin (ROC-AUC points)", f"{m['auc_margin']:+.4f}"),
        ("model log loss", f"{m['holdout_log_loss']:.4f}"),
        ("baseline: base rate log loss", f"{m['baseline_log_loss']:.4f}"),
        ("log-loss skill (1 - model/base)", f"{m['log_loss_skill']:.3f}"),
    ]
    for name, value in rows:
        print(f"{name:<34} {value:>10}")
    if not args.keep:
        import shutil

        os.chdir("/")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
