"""Benchmark of the synthetic data generator: the vectorised generator next to the per-user
reference implementation (the notebooks' approach), in one process.

Prints, per run: profiles, events, median seconds over repeats, events generated per second,
peak memory of one extra traced run, and the speed-up over the reference's events per
second. Goals (issue 2): at least 50x the reference; 1M profiles in under 30 s on 2 cores.

    .venv/bin/python bench/bench_synthetic.py                 # 100k and 1M profiles, ~2 minutes
    .venv/bin/python bench/bench_synthetic.py --sizes 100000 --repeats 3 --reference-users 5000

Timings are wall-clock; on a machine shared with other work they are noisy (the load average
is printed). Peak memory is measured with tracemalloc (numpy allocations are traced) in a
separate run, so the timed runs carry no tracing overhead.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: the generator does not use BLAS

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cmle.synthetic.reference import simulate_reference  # noqa: E402
from cmle.synthetic.simulate import generate  # noqa: E402

END = "2024-06-01"


@dataclass
class Row:
    name: str
    profiles: int
    events: int
    seconds: list[float]
    peak_mb: float
    events_per_profile: float
    conversion: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.events / self.median


def _measure(name: str, fn, profiles: int, repeats: int) -> Row:
    seconds, data = [], None
    for _ in range(repeats):
        data = None
        gc.collect()
        started = time.perf_counter()
        data = fn(profiles)
        seconds.append(time.perf_counter() - started)
    events, epp, conv = data.n_events, data.events_per_profile, data.conversion_rate
    del data
    gc.collect()
    tracemalloc.start()
    fn(profiles)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Row(name, profiles, events, seconds, peak / 2**20, epp, conv)


def _xdm_rate(profiles: int) -> tuple[float, int]:
    """Rows per second of building the events dataset's Arrow tables (500k-row pieces)."""
    data = generate(profiles, end=END)
    started = time.perf_counter()
    rows = sum(t.num_rows for t in data.iter_event_tables(500_000))
    return rows / (time.perf_counter() - started), rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="profiles of the vectorised runs, comma separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per size (median reported)")
    parser.add_argument("--reference-users", type=int, default=10_000, help="users of the per-user reference run")
    parser.add_argument("--reference-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {cpus} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in load)}")
    print(f"default model, 10 weeks ending {END}, seed 42; medians of {args.repeats} runs "
          f"({args.reference_repeats} for the reference)\n")

    generate(1000, end=END)  # warm-up (imports, first allocations)
    rows = [_measure("reference (per-user Python)", lambda n: simulate_reference(n, end=END),
                     args.reference_users, args.reference_repeats)]
    for n in sizes:
        rows.append(_measure("vectorised (numpy)", lambda k: generate(k, end=END), n, args.repeats))

    base = rows[0].rate
    header = (f"{'implementation':30s} {'profiles':>10s} {'events':>12s} {'median s':>9s} {'events/s':>12s} "
              f"{'peak MiB':>9s} {'speed-up':>9s} {'ev/profile':>10s} {'conv':>6s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.name:30s} {r.profiles:>10,d} {r.events:>12,d} {r.median:>9.2f} {r.rate:>12,.0f} "
              f"{r.peak_mb:>9.0f} {r.rate / base:>8.0f}x {r.events_per_profile:>10.2f} {r.conversion:>6.3f}")
    print()
    vec = rows[1:]
    if vec:
        worst = min(r.rate / base for r in vec)
        print(f"goal >= 50x the reference: {'met' if worst >= 50 else 'NOT met'} (lowest {worst:.0f}x)")
    million = [r for r in vec if r.profiles >= 1_000_000]
    for r in million:
        print(f"goal 1M profiles < 30 s: {'met' if r.median < 30 else 'NOT met'} ({r.median:.1f} s for "
              f"{r.profiles:,d} profiles)")
    if sizes:
        rate, n = _xdm_rate(min(sizes))
        print(f"\nXDM Arrow tables of the events dataset ({n:,d} rows): {rate:,.0f} rows/s "
              "(built piece by piece when the stage ingests; not part of 'generated')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
