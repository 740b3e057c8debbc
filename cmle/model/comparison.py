"""Comparing two models' probabilities on labelled rows, with bootstrap confidence intervals.

The gate's metrics (ROC-AUC, PR-AUC, ECE, Brier, top-decile lift) are computed here with
row *weights*, so that a bootstrap resample is a vector of counts (how often each row was
drawn) and every resample of every metric is one vectorised pass over rows sorted once.
With unit weights each metric equals its unweighted definition in :mod:`cmle.model.metrics`
(ties included; a test holds them equal).

:func:`paired` compares two models on the SAME rows: each resample draws rows once and
scores both models on them, so the interval is that of the difference (two models that
err on the same rows have a narrow one). :func:`unpaired` compares two models on different
rows (each model's own realised outcomes) by resampling each side on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cmle.model.metrics import ECE_BINS, _arrays  # labels 0/1, probabilities clipped to [0, 1]

HIGHER, LOWER = "higher", "lower"
DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95
# Resamples per block: bounds memory to block × rows weights (float64).
_BLOCK_CELLS = 4_000_000


def _groups(scores: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """The row order by score and the start of each run of tied scores in that order."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    return order, starts


def roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC per row of ``w`` (resamples × rows): P(score of a positive > score of a
    negative), ties counting one half. NaN where a resample holds one class only."""
    order, starts = _groups(p, descending=False)
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)
    neg = np.add.reduceat(ws * (1 - y[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def pr_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted average precision (scikit-learn's definition: Σ recall step × precision, one
    threshold per distinct score)."""
    order, starts = _groups(p, descending=True)
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)
    neg = np.add.reduceat(ws * (1 - y[order]), starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        ap = (pos * precision).sum(axis=1) / np.where(total > 0, total, 1)
    return np.where((total > 0) & (total < w.sum(axis=1)), ap, np.nan)


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean squared error of the probabilities."""
    return (w * (p - y) ** 2).sum(axis=1) / w.sum(axis=1)


def ece(y: np.ndarray, p: np.ndarray, w: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Weighted expected calibration error over equal-width bins (as
    :func:`cmle.model.metrics.expected_calibration_error`): Σ_bins |Σ w·y − Σ w·p| / Σ w."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    onehot = np.zeros((p.size, n_bins))
    onehot[np.arange(p.size), idx] = 1.0
    gap = (w * y) @ onehot - (w * p) @ onehot
    return np.abs(gap).sum(axis=1) / w.sum(axis=1)


def top_decile_lift(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Positive rate of the top tenth of the rows by propensity over the overall rate.

    The top tenth is ceil(total weight / 10) rows taken in descending propensity (stable for
    ties), the last one in part if needed: with unit weights, decile 1 of
    :func:`cmle.model.metrics.lift_table`."""
    order = np.argsort(-p, kind="stable")
    ws = w[:, order]
    total = w.sum(axis=1)
    k = np.ceil(total / 10.0 - 1e-9)[:, None]
    before = np.cumsum(ws, axis=1) - ws
    taken = np.clip(k - before, 0.0, ws)
    top_rate = (taken * y[order]).sum(axis=1) / k[:, 0]
    base = (w * y).sum(axis=1) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base > 0, top_rate / np.where(base > 0, base, 1), np.nan)


@dataclass(frozen=True)
class MetricDef:
    name: str
    direction: str  # HIGHER or LOWER is better
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    label: str

    def better_by(self, challenger: float, champion: float) -> float:
        """How much better the challenger is (positive) or worse (negative), in the metric's units."""
        delta = challenger - champion
        return delta if self.direction == HIGHER else -delta


METRICS: dict[str, MetricDef] = {m.name: m for m in (
    MetricDef("roc_auc", HIGHER, roc_auc, "ROC-AUC"),
    MetricDef("pr_auc", HIGHER, pr_auc, "PR-AUC"),
    MetricDef("ece", LOWER, ece, "ECE"),
    MetricDef("brier", LOWER, brier, "Brier"),
    MetricDef("top_decile_lift", HIGHER, top_decile_lift, "top-decile lift"),
)}


def point(name: str, y, p) -> float:
    """The metric on the rows as they are (unit weights)."""
    y, p = _arrays(y, p)
    return float(METRICS[name].compute(y, p, np.ones((1, y.size)))[0])


def _weights(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """``resamples`` bootstrap draws of ``n`` rows as counts per row."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype("float64")


def _blocks(n: int, resamples: int):
    size = max(1, min(resamples, _BLOCK_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        yield min(size, resamples - done)
        done += size


@dataclass(frozen=True)
class Difference:
    """One metric for both models, and the bootstrap interval of how much better the challenger is."""

    metric: str
    challenger: float
    champion: float
    better_by: float  # positive: the challenger is better (in the metric's own direction)
    ci_low: float  # with probability `confidence`, better_by is above this (bootstrap)
    ci_high: float  # ... and below this
    resamples: int

    @property
    def direction(self) -> str:
        return METRICS[self.metric].direction


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``1 - confidence`` and ``confidence`` quantiles: each end is a one-sided bound at
    ``confidence`` (together, a central interval at ``2 * confidence - 1``)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or confidence <= 0.5:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [1.0 - confidence, confidence])
    return float(low), float(high)


def paired(names: list[str], y, p_challenger, p_champion, resamples: int = DEFAULT_BOOTSTRAP,
           confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> list[Difference]:
    """Each metric of both models on the same rows, with a paired bootstrap interval of the difference."""
    return _differences(names, _arrays(y, p_challenger), _arrays(y, p_champion), True, resamples, confidence, seed)


def unpaired(names: list[str], y_challenger, p_challenger, y_champion, p_champion,
             resamples: int = DEFAULT_BOOTSTRAP, confidence: float = DEFAULT_CONFIDENCE,
             seed: int = 0) -> list[Difference]:
    """Each metric of two models on their own rows, each side resampled on its own."""
    return _differences(names, _arrays(y_challenger, p_challenger), _arrays(y_champion, p_champion), False,
                        resamples, confidence, seed)


def _differences(names: list[str], challenger: tuple[np.ndarray, np.ndarray], champion: tuple[np.ndarray, np.ndarray],
                 same_rows: bool, resamples: int, confidence: float, seed: int) -> list[Difference]:
    (ya, a), (yb, b) = challenger, champion
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for block in (_blocks(max(ya.size, yb.size), resamples) if resamples > 0 else ()):
        wa = _weights(rng, ya.size, block)
        wb = wa if same_rows else _weights(rng, yb.size, block)
        for name in names:
            m = METRICS[name]
            draws[name].append(m.better_by(m.compute(ya, a, wa), m.compute(yb, b, wb)))
    out = []
    for name in names:
        m = METRICS[name]
        chal, champ = point(name, ya, a), point(name, yb, b)
        low, high = _interval(np.concatenate(draws[name]) if draws[name] else np.array([]), confidence)
        out.append(Difference(name, chal, champ, m.better_by(chal, champ), low, high, resamples))
    return out
