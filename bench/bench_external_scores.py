"""Ingesting a file of external scores (`ingest --scores`) against ingesting cmle's own
score run of the same profiles (the baseline), on the embedded platform.

    python bench/bench_external_scores.py [--rows 200000] [--repeat 3]

For each repeat, a fresh platform folder holds ``--rows`` profiles (valid ECIDs) in the
synthetic spec's profiles dataset; then, each in its own fresh scores dataset:

* *own run* (baseline): a score run written in the score files layout, then
  ``ingest --export_time``: read the run, one batch;
* *external CSV* / *external Parquet*: the same profiles' propensities in a DataRobot-style
  file (``customer_id``, ``PREDICTION``, mapped with ``scores_columns``), then
  ``ingest --scores``: read and check the file against the contract, look every id up in
  the profiles dataset (range queries), derive score / percentile / decile / bucket, one
  batch.

Prints the median seconds of each, side by side, the ratio to the baseline, and how many
queries the id lookup took.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def _settings(folder: Path, template: Path):
    from cmle.config import load_settings

    shutil.copyfile(template, folder / "mlflow.db")
    return load_settings(env={"CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
                              "CMLE_PLATFORM_LOCAL_ROOT": str(folder / "platform"),
                              "CMLE_CLOUD_STORAGE_URL": str(folder / "storage")})


def _profiles(settings, n: int) -> list[str]:
    from cmle.platform import get_platform
    from tests.scoring.external_files import make_profiles

    platform = get_platform(settings)
    try:
        return make_profiles(platform, n)
    finally:
        platform.close()


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import pandas as pd
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from cmle.runner import run_stage
    from cmle.scoring import known_ids
    from tests.scoring.external_files import propensities, write_parquet
    from tests.scoring.toy import make_scores, write_score_run

    queries = []
    real = known_ids.unknown_ids

    def counting(platform, *a, **kw):
        original = platform.query
        platform.query = lambda sql, **k: queries.append(sql) or original(sql, **k)
        try:
            return real(platform, *a, **kw)
        finally:
            platform.query = original

    known_ids.unknown_ids = counting
    times: dict[str, list[float]] = {"own run (baseline)": [], "external CSV": [], "external Parquet": []}
    lookups = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        template = tmp / "template.db"
        SqlAlchemyStore(f"sqlite:///{template}", str(tmp / "mlruns")).engine.dispose()
        for r in range(args.repeat):
            for i, name in enumerate(times):
                folder = tmp / f"{r}-{i}"  # a fresh platform, store and scores dataset for every measurement
                folder.mkdir()
                settings = _settings(folder, template)
                ids = _profiles(settings, args.rows)
                p = propensities(args.rows, seed=r)
                if name == "own run (baseline)":
                    export_time = write_score_run(settings, make_scores(ids=ids, seed=r))
                    params = {"export_time": export_time}
                else:
                    path = folder / ("predictions.csv" if "CSV" in name else "predictions.parquet")
                    if "CSV" in name:
                        pd.DataFrame({"customer_id": ids, "PREDICTION": np.round(p, 6)}).to_csv(path, index=False)
                    else:
                        write_parquet(path, {"customer_id": ids, "PREDICTION": p})
                    params = {"scores": str(path), "scores_columns": "userid=customer_id,propensity=PREDICTION"}
                before = len(queries)
                times[name].append(_timed(lambda: run_stage("ingest", settings, params)))
                lookups = max(lookups, len(queries) - before)
    print(f"ingest of {args.rows:,} scores on the embedded platform, median of {args.repeat}")
    print(f"{'path':<22}{'seconds':>10}{'vs baseline':>14}")
    base = statistics.median(times["own run (baseline)"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<22}{med:>10.2f}{med / base:>13.2f}x")
    print(f"id lookup: {lookups} queries for {args.rows:,} ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
