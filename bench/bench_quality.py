"""Model quality off the defaults: model vs oracle over seeds, sizes and history lengths.

In one temporary project (local platform, sqlite MLflow, in-process stages) it runs, for
every cell of the grid, the real stages with their default parameters
``synthetic`` (profiles, weeks, seed; end date fixed) → ``featurize`` → ``export`` →
``train`` (``framing = pit``: the registered model alone, without the notebooks'-framing
comparison model; seed = the cell's seed), and prints one table:

* positives of the training set, the windows featurize chose (look-back + outcome days);
* holdout ROC-AUC of the model, of the oracle (the latent propensity at the snapshot, on the
  same holdout rows) and their ratio; ECE (10 equal-width bins); top-decile lift; train
  stage seconds (wall) and the chosen family;
* cells whose data fail featurize's checks (fewer than 500 positives, windows that do not
  fit) are listed with the refusal and left out of the summary; legacy cells have no valid
  oracle (see docs/model-quality.md), so no ratio.

Then the median and worst ratio and the largest ECE against the goals (median ratio ≥ 1.0,
no cell below 0.95, ECE ≤ 0.02 everywhere). For a cell that misses, the ratio's 90 %
interval from a paired bootstrap of its holdout rows says whether the miss is beyond
the holdout's noise.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_quality.py            # full grid (~25 min, 2 cores)
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_quality.py --quick    # development grid (~3 min)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402

from cmle.config import load_settings  # noqa: E402
from cmle.errors import CmleError  # noqa: E402
from cmle.model import metrics  # noqa: E402
from cmle.runner import run_stage  # noqa: E402

RATIO_MEDIAN_GOAL, RATIO_FLOOR, ECE_GOAL = 1.0, 0.95, 0.02
FULL = {"seeds": "1,2,3", "sizes": "20000,100000,300000", "weeks": "6,10,16", "legacy_size": 100_000}
QUICK = {"seeds": "1", "sizes": "20000,60000", "weeks": "6,10", "legacy_size": 20_000}


@dataclass
class Cell:
    profiles: int
    weeks: int
    seed: int
    legacy: bool = False
    status: str = "ok"  # ok | refused | failed
    note: str = ""
    values: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{'legacy ' if self.legacy else ''}{self.profiles // 1000}k/{self.weeks}w/s{self.seed}"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run_cell(settings, cell: Cell, end_date: str, train_params: dict) -> None:
    """The stages for one cell (their chatter silenced); fills ``cell.values`` or records the refusal."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _run_cell(settings, cell, end_date, train_params)


def _run_cell(settings, cell: Cell, end_date: str, train_params: dict) -> None:
    started = time.perf_counter()
    run_stage("synthetic", settings, {"profiles": cell.profiles, "weeks": cell.weeks, "seed": cell.seed,
                                      "legacy": cell.legacy, "end_date": end_date})
    try:
        feat = run_stage("featurize", settings, {"framing": "pit"})
    except CmleError as exc:  # data that fail the checks: refused, as a user would see it
        cell.status, cell.note = "refused", str(exc)
        return
    run_stage("export", settings, {})
    out = run_stage("train", settings, {"framing": "pit", "seed": cell.seed, "retrain": True, **train_params})
    run = mlflow.get_run(out["training_run_id"])
    m = run.data.metrics
    cell.values = {
        "positives": feat["training_positives"], "rows": feat["training_rows"],
        "windows": f"{feat['lookback_days']}+{feat['outcome_days']}",
        "holdout_positives": int(round(m["holdout_rows"] * m["holdout_base_rate"])),
        "auc": m["holdout_roc_auc"], "oracle": m.get("oracle_auc", float("nan")),
        "ratio": m.get("auc_ratio", float("nan")), "ece": m["holdout_ece"], "lift": m["holdout_lift_decile_1"],
        "train_s": out["train_seconds"], "family": out["family"], "run_id": out["training_run_id"],
        "model_uri": out["model_uri"], "cell_s": time.perf_counter() - started,
    }
    oracle_tag = run.data.tags.get("cmle.oracle", "")
    if oracle_tag.startswith("not valid"):
        cell.note = "no valid oracle (legacy generator: docs/model-quality.md)"


def ratio_interval(settings, cell: Cell, repeats: int = 200, seed: int = 0) -> tuple[float, float]:
    """90 % interval of model AUC / oracle AUC over bootstrap resamples of the cell's holdout."""
    import pandas as pd

    from cmle.model import artifact
    from cmle.stages.train import oracle_propensity

    path = mlflow.artifacts.download_artifacts(run_id=cell.values["run_id"], artifact_path="holdout/holdout.parquet")
    holdout = pd.read_parquet(path)
    model = mlflow.pyfunc.load_model(cell.values["model_uri"])
    # as score and promote feed it: the signature's columns, counts cast to double
    rows = artifact.conform_input(holdout.drop(columns=["label"]), model.metadata.get_input_schema())
    p = model.predict(rows)["propensity"].to_numpy()
    latent = oracle_propensity(settings, holdout)
    y = holdout["label"].to_numpy()
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(repeats):
        idx = rng.integers(0, len(y), len(y))
        ratios.append(metrics.roc_auc(y[idx], p[idx]) / metrics.roc_auc(y[idx], latent[idx]))
    lo, hi = np.nanquantile(ratios, [0.05, 0.95])
    return float(lo), float(hi)


def print_table(cells: list[Cell]) -> None:
    head = (f"{'cell':<20} {'windows':>7} {'positives':>9} {'model AUC':>9} {'oracle':>7} {'ratio':>6} "
            f"{'ECE':>6} {'lift@1':>6} {'train s':>7}  family / note")
    print(head)
    print("-" * len(head))
    for c in cells:
        if c.status != "ok":
            # a featurize refusal names its check in brackets: show from there
            note = c.note[c.note.find("["):] if c.status == "refused" and "[" in c.note else c.note
            print(f"{c.name:<20} {c.status}: {note[:110]}")
            continue
        v = c.values
        ratio = "-" if np.isnan(v["ratio"]) else f"{v['ratio']:.3f}"
        oracle = "-" if np.isnan(v["oracle"]) else f"{v['oracle']:.3f}"
        print(f"{c.name:<20} {v['windows']:>7} {v['positives']:>9,} {v['auc']:>9.3f} {oracle:>7} {ratio:>6} "
              f"{v['ece']:>6.4f} {v['lift']:>6.2f} {v['train_s']:>7.1f}  {v['family']}"
              f"{' / ' + c.note if c.note else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small development grid")
    parser.add_argument("--seeds")
    parser.add_argument("--sizes", help="profiles per cell, comma separated")
    parser.add_argument("--weeks", help="history lengths in weeks, comma separated")
    parser.add_argument("--legacy-size", type=int, help="profiles of the legacy cells (0: none)")
    parser.add_argument("--end-date", default="2024-06-01")
    parser.add_argument("--train", action="append", default=[], metavar="NAME=VALUE",
                        help="a train parameter for every cell (e.g. max_evals=32)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    args = parser.parse_args()
    grid = dict(QUICK if args.quick else FULL)
    for key in ("seeds", "sizes", "weeks", "legacy_size"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    train_params = dict(item.split("=", 1) for item in args.train)
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    for noisy in ("mlflow", "alembic", "cmle"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    seeds = _ints(grid["seeds"])
    cells = [Cell(n, w, s) for w in _ints(grid["weeks"]) for n in _ints(grid["sizes"]) for s in seeds]
    if int(grid["legacy_size"]):
        cells += [Cell(int(grid["legacy_size"]), 10, s, legacy=True) for s in seeds]

    root = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    os.chdir(root)
    settings = load_settings(env={})
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    print(f"project {root}; {len(cells)} cells; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
          f"{os.cpu_count()} cores; load {loads[0]:.1f}; train params {train_params or 'defaults'}", flush=True)
    for i, cell in enumerate(cells, 1):
        try:
            run_cell(settings, cell, args.end_date, train_params)
            v = cell.values
            # a miss gets its ratio's bootstrap interval now, while the project holds this
            # cell's data (the oracle is read from the current synthetic data)
            if v and not np.isnan(v["ratio"]) and (v["ratio"] < RATIO_FLOOR or v["ece"] > ECE_GOAL):
                lo, hi = ratio_interval(settings, cell)
                cell.note = (f"MISS: {v['holdout_positives']} holdout positives; ratio 90% bootstrap interval "
                             f"[{lo:.3f}, {hi:.3f}]")
        except Exception as exc:  # noqa: BLE001 - one failing cell must not lose the others
            cell.status, cell.note = "failed", f"{type(exc).__name__}: {exc}"
        loads.append(os.getloadavg()[0])
        v = cell.values
        print(f"  [{i}/{len(cells)}] {cell.name:<20} {cell.status:<8} "
              + (f"AUC {v['auc']:.3f} ratio {v['ratio']:.3f} ECE {v['ece']:.4f} {v['cell_s']:.0f} s"
                 if v else cell.note[:120]) + f"  (load {loads[-1]:.1f})", flush=True)
    wall = time.perf_counter() - started

    done = [c for c in cells if c.status == "ok"]
    rated = [c for c in done if not np.isnan(c.values["ratio"])]
    print()
    print_table(cells)
    print()
    if rated:
        ratios = [c.values["ratio"] for c in rated]
        worst = min(rated, key=lambda c: c.values["ratio"])
        median = statistics.median(ratios)
        ece = max(c.values["ece"] for c in done)
        print(f"ratio over {len(rated)} cells that pass the checks: median {median:.3f} (goal >= {RATIO_MEDIAN_GOAL}: "
              f"{'met' if median >= RATIO_MEDIAN_GOAL else 'NOT met'}), worst {worst.values['ratio']:.3f} at "
              f"{worst.name} (goal >= {RATIO_FLOOR}: {'met' if worst.values['ratio'] >= RATIO_FLOOR else 'NOT met'})")
        print(f"largest ECE over {len(done)} trained cells: {ece:.4f} (goal <= {ECE_GOAL}: "
              f"{'met' if ece <= ECE_GOAL else 'NOT met'})")
    refused = [c for c in cells if c.status == "refused"]
    failed = [c for c in cells if c.status == "failed"]
    print(f"{len(refused)} cells refused by featurize's checks, {len(failed)} failed; wall time {wall / 60:.1f} min; "
          f"load average {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}) on "
          f"{os.cpu_count()} cores")
    if not args.keep:
        os.chdir("/")
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
