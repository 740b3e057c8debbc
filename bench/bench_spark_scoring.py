"""Spark-local scoring throughput (``mlflow.pyfunc.spark_udf``) next to the in-process path, on the same rows.

    python bench/bench_spark_scoring.py [--rows 200000] [--repeat 3] [--family logreg] [--master local[2]]

1. Fits and registers the real pyfunc as ``bench/bench_scoring.py`` does (the ``--family``
   pipeline, calibrated, 74 features) and writes a ``--rows`` scoring export (AEP layout).
2. Times, median of ``--repeat``, on the same export and the same registered version:
   *in-process*  = :func:`cmle.scoring.batch.score_export` (pandas record batches; the local
   ``score`` path), Parquet in -> score files out;
   *Spark struct* = :func:`cmle.engines.spark_scoring.score_export` (``engine = spark``):
   ``spark_udf`` returning the five-column struct, each task writing its score files;
   *Spark double* = the one-column path, ``spark_udf(result_type="double")`` for the
   propensity alone, computed and discarded (``noop`` sink), the cheapest a UDF can do.
   Spark's session start and the ``spark_udf`` set-up are timed apart (they are paid once).
3. Checks that both paths wrote the same score rows.

A reference figure, not a goal: on one 2-core machine Spark pays for its JVM, Arrow
transfers and Python workers; it is the path for a cluster, the in-process path for one node.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_scoring as base  # noqa: E402 - the shared model and export set-up


def median_time(fn, repeat: int) -> tuple[float, list[float], object]:
    """Median seconds of ``fn()`` over ``repeat`` calls, all times, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--family", choices=sorted(base.FAMILY_PARAMS), default="logreg")
    ap.add_argument("--batch-rows", type=int, default=100_000, help="record batch rows of the in-process path")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()

    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import pandas as pd

    from cmle import storage
    from cmle.engines import spark_scoring
    from cmle.scoring import batch, model_ref

    work = Path(tempfile.mkdtemp(prefix="bench-spark-scoring-"))
    try:
        print(f"bench_spark_scoring: family={args.family}, rows={args.rows:,}, repeat={args.repeat}, "
              f"master={args.master}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, cores={os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}")
        base.fit_and_register(work, args.family)
        root = str(work / "landing")
        url = base.write_export(root, args.rows)
        source = storage.ExportFolder(url=url, export_time=url.rsplit("=", 1)[-1])
        ref = model_ref.resolve(base.MODEL_NAME, "champion")
        model = model_ref.load(ref)
        where = (root, base.IMPORT_PATH, "bench_scores")

        local_s, local_all, local_run = median_time(
            lambda: batch.score_export(model, ref, source, *where, batch_rows=args.batch_rows), args.repeat)

        started = time.perf_counter()
        from cmle.spark import get_spark

        spark = get_spark(master=args.master)
        spark.range(1).count()
        session_s = time.perf_counter() - started
        spark_s, spark_all, spark_run = median_time(
            lambda: spark_scoring.score_export(ref, source, *where, spark=spark, model=model), args.repeat)
        inputs = batch.check_columns(batch.export_schema(url), model, ref.uri)
        started = time.perf_counter()
        frame = spark_scoring.score_frame(spark, model, ref, url, inputs, ("propensity",))
        udf_s = time.perf_counter() - started
        double_s, double_all, _ = median_time(
            lambda: frame.write.format("noop").mode("overwrite").save(), args.repeat)

        a = storage.read_export(local_run.url).to_pandas().drop(columns="score_date").sort_values("userid")
        b = storage.read_export(spark_run.url).to_pandas().drop(columns="score_date").sort_values("userid")
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))

        n = args.rows
        print()
        print(f"scoring {n:,} rows with {ref.uri} (median of {args.repeat}; the same export and model version)")
        print(f"  {'path':58s} {'seconds':>8s} {'rows/s':>11s} {'vs in-process':>14s}")
        for label, secs in (
                ("in-process: pyfunc on pandas batches, Parquet -> score files", local_s),
                ("Spark local: spark_udf struct, Parquet -> score files", spark_s),
                ("Spark local: spark_udf double (propensity only), no write", double_s)):
            print(f"  {label:58s} {secs:8.2f} {n / secs:11,.0f} {local_s / secs:13.2f}x")
        print(f"  once per process: Spark session start {session_s:.1f} s, spark_udf set-up {udf_s:.1f} s")
        print(f"  all runs: in-process {[round(x, 2) for x in local_all]}, struct {[round(x, 2) for x in spark_all]}, "
              f"double {[round(x, 2) for x in double_all]}")
        print(f"  score rows identical on both paths: yes ({len(b):,} rows)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
