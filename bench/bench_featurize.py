"""Featurization throughput on DuckDB, the local platform's query engine.

For each size, generates the synthetic data (:func:`cmle.synthetic.generate`, 10 weeks,
seeded), ingests it into a fresh local platform as the ``synthetic`` stage does, then
times the CTAS of:

* ``pit``  - the point-in-time training set (this package's feature SQL, 74 features);
* ``pit, no windows`` - the same without recent windows (35 features: no 7/14/28-day counts),
  to show what the recent-window counts cost;
* ``score``- the point-in-time scoring set ("now", every not-yet-converted profile);
* ``cmle`` - the baseline: the CMLE notebooks' running-window SQL (framing ``cmle``,
  14 window features over every event row), on the same data in the same run;
* ``floor`` - events counted per profile (one aggregate): what the machine does at best
  right now, to read the others against (the machine is shared);
* with ``--baseline DIR``: ``pit @ baseline`` and ``score @ baseline`` - the SQL that the
  package in DIR (e.g. a checkout of main) renders for the same sets, timed here on the same
  data, interleaved with ``pit`` and ``score`` repeat by repeat, so the ratio compares code,
  not moments of a shared machine.

``pit`` and ``score`` are rendered from the synthetic data's model spec
(``conf/models/synthetic.yaml``, the default).

Throughput is events in the dataset divided by the median CTAS time over ``--repeats``
runs (a CTAS reads the events, computes, and writes the Parquet result). The goal is
at least 2M events/s.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_featurize.py --profiles 100000 1000000
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_featurize.py --profiles 100000 --baseline /work/main
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


_RENDER = """
import datetime as dt, json, sys
from cmle.features import render
a = json.loads(sys.argv[1])
t = dt.datetime.fromisoformat(a["t"])
out = {k: render.feature_query(k, a["events"], a["profiles"], a["tenant"], dt.datetime.fromisoformat(a[k])).sql
       for k in ("training", "scoring")}
print(json.dumps(out))
"""


def baseline_sql(folder: str, events: str, profiles: str, tenant: str, t: dt.datetime, now: dt.datetime) -> dict:
    """The training and scoring SQL the package in ``folder`` renders (run with that code)."""
    args = json.dumps({"events": events, "profiles": profiles, "tenant": tenant, "t": t.isoformat(),
                       "training": t.isoformat(), "scoring": now.isoformat()})
    python = Path(folder) / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(Path(folder).resolve())}
    done = subprocess.run([str(python if python.exists() else sys.executable), "-c", _RENDER, args],
                          capture_output=True, text=True, env=env, cwd=folder, check=True)
    return json.loads(done.stdout)


def time_ctas(platform: LocalPlatform, jobs: list[tuple[str, str]], repeats: int) -> dict[str, tuple[float, int]]:
    """Median seconds of each CTAS ``(name, sql)`` over ``repeats`` rounds (the jobs interleaved
    round by round, so a busy moment of the machine hits all of them), and the rows it produced."""
    times: dict[str, list[float]] = {name: [] for name, _ in jobs}
    rows: dict[str, int] = {}
    for _ in range(repeats):
        for name, sql in jobs:
            started = time.perf_counter()
            ds = platform.create_table_as(name, sql)
            times[name].append(time.perf_counter() - started)
            rows[name] = platform.read_dataset(ds.id, columns=["userid"]).num_rows
    return {name: (statistics.median(t), rows[name]) for name, t in times.items()}


def bench(n_profiles: int, repeats: int, threads: int, seed: int, end: str, baseline: str = "") -> list[dict]:
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
        jobs = [(label, q.sql, len(q.feature_columns)) for label, q in queries.items()] + [("floor", floor, 1)]
        if baseline:  # each right after its counterpart, so both meet the same moment of the machine
            old = baseline_sql(baseline, events.table, profiles.table, tenant, t, now)
            for label, kind in (("pit", "training"), ("score", "scoring")):
                at = next(i for i, job in enumerate(jobs) if job[0] == label)
                jobs.insert(at + 1, (f"{label} @ baseline", old[kind], len(queries[label].feature_columns)))
        names = {label: naming.table_name(f"cmle_bench_{label}_{OWNER}") for label, _, _ in jobs}
        timed = time_ctas(platform, [(names[label], sql) for label, sql, _ in jobs], repeats)
        results = []
        for label, _sql, n_features in jobs:
            seconds, rows = timed[names[label]]
            results.append({"profiles": n_profiles, "events": data.n_events, "query": label, "seconds": seconds,
                            "rows": rows, "features": n_features, "events_per_s": data.n_events / seconds})
            print(f"    {label:<16} {seconds:7.2f} s  {data.n_events / seconds / 1e6:6.2f} M events/s", flush=True)
        if baseline:
            for kind in ("pit", "score"):
                a, b = platform.find_dataset(names[kind]), platform.find_dataset(names[f"{kind} @ baseline"])
                same = _same_rows(platform.read_dataset(a.id), platform.read_dataset(b.id))
                print(f"    {kind}: the same rows as the baseline's: {same}", flush=True)
        platform.close()
        return results


def _same_rows(a, b) -> bool:
    import pandas as pd

    x, y = (t.to_pandas().sort_values("userid").reset_index(drop=True) for t in (a, b))
    if list(x.columns) != list(y.columns):
        return False
    try:
        pd.testing.assert_frame_equal(x, y, check_dtype=False, rtol=1e-12)
        return True
    except AssertionError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (the machine has 2 cores)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", default="2025-06-01", help="end of the 10 simulated weeks")
    parser.add_argument("--baseline", default="", help="a checkout of the package (with its .venv) whose feature "
                                                        "SQL to time side by side, e.g. /work/main")
    args = parser.parse_args(argv)
    print(f"featurize throughput on DuckDB ({args.threads} threads), median of {args.repeats} runs; "
          f"goal >= {GOAL / 1e6:.0f}M events/s; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for n in args.profiles:
        rows += bench(n, args.repeats, args.threads, args.seed, args.end, args.baseline)
    print()
    print(f"{'profiles':>10} {'events':>12} {'query':<16} {'features':>8} {'rows':>9} {'median s':>9} "
          f"{'M events/s':>11} {'vs baseline':>11} {'goal':>5}")
    for r in rows:
        base = next(b for b in rows if b["profiles"] == r["profiles"] and b["query"].startswith("cmle"))
        print(f"{r['profiles']:>10,} {r['events']:>12,} {r['query']:<16} {r['features']:>8} {r['rows']:>9,} "
              f"{r['seconds']:>9.2f} {r['events_per_s'] / 1e6:>11.2f} {base['seconds'] / r['seconds']:>10.1f}x "
              f"{'yes' if r['events_per_s'] >= GOAL else 'no':>5}")
    if args.baseline:
        print()
        for r in rows:
            if r["query"] in ("pit", "score"):
                old = next(b for b in rows if b["profiles"] == r["profiles"] and b["query"] == f"{r['query']} @ baseline")
                print(f"{r['profiles']:>10,} {r['query']:<6} this code {r['seconds']:.2f} s, baseline {old['seconds']:.2f} s:"
                      f" {100 * (r['seconds'] / old['seconds'] - 1):+.1f} % time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
