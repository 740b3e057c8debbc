"""Population stability index (PSI) between a reference distribution and an actual one.

``PSI = Σ_bins (a_i − e_i) · ln(a_i / e_i)`` over the shares ``e`` (reference) and ``a``
(actual) of the same bins. A share of 0 is replaced by :data:`EPSILON` on both sides (a
bin that is empty in one distribution would otherwise make the index infinite), the usual
convention. Customary reading, also the config defaults: below 0.1 stable, 0.1–0.25 a
moderate shift (warn), above 0.25 a major shift (alert).
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4
STABLE, WARN, ALERT = "stable", "warn", "alert"


def psi(expected, actual, epsilon: float = EPSILON) -> float:
    """PSI of the ``actual`` shares (or counts) against the ``expected`` ones (same bins).

    Counts are normalised to shares first; NaN when either side holds nothing.
    """
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float, warn: float, alert: float) -> str:
    """``stable``, ``warn`` (≥ warn) or ``alert`` (≥ alert); NaN is stable (nothing to compare)."""
    if not np.isfinite(value) or value < warn:
        return STABLE
    return ALERT if value >= alert else WARN
