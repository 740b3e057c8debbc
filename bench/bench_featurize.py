"""Featurization throughput on DuckDB, the local platform's query engine.

For each size, generates the synthetic data (:func:`cmle.synthetic.generate`, 10 weeks,
seeded), ingests it into a fresh local platform as the ``synthetic`` stage does, then
times the CTAS of:

* ``pit``  - the point-in-time training set (this package's feature SQL, 74 features);
* ``pit, no windows`` - the same with ``windows=""`` (35 features: no 7/14/28-day counts),
  to show what the recent-window counts cost;
* ``score``- the point-in-time scoring set ("now", every not-yet-converted profile);
* ``cmle`` - the baseline: the CMLE notebooks' running-window SQL (framing ``cmle``,
  14 window features over every event row), on the same data in the same run;
* ``floor`` - events counted per profile (one aggregate): what the machine does at best
  right now, to read the others against (the machine is shared).

Throughput is events in the dataset divided by the median CTAS time over ``--repeats``
runs (a CTAS reads the events, computes, and writes the Parquet result). The goal is
at least 2M events/s.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_featurize.py --profiles 100000 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

from cmle import naming  # noqa: E402
from cmle.features import render  # noqa: E402
from cmle.features.spec import FeatureSpec  # noqa: E402
from cmle.ingestion import ingest_tables  # noqa: E402
from cmle.platform.local import LocalPlatform  # noqa: E402
from cmle.stages.synthetic import FILE_ROWS, datasets  # noqa: E402
from cmle.synthetic import generate  # noqa: E402

GOAL = 2_000_000  # events per second
OWNER = "bench"


def load(platform: LocalPlatform, n_profiles: int, seed: int, end: str):
    """Generate and ingest the synthetic data; returns (events dataset, profiles dataset, data)."""
    data = generate(n_profiles, weeks=10, end=end, seed=seed, tenant=platform.tenant_id)
    events, profiles = datasets(platform, OWNER)
    ingest_tables(platform, events.id, data.iter_event_tables(FILE_ROWS), key="bench", replace=True,
                  file_prefix="events")
    ingest_tables(platform, profiles.id, data.iter_profile_tables(FILE_ROWS), key="bench", replace=True,
                  file_prefix="profiles")
    return events, profiles, data


def time_ctas(platform: LocalPlatform, name: str, sql: str, repeats: int) -> tuple[float, int]:
    """Median seconds of the CTAS over ``repeats`` runs, and the rows it produced."""
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        ds = platform.create_table_as(name, sql)
        times.append(time.perf_counter() - started)
        rows = platform.read_dataset(ds.id, columns=["userid"]).num_rows
    return statistics.median(times), rows


def bench(n_profiles: int, repeats: int, threads: int, seed: int, end: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="cmle-bench-") as root:
        platform = LocalPlatform(root, threads=threads)
        started = time.perf_counter()
        events, profiles, data = load(platform, n_profiles, seed, end)
        print(f"  {n_profiles:,} profiles: {data.n_events:,} events generated and ingested in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        now = dt.datetime.combine(data.window_end.date(), dt.time(0), tzinfo=dt.timezone.utc)
        if data.window_end > now:
            now += dt.timedelta(days=1)
        fs = FeatureSpec()
        t = now - dt.timedelta(days=fs.outcome_days)
        tenant = platform.tenant_id
        queries = {
            "pit": render.feature_query("training", events.table, profiles.table, tenant, t, fs),
            "pit, no windows": render.feature_query("training", events.table, profiles.table, tenant, t,
                                                    FeatureSpec(windows=())),
            "score": render.feature_query("scoring", events.table, profiles.table, tenant, now, fs),
            "cmle (baseline)": render.feature_query("training", events.table, profiles.table, tenant,
                                                    framing="cmle"),
        }
        floor = (f"SELECT _{tenant}.userid AS userid, COUNT(*) AS events FROM {render.quote_table(events.table)} "
                 f"GROUP BY _{tenant}.userid")
        results = []
        jobs = [(label, q.sql, len(q.feature_columns)) for label, q in queries.items()] + [("floor", floor, 1)]
        for label, sql, n_features in jobs:
            name = naming.table_name(f"cmle_bench_{label}_{OWNER}")
            seconds, rows = time_ctas(platform, name, sql, repeats)
            results.append({"profiles": n_profiles, "events": data.n_events, "query": label, "seconds": seconds,
                            "rows": rows, "features": n_features, "events_per_s": data.n_events / seconds})
            print(f"    {label:<16} {seconds:7.2f} s  {data.n_events / seconds / 1e6:6.2f} M events/s", flush=True)
        platform.close()
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (the machine has 2 cores)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", default="2025-06-01", help="end of the 10 simulated weeks")
    args = parser.parse_args(argv)
    print(f"featurize throughput on DuckDB ({args.threads} threads), median of {args.repeats} runs; "
          f"goal >= {GOAL / 1e6:.0f}M events/s; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for n in args.profiles:
        rows += bench(n, args.repeats, args.threads, args.seed, args.end)
    print()
    print(f"{'profiles':>10} {'events':>12} {'query':<16} {'features':>8} {'rows':>9} {'median s':>9} "
          f"{'M events/s':>11} {'vs baseline':>11} {'goal':>5}")
    for r in rows:
        base = next(b for b in rows if b["profiles"] == r["profiles"] and b["query"].startswith("cmle"))
        print(f"{r['profiles']:>10,} {r['events']:>12,} {r['query']:<16} {r['features']:>8} {r['rows']:>9,} "
              f"{r['seconds']:>9.2f} {r['events_per_s'] / 1e6:>11.2f} {base['seconds'] / r['seconds']:>10.1f}x "
              f"{'yes' if r['events_per_s'] >= GOAL else 'no':>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
