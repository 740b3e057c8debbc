"""From a propensity (P(convert)) to Customer AI's outputs: score, percentile, decile, bucket.

Everything is computed against a :class:`Reference` — the distribution of calibrated
propensities over the training population's holdout rows, stored inside the model — so a
profile gets the same outputs whatever batch it is scored in.

Definitions (all pure; documented in docs/concepts/registry.md, "The model and its outputs"):

- ``propensity``: the calibrated probability of converting in the outcome window.
- ``score`` (int 0–100): Customer AI's "relative likelihood compared to the overall
  population", as ``round(100 · p / (p + p̄))`` where ``p̄`` is the mean reference
  propensity (≈ the base rate). An average profile scores 50; a profile scores ≥ 75
  exactly when it is at least 3× as likely as the average to convert (lift ≥ 3), and < 25
  when it is less than a third as likely. It is monotone in ``p``, so it ranks like the
  propensity, and unlike a rank it keeps the size of the gap to the average.
- ``percentile`` (int 1–100): ``ceil(100 · u)`` (at least 1) where ``u`` is the mid-rank
  share of the reference below ``p`` (ties count half), so percentile 99 means "more likely
  than 98–99 % of the population".
- ``decile`` (int 1–10, 1 = highest): ``11 − ceil(percentile / 10)``.
- ``bucket``: as Customer AI, on the integer score: ``low`` < 25 ≤ ``medium`` < 75 ≤ ``high``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LOW_BELOW = 25  # score < 25 → low
HIGH_FROM = 75  # score ≥ 75 → high
BUCKETS = ("low", "medium", "high")
REFERENCE_QUANTILES = 1001  # stored quantile levels (0.1 % resolution)


@dataclass(frozen=True)
class Reference:
    """Sorted reference propensities (quantiles) and their mean."""

    quantiles: np.ndarray
    mean: float
    rows: int

    @classmethod
    def from_propensities(cls, propensities, levels: int = REFERENCE_QUANTILES) -> "Reference":
        p = np.asarray(propensities, dtype="float64")
        p = p[np.isfinite(p)]
        if p.size == 0:
            raise ValueError("a reference distribution needs at least one finite propensity")
        q = np.quantile(p, np.linspace(0.0, 1.0, levels), method="inverted_cdf")
        return cls(quantiles=np.sort(q), mean=float(p.mean()), rows=int(p.size))

    def to_dict(self) -> dict:
        return {"quantiles": self.quantiles.tolist(), "mean": self.mean, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict) -> "Reference":
        return cls(quantiles=np.asarray(data["quantiles"], dtype="float64"), mean=float(data["mean"]),
                   rows=int(data["rows"]))


def mid_rank(p, reference: Reference) -> np.ndarray:
    """Share of the reference below each ``p``, ties counting half (in [0, 1])."""
    p = np.asarray(p, dtype="float64")
    q = reference.quantiles
    below = np.searchsorted(q, p, side="left")
    upto = np.searchsorted(q, p, side="right")
    return (below + upto) / (2.0 * q.size)


def score(p, reference: Reference) -> np.ndarray:
    """Relative likelihood 0–100: ``round(100 · p / (p + p̄))``."""
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    mean = max(reference.mean, 1e-12)
    return np.rint(100.0 * p / (p + mean)).astype("int64")


def percentile(p, reference: Reference) -> np.ndarray:
    """Percentile 1–100 of ``p`` in the reference distribution."""
    return np.clip(np.ceil(100.0 * mid_rank(p, reference)), 1, 100).astype("int64")


def decile(percentiles) -> np.ndarray:
    """Decile 1–10 from percentiles 1–100; decile 1 holds percentiles 91–100."""
    pct = np.asarray(percentiles, dtype="int64")
    return (11 - np.ceil(pct / 10.0)).astype("int64")


def bucket(scores) -> np.ndarray:
    """Customer AI's buckets on the integer score: low < 25, medium 25–74, high ≥ 75."""
    s = np.asarray(scores)
    return np.where(s < LOW_BELOW, "low", np.where(s >= HIGH_FROM, "high", "medium")).astype(object)


def outputs(propensities, reference: Reference, index=None) -> pd.DataFrame:
    """The model's output frame: propensity, score, percentile, decile, bucket."""
    p = np.asarray(propensities, dtype="float64")
    s = score(p, reference)
    pct = percentile(p, reference)
    return pd.DataFrame({"propensity": p, "score": s, "percentile": pct, "decile": decile(pct),
                         "bucket": bucket(s)}, index=index)
