"""Scoring throughput and peak memory of the `score` path, against raw ``predict_proba``.

    python bench/bench_scoring.py [--rows 1000000] [--repeat 3] [--mem-rows 10000000]
                                  [--family hgb] [--batch-rows 100000] [--threads 2]

1. Fits a representative model with the training code (``cmle.model``: the ``--family``
   pipeline, calibrated) on synthetic feature rows shaped like featurize's output (74
   features: event counts and windows, minutes-since with NULLs, rates, profile numerics
   and 3 categoricals), and registers it as the real pyfunc (``cmle.model.artifact``),
   alias ``champion``.
2. Throughput, in one process on the same ``--rows`` rows, median of ``--repeat``:
   *raw* = ``estimator.predict_proba`` of the fitted sklearn model on the rows already
   in memory as the model's prepared frame; *score path* =
   :func:`cmle.scoring.batch.score_export` with the loaded pyfunc, Parquet export in,
   Parquet score files out (record batches of ``--batch-rows``). Goal: ≥ 0.8× raw.
3. Peak memory: one subprocess writes a ``--mem-rows`` scoring export in chunks; a fresh
   subprocess scores it through the same path and reports its peak RSS (``VmHWM`` from
   ``/proc/self/status``). Goal: ≤ 1.5 GB at 10 M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THROUGHPUT_GOAL = 0.8
MEMORY_GOAL_MB = 1536
MODEL_NAME = "bench_propensity_model"
EXPORT_PATH, IMPORT_PATH, DATASET = "cmle/egress", "cmle/ingress", "bench_scoring_set"
CHUNK_ROWS = 500_000


# --- synthetic feature rows -------------------------------------------------------------
def feature_chunk(n: int, seed: int, first_id: int = 0):
    """``n`` feature rows shaped like featurize's scoring set (Arrow), with a latent label."""
    import numpy as np
    import pyarrow as pa

    from cmle.features.spec import EVENT_FEATURES, FeatureSpec

    rng = np.random.default_rng(seed)
    windows = FeatureSpec().recent_windows
    engagement = rng.gamma(1.5, 1.0, n)  # a latent per-profile activity level
    cols: dict[str, pa.Array] = {}
    totals, recencies = [], []
    for i, f in enumerate(EVENT_FEATURES):
        total = rng.poisson(engagement * (3.0 / (1 + i % 5)))
        cols[f.count] = pa.array(total, pa.int64())
        thinned = total
        for w in sorted(windows, reverse=True):  # 28d ⊇ 14d ⊇ 7d
            thinned = rng.binomial(thinned, w / (w + 14.0))
            cols[f"{f.count}_{w}d"] = pa.array(thinned, pa.int64())
        minutes = rng.uniform(0, 56 * 1440, n)
        cols[f.recency] = pa.array(minutes, pa.float64(), mask=total == 0)  # NULL: never happened
        totals.append(total)
        recencies.append(np.where(total == 0, np.inf, minutes))
    events = np.sum(totals, axis=0)
    cols["events"] = pa.array(events, pa.int64())
    for w in windows:
        cols[f"events_{w}d"] = pa.array(sum(cols[f"{f.count}_{w}d"].to_numpy() for f in EVENT_FEATURES), pa.int64())
    cols["active_days"] = pa.array(np.minimum(events, rng.integers(0, 57, n)), pa.int64())
    last = np.min(recencies, axis=0)
    cols["minutes_since_last_event"] = pa.array(np.where(np.isinf(last), 0, last), pa.float64(), mask=events == 0)
    cols["minutes_since_first_event"] = pa.array(np.where(np.isinf(last), 0, last) + rng.uniform(0, 20000, n),
                                                 pa.float64(), mask=events == 0)
    sent = totals[0]
    opened, clicked = totals[1], totals[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["email_open_rate"] = pa.array(opened / sent, pa.float64(), mask=sent == 0)
        cols["email_click_rate"] = pa.array(clicked / sent, pa.float64(), mask=sent == 0)
    cols["age"] = pa.array(rng.integers(18, 80, n), pa.int64(), mask=rng.random(n) < 0.05)
    cols["tenure_days"] = pa.array(rng.integers(0, 2000, n), pa.int64())
    cols["gender"] = pa.array(rng.choice(["female", "male", "unknown"], n), pa.string(), mask=rng.random(n) < 0.05)
    cols["region"] = pa.array(rng.choice([f"region_{k}" for k in range(10)], n), pa.string())
    cols["loyaltyTier"] = pa.array(rng.choice(["none", "bronze", "silver", "gold"], n, p=[.55, .25, .15, .05]),
                                   pa.string())
    logit = (-3.5 + 0.35 * np.log1p(totals[2]) + 0.25 * np.log1p(totals[3]) + 0.4 * np.log1p(totals[10])
             - 0.00002 * np.where(np.isinf(last), 80000, last) + 0.5 * (cols["loyaltyTier"].to_numpy(False) == "gold"))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    head = {
        "userid": pa.array([f"ecid-{i:010d}" for i in range(first_id, first_id + n)], pa.string()),
        "snapshot_ts": pa.array(np.full(n, np.datetime64("2026-01-01T00:00:00", "us")), pa.timestamp("us", "UTC")),
    }
    return pa.table({**head, **cols}), label


def write_export(root: str, rows: int, seed: int = 7) -> str:
    """A scoring export of ``rows`` rows in the AEP layout, written in chunks; its folder URL."""
    import pyarrow.parquet as pq

    from cmle import storage

    with storage.atomic_export_folder(root, EXPORT_PATH, DATASET) as (folder, export_time):
        writer = None
        for start in range(0, rows, CHUNK_ROWS):
            table, _ = feature_chunk(min(CHUNK_ROWS, rows - start), seed + start, first_id=start)
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(folder, "part-00000.parquet"), table.schema,
                                          compression="snappy")
            writer.write_table(table, row_group_size=131_072)
        writer.close()
    return storage.join(storage.dataset_folder(root, EXPORT_PATH, DATASET), f"exportTime={export_time}")


# --- the model -------------------------------------------------------------------------
FAMILY_PARAMS = {
    "hgb": {"family": "hgb", "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 40,
            "l2_regularization": 1.0, "max_features": 1.0, "class_weight": None},
    "logreg": {"family": "logreg", "C": 1.0, "transform": "log", "class_weight": None},
}


def fit_and_register(work: Path, family: str, train_rows: int = 60_000):
    """Fit the family's calibrated pipeline as `train` does; register it; return (estimator, spec)."""
    import mlflow

    from cmle.columns import LABEL_COLUMN
    from cmle.model import artifact, fit, scoring
    from cmle.model.preprocess import FeatureSpec

    table, label = feature_chunk(train_rows, seed=1)
    frame = table.to_pandas()
    frame[LABEL_COLUMN] = label
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, 0.2, 0.2, seed=0)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    estimator = fit.fit_calibrated(FAMILY_PARAMS[family], spec, xy(parts.train), xy(parts.valid), seed=0,
                                   n_jobs=int(os.environ["OMP_NUM_THREADS"]))
    hold_x, _ = xy(parts.holdout)
    reference = scoring.Reference.from_propensities(estimator.predict_proba(hold_x)[:, 1])
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    # Artifacts in the work folder too (the default, ./mlruns, is the working directory).
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "bench-scoring", artifact_location=(work / "artifacts").as_uri()))
    with mlflow.start_run(run_name=f"bench-{family}"):
        info = artifact.log_model(estimator, spec, reference, artifact.input_example(spec, parts.holdout),
                                  {"family": family}, registered_model_name=MODEL_NAME)
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)
    return estimator, spec


def score_path(root: str, source_url: str, batch_rows: int, model=None):
    """One score run through the stage's path: resolve, load, score_export; returns (run, load seconds)."""
    from cmle import storage
    from cmle.scoring import batch, model_ref

    ref = model_ref.resolve(MODEL_NAME, "champion")
    started = time.perf_counter()
    model = model or model_ref.load(ref)
    loaded = time.perf_counter() - started
    source = storage.ExportFolder(url=source_url, export_time=source_url.rsplit("=", 1)[-1])
    run = batch.score_export(model, ref, source, root, IMPORT_PATH, "bench_scores", batch_rows=batch_rows,
                             compression="snappy")
    return run, loaded, model


# --- children (fresh processes for memory) ----------------------------------------------
def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the process's own address space; Linux's
    ``ru_maxrss`` survives exec, so a child would report its parent's peak at fork time."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
    rss = _status_mb("VmRSS")
    return float("nan") if rss is None else rss


def child(args) -> None:
    work = Path(args.work)
    if args.child == "write":
        url = write_export(str(work / "landing"), args.mem_rows)
        print(json.dumps({"url": url, "peak_rss_mb": peak_rss_mb()}))
        return
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    from cmle.scoring import model_ref

    model = model_ref.load(model_ref.resolve(MODEL_NAME, "champion"))
    before = current_rss_mb()
    started = time.perf_counter()
    run, _, _ = score_path(str(work / "landing"), args.url, args.batch_rows, model=model)
    print(json.dumps({"rows": run.rows, "seconds": time.perf_counter() - started, "rss_before_mb": before,
                      "peak_rss_mb": peak_rss_mb(), "files": len(run.files)}))


def run_child(work: Path, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--work", str(work), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-5000:])
        raise SystemExit(f"child {' '.join(extra)} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- main -------------------------------------------------------------------------------
def throughput(work: Path, rows: int, repeat: int, batch_rows: int, family: str) -> dict:
    import pyarrow.parquet as pq

    from cmle import storage

    estimator, spec = fit_and_register(work, family)
    root = str(work / "landing")
    url = write_export(root, rows)
    frame = spec.prepare(pq.read_table(storage.part_files(url)[0]).to_pandas())  # the rows, in memory
    raw, path, raw_cpu, path_cpu = [], [], [], []
    model = None
    for _ in range(repeat):  # interleaved, so both see the same machine load
        started, cpu = time.perf_counter(), time.process_time()
        estimator.predict_proba(frame)[:, 1]
        raw.append(time.perf_counter() - started)
        raw_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        run, _, model = score_path(root, url, batch_rows, model=model)
        path.append(time.perf_counter() - started)
        path_cpu.append(time.process_time() - cpu)
        shutil.rmtree(run.url)  # keep the disk tidy; each repetition writes a new run
    med = statistics.median
    return {"rows": rows, "raw_s": med(raw), "path_s": med(path), "raw_cpu": med(raw_cpu), "path_cpu": med(path_cpu),
            "url": url, "raw_all": raw, "path_all": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for the throughput comparison")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mem-rows", type=int, default=10_000_000, help="rows for the peak-memory run (0 = skip)")
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--family", choices=sorted(FAMILY_PARAMS), default="hgb")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: 2, or as set)")
    ap.add_argument("--child", choices=["write", "score"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.child:
        child(args)
        return

    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    try:
        print(f"bench_scoring: family={args.family}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
              f"batch_rows={args.batch_rows:,}, repeat={args.repeat}, cores={os.cpu_count()}")
        t = throughput(work, args.rows, args.repeat, args.batch_rows, args.family)
        ratio = t["raw_s"] / t["path_s"]
        print()
        print(f"throughput on {t['rows']:,} rows (median of {args.repeat}; same model, same process)")
        print(f"  {'':44s} {'seconds':>8s} {'rows/s':>12s}")
        print(f"  {'raw predict_proba, in-memory prepared frame':44s} {t['raw_s']:8.2f} "
              f"{t['rows'] / t['raw_s']:12,.0f}")
        print(f"  {'score path: pyfunc, Parquet in -> Parquet out':44s} {t['path_s']:8.2f} "
              f"{t['rows'] / t['path_s']:12,.0f}")
        print(f"  throughput ratio score path / raw (wall): {ratio:.2f}x   (goal >= {THROUGHPUT_GOAL}x: "
              f"{'met' if ratio >= THROUGHPUT_GOAL else 'NOT met'})")
        print(f"  same ratio in process CPU seconds (less sensitive to other load): "
              f"{t['raw_cpu'] / t['path_cpu']:.2f}x  (raw {t['raw_cpu']:.2f} s, path {t['path_cpu']:.2f} s)")
        print(f"  all runs (wall s): raw {[round(x, 2) for x in t['raw_all']]}, "
              f"path {[round(x, 2) for x in t['path_all']]}; load average {os.getloadavg()[0]:.1f}")
        if args.mem_rows:
            print()
            w = run_child(work, "--child", "write", "--mem-rows", str(args.mem_rows))
            shutil.rmtree(t["url"], ignore_errors=True)
            m = run_child(work, "--child", "score", "--url", w["url"], "--batch-rows", str(args.batch_rows))
            print(f"peak memory scoring {m['rows']:,} rows in a fresh process (batch_rows={args.batch_rows:,})")
            print(f"  RSS after imports and model load: {m['rss_before_mb']:8.0f} MB")
            print(f"  peak RSS:                         {m['peak_rss_mb']:8.0f} MB   (goal <= {MEMORY_GOAL_MB} MB: "
                  f"{'met' if m['peak_rss_mb'] <= MEMORY_GOAL_MB else 'NOT met'})")
            print(f"  wall time: {m['seconds']:.1f} s ({m['rows'] / m['seconds']:,.0f} rows/s), "
                  f"{m['files']} score files")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
