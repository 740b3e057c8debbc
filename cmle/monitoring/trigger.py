"""The retraining trigger: a metric, a threshold, N violations in the last M windows, the
latest window among them (the rule of Databricks' mlops-stacks monitoring: retrain when the
metric breached its threshold in at least N of the last M evaluation windows *and* in the
latest one, so a single bad window does not retrain and an old alarm that has cleared does
not either).

A window is one monitoring of one score run. Metrics where higher is worse (``psi_*``,
``realised_ece``) breach when ``value > threshold``; ``realised_auc`` breaches when
``value < threshold``. A window without the metric (e.g. no realised outcomes yet) is not a
breach; the latest window without it makes nothing due.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METRICS = ("psi_score", "psi_max_feature", "realised_auc", "realised_ece")
LOWER_IS_WORSE = {"realised_auc"}


@dataclass(frozen=True)
class TriggerRule:
    metric: str = "psi_score"
    threshold: float = 0.25
    windows: int = 3  # M
    violations: int = 2  # N

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"retrain metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not 1 <= self.violations <= self.windows:
            raise ValueError(f"retrain rule: need 1 <= violations (N = {self.violations}) <= windows "
                             f"(M = {self.windows})")

    def breached(self, value) -> bool:
        if value is None or not math.isfinite(float(value)):
            return False
        return float(value) < self.threshold if self.metric in LOWER_IS_WORSE else float(value) > self.threshold

    def describe(self) -> str:
        op = "<" if self.metric in LOWER_IS_WORSE else ">"
        return (f"{self.metric} {op} {self.threshold:g} in at least {self.violations} of the last {self.windows} "
                "windows, the latest included")


@dataclass(frozen=True)
class Verdict:
    due: bool
    breaches: int  # among the windows considered
    considered: int
    latest: float | None
    reason: str


def evaluate(rule: TriggerRule, values: list) -> Verdict:
    """The verdict on ``values`` (oldest first, the latest window last)."""
    recent = list(values)[-rule.windows:]
    breaches = sum(rule.breached(v) for v in recent)
    latest = recent[-1] if recent else None
    latest_f = None if latest is None or not math.isfinite(float(latest)) else float(latest)
    due = bool(recent) and rule.breached(latest) and breaches >= rule.violations
    if not recent:
        reason = "no monitoring window yet"
    elif latest_f is None:
        reason = f"the latest window has no {rule.metric}"
    else:
        reason = (f"{rule.metric} = {latest_f:.4g} in the latest window; {breaches} of the last {len(recent)} "
                  f"window(s) breach ({rule.describe()})")
    return Verdict(due=due, breaches=breaches, considered=len(recent), latest=latest_f, reason=reason)
