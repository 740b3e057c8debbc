"""How the promotion gate's rules behave on real pipeline data: the figures behind its defaults.

In a fresh temporary project it runs the real stages ``synthetic`` (``--profiles``) →
``featurize`` (point in time) → ``export``, then, ``--repeats`` times with a new holdout salt
each time (20 % of the profiles by hash, :mod:`cmle.model.holdout`):

* a "champion": gradient boosting (fixed, ordinary hyperparameters), calibrated, fitted on one
  random half of the other profiles;
* an EQUAL challenger: the same model fitted on the other half (a retrain of the same
  quality, as after a fresh export);
* a WORSE and a MUCH WORSE challenger: the same model without the champion's 2 (5) most
  important features (a retrain that lost signal, e.g. a broken feature).

Both challengers are compared with the champion on the holdout, cut to about ``50``, ``100``,
``200`` positives and all of them, with the paired bootstrap of :mod:`cmle.model.comparison`.
For each metric and size it prints the median half-width of the 95 % interval of the
difference, and how often each challenger passes under three rules, at the metric's default
tolerance (:data:`cmle.model.gate.DEFAULT_METRICS`):

* ``point``: the point estimate is no worse than ``-tolerance`` (the gate before issue 14);
* ``harm``: refuse only when the challenger is worse by more than the tolerance with 95 %
  confidence (the upper one-sided bound below ``-tolerance``);
* ``noninf``: pass only when it is no worse than ``-tolerance`` with 95 % confidence
  (non-inferiority: the lower bound above ``-tolerance``);
* ``gate``: the gate's rule (:func:`cmle.model.gate.judge`): refuse when the point estimate is
  worse than ``-tolerance`` AND the upper bound is below 0 (worse beyond the tolerance, and
  not by chance).

A good rule passes the EQUAL challenger almost always and refuses the worse ones once the
evaluation rows hold enough positives to tell.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_gate.py --profiles 60000 --repeats 10
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cmle import storage  # noqa: E402
from cmle.config import load_settings  # noqa: E402
from cmle.context import Context  # noqa: E402
from cmle.exports import newest_feature_export  # noqa: E402
from cmle.model import comparison, fit, gate, holdout  # noqa: E402
from cmle.model.preprocess import FeatureSpec  # noqa: E402
from cmle.runner import run_stage  # noqa: E402

HGB = {"family": "hgb", "learning_rate": 0.1, "max_leaf_nodes": 16, "min_samples_leaf": 100,
       "l2_regularization": 1.0, "max_features": 0.8, "class_weight": None}
SIZES = (50, 100, 200, 0)  # positives in the evaluation rows; 0: the whole holdout
RULES = ["point", "harm", "noninf", "gate"]


def _fit(frame: pd.DataFrame, spec: FeatureSpec, seed: int):
    parts = fit.split(frame, 0.01, 0.25, seed)  # the 1 % "holdout" here is unused
    prepared = (spec.prepare(parts.train), fit.labels(parts.train)), (spec.prepare(parts.valid),
                                                                     fit.labels(parts.valid))
    return fit.fit_calibrated(HGB, spec, *prepared, seed=seed)


def _cut(rows: pd.DataFrame, positives: int, rng: np.random.Generator) -> pd.DataFrame:
    """About ``positives`` positives with the holdout's base rate (all rows when 0 or too few)."""
    y = rows["label"].to_numpy()
    if not positives or positives >= y.sum():
        return rows
    share = positives / y.sum()
    return rows.iloc[np.sort(rng.choice(len(rows), int(round(len(rows) * share)), replace=False))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--end-date", default="2024-06-01")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    root = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    os.chdir(root)
    settings = load_settings(env={})
    for stage, params in (("synthetic", {"profiles": args.profiles, "end_date": args.end_date}),
                          ("featurize", {"framing": "pit"}), ("export", {})):
        started = time.perf_counter()
        run_stage(stage, settings, params)
        print(f"  {stage:<10} {time.perf_counter() - started:7.1f} s", flush=True)
    ctx = Context(settings)
    data = storage.read_export(newest_feature_export(ctx, "training", "pit").url).to_pandas()
    ctx.close()
    spec = FeatureSpec.infer(data)
    rules = {r.metric: r for r in gate.parse_metrics(gate.DEFAULT_METRICS)}
    print(f"training set: {len(data):,} rows, {int(data['label'].sum()):,} positives; {len(spec.columns)} features",
          flush=True)

    rows = []  # one per (repeat, size, challenger, metric)
    started = time.perf_counter()
    trial = 0
    for rep in range(args.repeats):
        rng = np.random.default_rng(rep)
        held = holdout.in_holdout(data["userid"].to_numpy(), f"bench-{rep}", 0.2)
        rest, hold = data[~held], data[held]
        half = rng.random(len(rest)) < 0.5
        champion = _fit(rest[half], spec, seed=rep)
        challengers = {"EQUAL": (_fit(rest[~half], spec, seed=rep + 100), spec)}
        sample = rest[half].sample(min(4000, int(half.sum())), random_state=rep)
        ranked = fit.feature_importance(champion, spec.prepare(sample), fit.labels(sample), seed=rep)["feature"]
        for label, drop in (("WORSE", 2), ("MUCH WORSE", 10)):
            kept = set(ranked.iloc[drop:])
            weak = FeatureSpec(numeric=tuple(c for c in spec.numeric if c in kept),
                               categorical=tuple(c for c in spec.categorical if c in kept))
            challengers[label] = (_fit(rest[~half], weak, seed=rep + 100), weak)
        for size in SIZES:
            part = _cut(hold, size, rng)
            y = part["label"].to_numpy()
            p_champ = champion.predict_proba(spec.prepare(part))[:, 1]
            for name, (model, s) in challengers.items():
                trial += 1
                p = model.predict_proba(s.prepare(part))[:, 1]
                for d in comparison.paired(list(rules), y, p, p_champ, resamples=args.bootstrap,
                                           confidence=gate.DEFAULT_CONFIDENCE, seed=rep):
                    tol = rules[d.metric].tolerance
                    rows.append({"trial": trial, "size": "all" if not size else str(size),
                                 "positives": int(y.sum()), "challenger": name, "metric": d.metric,
                                 "better_by": d.better_by, "half_width": (d.ci_high - d.ci_low) / 2,
                                 "point": d.better_by >= -tol, "harm": d.ci_high >= -tol, "noninf": d.ci_low >= -tol,
                                 "gate": gate.judge(d, rules[d.metric], "holdout").passed})
        print(f"  repeat {rep + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s)", flush=True)

    table = pd.DataFrame(rows)
    who = list(dict.fromkeys(table["challenger"]))
    sizes = [str(s) for s in SIZES if s] + ["all"]
    print(f"\npass rates over {args.repeats} repeats; rules point / harm / noninf / gate (the gate's); 'by' = median "
          f"difference challenger - champion (+: better); 'ci' = median half-width of the interval "
          f"({gate.DEFAULT_CONFIDENCE:.0%} one-sided bounds)")
    print(f"{'metric':<16} {'tol':>6} {'pos':>5} {'ci':>7} | "
          + " | ".join(f"{w:<10} {'by':>8} pt/harm/ni/gate" for w in who))
    for metric, rule in rules.items():
        for size in sizes:
            sub = table[(table["metric"] == metric) & (table["size"] == size)]
            pos = int(sub["positives"].median())
            cells = []
            for w in who:
                g = sub[sub["challenger"] == w]
                cells.append(f"{'':<10} {g['better_by'].median():>+8.4f} "
                             + "/".join(f"{g[r].mean():>3.0%}" for r in RULES))
            print(f"{metric:<16} {rule.tolerance:>6g} {pos:>5} {sub['half_width'].median():>7.4f} | "
                  + " | ".join(cells))
    # what the bootstrap costs the promote stage: every metric, paired, on the whole holdout
    y = hold["label"].to_numpy()
    p_a = challengers["EQUAL"][0].predict_proba(spec.prepare(hold))[:, 1]
    p_b = champion.predict_proba(spec.prepare(hold))[:, 1]
    timing = []
    for _ in range(3):
        t0 = time.perf_counter()
        comparison.paired(list(rules), y, p_a, p_b, resamples=args.bootstrap, seed=0)
        timing.append(time.perf_counter() - t0)
    print(f"\nbootstrap: {len(rules)} metrics, paired, {len(y):,} rows x {args.bootstrap} resamples: "
          f"{statistics.median(timing):.2f} s (median of 3)")
    print("\nwhole decision (every metric passes), share of trials passed, " + " / ".join(RULES) + ":")
    for size in sizes:
        sub = table[table["size"] == size]
        passed = sub.groupby(["trial", "challenger"])[RULES].all().groupby("challenger").mean()
        print(f"  positives {int(sub['positives'].median()):>5}: " + ", ".join(
            f"{w} " + "/".join(f"{passed.loc[w, r]:.0%}" for r in RULES) for w in who))
    return 0


if __name__ == "__main__":
    sys.exit(main())
