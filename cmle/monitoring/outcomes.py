"""Expected against actual: what a score run predicted and what then happened.

The realised-outcome query (:func:`cmle.features.render.outcome_sql`) returns *cells*: the
scored profiles grouped by bucket, decile and propensity rounded to 1e-4, each cell with
its profile count, positives (the training label, realised) and the sum of propensities.
Everything here is computed from cells, so the platform returns a few thousand rows
whatever the number of profiles:

- per bucket and per decile: profiles, positives, expected rate (mean propensity), actual
  rate, and a 95 % Wilson interval of the actual rate;
- ``realised_auc``: ROC-AUC of the propensity against the realised labels, ties (profiles
  in one cell) counting half, so it equals the row-level AUC up to propensities closer than
  1e-4;
- ``realised_ece``: expected calibration error with 10 equal-width bins of the propensity,
  the definition ``train`` uses on the holdout (:func:`cmle.model.metrics.expected_calibration_error`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cmle.model.metrics import ECE_BINS
from cmle.scoring.schema import BUCKETS

CELL_COLUMNS = ("bucket", "decile", "p_bin", "profiles", "positives", "propensity_sum")
Z95 = 1.959963984540054


def wilson(positives: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate ``positives / n`` (NaN, NaN when ``n`` is 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = positives / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clean_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with numeric columns typed (what a query returns may be object or Decimal)."""
    out = cells.copy()
    for c in ("decile", "profiles", "positives"):
        out[c] = pd.to_numeric(out[c], errors="coerce").fillna(0).astype("int64")
    for c in ("p_bin", "propensity_sum"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["bucket"] = out["bucket"].astype(str)
    return out[out["profiles"] > 0].reset_index(drop=True)


def _group_rows(cells: pd.DataFrame, by: str, order) -> list[dict]:
    rows = []
    grouped = cells.groupby(by)[["profiles", "positives", "propensity_sum"]].sum()
    for key in order:
        if key not in grouped.index:
            continue
        g = grouped.loc[key]
        n, pos = int(g["profiles"]), int(g["positives"])
        lo, hi = wilson(pos, n)
        rows.append({"group": by, "value": str(key), "profiles": n, "positives": pos,
                     "expected_rate": g["propensity_sum"] / n, "actual_rate": pos / n, "ci_low": lo, "ci_high": hi})
    return rows


def expected_vs_actual(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per bucket (high first), per decile (1 first) and overall."""
    cells = clean_cells(cells)
    rows = _group_rows(cells, "bucket", list(reversed(BUCKETS)))
    rows += _group_rows(cells, "decile", range(1, 11))
    rows += _group_rows(cells.assign(all="all"), "all", ["all"])
    cols = ["group", "value", "profiles", "positives", "expected_rate", "actual_rate", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols)


def _by_propensity(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells merged by propensity bin (bucket and decile follow from it), ascending."""
    g = cells.groupby("p_bin", sort=True)[["profiles", "positives", "propensity_sum"]].sum().reset_index()
    return g


def realised_auc(cells: pd.DataFrame) -> float:
    """ROC-AUC of the propensity on the realised labels, from cells (ties count half)."""
    g = _by_propensity(clean_cells(cells))
    pos = g["positives"].to_numpy(dtype="float64")
    neg = (g["profiles"] - g["positives"]).to_numpy(dtype="float64")
    P, N = pos.sum(), neg.sum()
    if P == 0 or N == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (P * N))


def realised_ece(cells: pd.DataFrame, n_bins: int = ECE_BINS) -> float:
    """ECE over ``n_bins`` equal-width propensity bins, from cells."""
    g = _by_propensity(clean_cells(cells))
    n = g["profiles"].sum()
    if n == 0:
        return float("nan")
    mean_p = g["propensity_sum"] / g["profiles"]
    b = np.minimum((mean_p.to_numpy() * n_bins).astype("int64"), n_bins - 1)
    t = g.assign(b=b).groupby("b")[["profiles", "positives", "propensity_sum"]].sum()
    gap = (t["positives"] / t["profiles"] - t["propensity_sum"] / t["profiles"]).abs()
    return float((t["profiles"] / n * gap).sum())


def summary(cells: pd.DataFrame) -> dict[str, float]:
    """``realised_auc``, ``realised_ece``, profiles, positives, expected and actual rates of a run."""
    c = clean_cells(cells)
    n, pos = int(c["profiles"].sum()), int(c["positives"].sum())
    return {"realised_auc": realised_auc(c), "realised_ece": realised_ece(c), "realised_profiles": float(n),
            "realised_positives": float(pos),
            "realised_expected_rate": float(c["propensity_sum"].sum() / n) if n else float("nan"),
            "realised_actual_rate": pos / n if n else float("nan")}
