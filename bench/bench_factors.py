"""Explaining against predicting, per model family and factors method.

    python bench/bench_factors.py [--rows 10000] [--train-rows 60000] [--repeat 3]

Fits the representative models of ``bench/bench_scoring.py`` (74 features shaped like
featurize's output, 3 categoricals; ``hgb`` and ``logreg`` with its parameters, plus a
random forest) with the training code, then on the same ``--rows`` rows, median of
``--repeat``: the calibrated model's ``predict_proba`` (the baseline) next to
:class:`cmle.explain.factors.Explainer` with ``method=fast`` (the default) and ``exact``
(Tree SHAP; on a tenth of the rows for the forest, scaled up), and the top-3 factors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RF = {"family": "rf", "n_estimators": 100, "max_depth": 10, "min_samples_leaf": 20, "max_features": "sqrt",
      "max_samples": 0.3, "class_weight": None}


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--train-rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from bench_scoring import FAMILY_PARAMS, feature_chunk

    from cmle.columns import LABEL_COLUMN
    from cmle.explain.factors import Explainer, classifier_pipeline
    from cmle.model import fit
    from cmle.model.preprocess import FeatureSpec

    table, label = feature_chunk(args.train_rows, seed=1)
    frame = table.to_pandas()
    frame[LABEL_COLUMN] = label
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, 0.2, 0.2, seed=0)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    rows = spec.prepare(feature_chunk(args.rows, seed=9)[0].to_pandas())
    print(f"{args.rows:,} rows, {len(spec.columns)} features, median of {args.repeat} (seconds)")
    print(f"{'model':8s} {'predict':>9s} {'fast':>9s} {'exact':>9s} {'top-3':>9s} {'fast/predict':>13s}")
    for name, params in (("hgb", FAMILY_PARAMS["hgb"]), ("logreg", FAMILY_PARAMS["logreg"]), ("rf", RF)):
        est = fit.fit_calibrated(params, spec, xy(parts.train), xy(parts.valid), seed=0,
                                 n_jobs=int(os.environ["OMP_NUM_THREADS"]))
        prep, clf = classifier_pipeline(est)
        fast = Explainer(spec=spec, prep=prep, clf=clf, method="fast", background=xy(parts.holdout)[0])
        exact = Explainer(spec=spec, prep=prep, clf=clf, method="exact", background=xy(parts.holdout)[0])
        fast.check()
        exact.check()
        predict = timed(lambda: est.predict_proba(rows), args.repeat)
        t_fast = timed(lambda: fast.contributions(rows), args.repeat)
        c = fast.contributions(rows)
        t_top = timed(lambda: fast.factors(rows, 3, c), args.repeat)
        share = 10 if name == "rf" else 1  # exact Tree SHAP of the forest on a tenth, scaled up
        part = rows.iloc[: len(rows) // share]
        t_exact = timed(lambda: exact.contributions(part), 1) * share
        print(f"{name:8s} {predict:9.3f} {t_fast:9.3f} {t_exact:9.3f} {t_top:9.3f} {t_fast / predict:12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
