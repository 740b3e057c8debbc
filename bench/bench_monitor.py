"""The lifecycle at full size: explaining vs scoring time, monitoring time, expected vs actual.

    python bench/bench_monitor.py [--profiles 100000] [--repeat 3] [--shift_events 1.0]

In a fresh folder (embedded platform, sqlite MLflow), with the defaults of `main`:

1. ``main`` (synthetic 10 weeks to 2024-06-01, featurize, export, train, promote, score,
   ingest, monitor; explore and audience skipped).
2. Scoring time against explaining time, median of ``--repeat``: ``score`` with
   ``rescore=true`` and ``factors=0`` (the baseline: scoring alone), then with the default
   ``factors=3`` (its ``explain_seconds`` and ``score_seconds`` metrics, and the stage time).
3. Time moves forward: ``synthetic extend_weeks=2`` (the outcome window), then ``main``
   again with ``retrain=auto`` (featurize, export, score, ingest, monitor of the new end).
4. ``monitor`` ``--repeat`` times (median ``monitor_seconds``, ``drift_seconds``), and the
   expected-vs-actual table of the first score run, as ``monitor`` logged it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _metrics(run_id: str) -> dict:
    import mlflow

    return mlflow.get_run(run_id).data.metrics


def _last_run(stage: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name("cmle")
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`cmle.stage` = '{stage}'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return runs[0].info.run_id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shift_events", type=float, default=1.0)
    parser.add_argument("--shift_conversion", type=float, default=0.0)
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    import mlflow
    import pandas as pd

    from cmle.config import load_settings
    from cmle.runner import run_stage

    work = Path(tempfile.mkdtemp(prefix="cmle-bench-monitor-"))
    os.chdir(work)
    settings = load_settings(env={})
    base = {"profiles": args.profiles, "end_date": "2024-06-01", "skip": "explore,audience"}
    started = time.perf_counter()
    first = run_stage("main", settings, base)
    print(f"main ({args.profiles:,} profiles): {time.perf_counter() - started:.1f} s; model "
          f"v{first['score']['model_version']} ({first['train'].get('family')}), {first['score']['rows']:,} "
          "profiles scored")

    plain, explained, explain, score_part = [], [], [], []
    for _ in range(args.repeat):
        run_stage("score", settings, {"rescore": True, "factors": 0})
        plain.append(_metrics(_last_run("score"))["stage_seconds"])
        run_stage("score", settings, {"rescore": True})
        m = _metrics(_last_run("score"))
        explained.append(m["stage_seconds"])
        explain.append(m["explain_seconds"])
        score_part.append(m["score_seconds"])
    med = statistics.median
    print(f"\nscore, {first['score']['rows']:,} profiles, median of {args.repeat}:")
    print(f"  {'scoring alone (factors=0), stage':44s} {med(plain):7.2f} s")
    print(f"  {'scoring with factors=3, stage':44s} {med(explained):7.2f} s")
    print(f"  {'  of which explaining (explain_seconds)':44s} {med(explain):7.2f} s")
    print(f"  {'  of which the rest (score_seconds)':44s} {med(score_part):7.2f} s")
    print(f"  {'explaining / scoring alone':44s} {med(explain) / med(plain):7.2f}x")

    ext = run_stage("synthetic", settings, {"profiles": args.profiles, "end_date": "2024-06-01", "extend_weeks": 2,
                                            "shift_events": args.shift_events,
                                            "shift_conversion": args.shift_conversion})
    print(f"\nsynthetic extend_weeks=2: {ext['extension_events']:,} events, {ext['extension_conversions']:,} "
          f"conversions, data to {ext['data_end']}")
    second = run_stage("main", settings, {**base, "retrain": "auto", "skip": "synthetic,explore,audience"})
    print(f"main retrain=auto: train {'skipped (' + second['train'].get('skip_reason', '') + ')' if second['train'].get('skipped') else 'ran'}")

    seconds, drift_s = [], []
    for _ in range(args.repeat):
        mon = run_stage("monitor", settings, {})
        seconds.append(mon["monitor_seconds"])
        drift_s.append(mon["drift_seconds"])
    print(f"\nmonitor, median of {args.repeat}: {med(seconds):.2f} s (drift {med(drift_s):.2f} s, realised outcomes "
          f"{med(seconds) - med(drift_s):.2f} s)")
    print(f"  psi_score {mon['psi_score']:.4f}, psi_max_feature {mon['psi_max_feature']:.4f} "
          f"({mon.get('psi_max_feature_name')}), drift level {mon['drift_level']}")
    print(f"  ripe runs {mon['ripe_runs']}, pending {mon['pending_runs']}; realised AUC {mon['realised_auc']:.4f}, "
          f"ECE {mon['realised_ece']:.4f}; retrain due: {mon['retrain_due']} ({mon['retrain_reason']})")
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=_last_run("monitor"),
                                                            artifact_path="monitor/expected_vs_actual.csv"))
    shown = table[table["group"].isin(["bucket", "decile", "all"])][
        ["group", "value", "profiles", "positives", "expected_rate", "actual_rate", "ci_low", "ci_high"]]
    print(f"\nexpected vs actual, score run {mon['realised']['score_export_time']} "
          f"(window {mon['realised']['window_start'][:10]} .. {mon['realised']['window_end'][:10]}):")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwork folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
