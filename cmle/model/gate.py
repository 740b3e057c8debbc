"""The promotion gate (pure): may the challenger replace the champion?

The challenger must reach an absolute ROC-AUC floor (Customer AI calls a model "poor"
below 0.65) and, when there is a champion, be no worse than it on every metric of a
configurable list, each with its own direction and tolerance. Both models are scored on
the same rows (rows neither trained on); the difference of each metric has a paired
bootstrap interval (:mod:`cmle.model.comparison`). A comparison fails when the challenger is
worse by more than the tolerance (the point estimate: what ``tolerance`` always meant) AND
the interval shows it worse at all (its upper bound, at ``confidence``, below zero): a
relevant difference that is not noise. A shortfall the evaluation rows cannot tell from
noise is not held against the challenger; a real one beyond the tolerance is. With
``confidence = 0`` the point estimates alone decide. bench/bench_gate.py measures the rule
against the alternatives; docs/promotion.md explains the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from cmle.errors import ParameterError
from cmle.model.comparison import METRICS, Difference

DEFAULT_MIN_AUC = 0.65
DEFAULT_TOLERANCE = 0.01  # ROC-AUC points: the tolerance of `roc_auc` unless the metric list gives one
# metric[:tolerance], comma separated; tolerances in each metric's own units (docs/promotion.md).
DEFAULT_METRICS = "roc_auc,pr_auc:0.01,ece:0.01,brier:0.001,top_decile_lift:0.25"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_EVAL_POSITIVES = 50


@dataclass(frozen=True)
class MetricRule:
    metric: str
    tolerance: float

    @property
    def direction(self) -> str:
        return METRICS[self.metric].direction


@dataclass(frozen=True)
class Comparison:
    """One metric of challenger and champion, the interval of the difference, and the verdict."""

    metric: str
    direction: str
    tolerance: float
    challenger: float
    champion: float
    better_by: float  # > 0: the challenger is better
    ci_low: float
    ci_high: float
    passed: bool
    evidence: str  # "holdout" or "realised:<window>"
    note: str = ""

    def as_record(self) -> dict:
        """The comparison as a compact JSON-able dict (numbers rounded to 6 digits, NaN as None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 6) if math.isfinite(value) else None
        return out

    def sentence(self) -> str:
        label = METRICS[self.metric].label
        ci = f", CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]" if math.isfinite(self.ci_low) else ""
        verdict = "pass" if self.passed else "FAIL"
        return (f"{label} {self.challenger:.4f} vs {self.champion:.4f} ({'better' if self.better_by >= 0 else 'worse'}"
                f" by {abs(self.better_by):.4f}{ci}; tolerance {self.tolerance:g}): {verdict}")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    comparisons: tuple[Comparison, ...] = ()


def check_thresholds(min_auc: float, tolerance: float, confidence: float = DEFAULT_CONFIDENCE) -> None:
    if not 0.5 <= min_auc <= 1.0:
        raise ParameterError(f"min_auc = {min_auc}: must be between 0.5 (chance) and 1.0")
    if not 0.0 <= tolerance < 0.5:
        raise ParameterError(f"tolerance = {tolerance}: must be between 0 and 0.5 (AUC points)")
    if not (confidence == 0.0 or 0.5 <= confidence < 1.0):
        raise ParameterError(f"confidence = {confidence}: must be 0 (decide on the point estimates) or at least 0.5 "
                             "and below 1, e.g. 0.95")


def parse_metrics(text: str, roc_tolerance: float = DEFAULT_TOLERANCE) -> tuple[MetricRule, ...]:
    """``"roc_auc,pr_auc:0.02,ece:0.02"`` as rules; a metric without a tolerance gets 0, except
    ``roc_auc``, which gets ``roc_tolerance`` (the ``tolerance`` parameter)."""
    rules: list[MetricRule] = []
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = item.partition(":")
        name = name.strip()
        if name not in METRICS:
            raise ParameterError(f"metrics: unknown metric {name!r}; known: {', '.join(METRICS)}")
        if any(r.metric == name for r in rules):
            raise ParameterError(f"metrics: {name} is listed twice")
        if sep:
            try:
                tolerance = float(value)
            except ValueError:
                raise ParameterError(f"metrics: tolerance of {name} = {value!r} is not a number "
                                     "(write metric:tolerance, e.g. ece:0.02)") from None
        else:
            tolerance = roc_tolerance if name == "roc_auc" else 0.0
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ParameterError(f"metrics: tolerance of {name} = {value!r} must be 0 or more")
        rules.append(MetricRule(name, tolerance))
    return tuple(rules)


def judge(diff: Difference, rule: MetricRule, evidence: str, confidence: float = DEFAULT_CONFIDENCE) -> Comparison:
    """Fail when the challenger is worse by more than the tolerance (point estimate) and the
    interval's upper bound is below zero (worse with ``confidence``); with ``confidence = 0``,
    or no interval, the point estimate alone. An undefined metric fails."""
    note = ""
    beyond = diff.better_by < -rule.tolerance
    if not math.isfinite(diff.better_by):
        passed, note = False, "undefined on these rows"
    elif confidence > 0 and math.isfinite(diff.ci_high):
        passed = not (beyond and diff.ci_high < 0)
        if passed and beyond:
            note = "worse beyond the tolerance on the point estimate, but not distinguishable from noise on these rows"
    else:
        passed = not beyond
    return Comparison(metric=rule.metric, direction=rule.direction, tolerance=rule.tolerance,
                      challenger=diff.challenger, champion=diff.champion, better_by=diff.better_by,
                      ci_low=diff.ci_low, ci_high=diff.ci_high, passed=passed, evidence=evidence, note=note)


def floor(challenger_auc: float, min_auc: float) -> GateResult | None:
    """A failed result when the challenger's ROC-AUC is undefined or below the floor, else None."""
    if challenger_auc is None or not math.isfinite(challenger_auc):
        return GateResult(False, "the challenger's ROC-AUC on the evaluation rows is undefined")
    if challenger_auc < min_auc:
        return GateResult(False, f"ROC-AUC {challenger_auc:.4f} is below the floor {min_auc}")
    return None


def decide(challenger_auc: float, comparisons: list[Comparison] | None, min_auc: float = DEFAULT_MIN_AUC) -> GateResult:
    """Pass when the floor is reached and every comparison passed (``None``: no champion yet)."""
    refused = floor(challenger_auc, min_auc)
    if refused is not None:
        return GateResult(False, refused.reason, tuple(comparisons or ()))
    if comparisons is None:
        return GateResult(True, f"no champion yet; ROC-AUC {challenger_auc:.4f} reaches the floor {min_auc}")
    failed = [c for c in comparisons if not c.passed]
    if failed:
        return GateResult(False, "worse than the champion beyond the tolerance, and not by chance: "
                          + "; ".join(f"{c.sentence()} [{c.evidence}]" for c in failed), tuple(comparisons))
    return GateResult(True, f"floor {min_auc} reached (ROC-AUC {challenger_auc:.4f}); no worse than the champion on "
                      + ", ".join(f"{METRICS[c.metric].label} ({c.better_by:+.4f})" for c in comparisons),
                      tuple(comparisons))
