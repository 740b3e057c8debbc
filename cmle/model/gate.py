"""The promotion gate (pure): may the challenger replace the champion?

Two checks on ROC-AUC measured on the same holdout rows: an absolute floor (Customer AI
calls a model "poor" below 0.65) and no regression beyond a tolerance against the current
champion. Without a champion only the floor applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cmle.errors import ParameterError

DEFAULT_MIN_AUC = 0.65
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str


def check_thresholds(min_auc: float, tolerance: float) -> None:
    if not 0.5 <= min_auc <= 1.0:
        raise ParameterError(f"min_auc = {min_auc}: must be between 0.5 (chance) and 1.0")
    if not 0.0 <= tolerance < 0.5:
        raise ParameterError(f"tolerance = {tolerance}: must be between 0 and 0.5 (AUC points)")


def decide(challenger_auc: float, champion_auc: float | None, min_auc: float = DEFAULT_MIN_AUC,
           tolerance: float = DEFAULT_TOLERANCE) -> GateResult:
    """Pass when ``challenger_auc ≥ min_auc`` and (no champion or ``challenger ≥ champion − tolerance``)."""
    check_thresholds(min_auc, tolerance)
    if challenger_auc is None or not math.isfinite(challenger_auc):
        return GateResult(False, "the challenger's holdout ROC-AUC is undefined")
    if challenger_auc < min_auc:
        return GateResult(False, f"ROC-AUC {challenger_auc:.4f} is below the floor {min_auc}")
    if champion_auc is None:
        return GateResult(True, f"no champion yet; ROC-AUC {challenger_auc:.4f} reaches the floor {min_auc}")
    delta = challenger_auc - champion_auc
    if delta < -tolerance:
        return GateResult(False, f"ROC-AUC {challenger_auc:.4f} is {-delta:.4f} below the champion's "
                                 f"{champion_auc:.4f}, more than the tolerance {tolerance}")
    return GateResult(True, f"ROC-AUC {challenger_auc:.4f} vs champion {champion_auc:.4f} "
                            f"(change {delta:+.4f}, tolerance {tolerance}); floor {min_auc} reached")
