"""The promotion gate's decisions (pure): floor, metric list, the rule on each difference."""

from __future__ import annotations

import math

import pytest

from cmle.errors import ParameterError
from cmle.model.comparison import Difference
from cmle.model.gate import (DEFAULT_METRICS, MetricRule, check_thresholds, decide, judge, parse_metrics)


def _diff(metric, challenger, champion, low, high):
    from cmle.model.comparison import METRICS

    return Difference(metric, challenger, champion, METRICS[metric].better_by(challenger, champion), low, high, 100)


def test_the_default_metric_list_and_its_tolerances():
    rules = parse_metrics(DEFAULT_METRICS, roc_tolerance=0.01)
    assert [(r.metric, r.tolerance, r.direction) for r in rules] == [
        ("roc_auc", 0.01, "higher"), ("pr_auc", 0.01, "higher"), ("ece", 0.01, "lower"), ("brier", 0.001, "lower"),
        ("top_decile_lift", 0.25, "higher")]
    # roc_auc without a tolerance takes the `tolerance` parameter; an explicit one wins
    assert parse_metrics("roc_auc", 0.03)[0].tolerance == 0.03
    assert parse_metrics("roc_auc:0.02,ece", 0.03) == (MetricRule("roc_auc", 0.02), MetricRule("ece", 0.0))


@pytest.mark.parametrize("text, words", [
    ("roc_auc,f1", "unknown metric 'f1'"), ("ece:abc", "not a number"), ("ece:-1", "0 or more"),
    ("ece,ece", "listed twice"),
])
def test_a_bad_metric_list_is_a_parameter_error(text, words):
    with pytest.raises(ParameterError, match=words):
        parse_metrics(text)


@pytest.mark.parametrize("challenger, champion, low, high, passed, note", [
    (0.80, 0.79, -0.01, 0.03, True, ""),                       # better
    (0.785, 0.79, -0.03, 0.02, True, ""),                      # worse, within the tolerance
    (0.77, 0.79, -0.06, 0.02, True, "not distinguishable"),    # worse beyond it, but the interval reaches 0
    (0.77, 0.79, -0.035, -0.005, False, ""),                   # worse beyond it and not by chance
    (0.785, 0.79, -0.008, -0.002, True, ""),                   # surely worse, but by less than the tolerance
])
def test_a_comparison_fails_when_worse_beyond_the_tolerance_and_not_by_chance(challenger, champion, low, high,
                                                                               passed, note):
    c = judge(_diff("roc_auc", challenger, champion, low, high), MetricRule("roc_auc", 0.01), "holdout")
    assert c.passed is passed and note in c.note
    assert c.evidence == "holdout" and c.as_record()["better_by"] == round(challenger - champion, 6)


def test_lower_is_better_metrics_are_turned_around():
    # ECE 0.05 against 0.02: worse by 0.03, beyond 0.01, interval of better_by entirely below 0
    c = judge(_diff("ece", 0.05, 0.02, -0.04, -0.02), MetricRule("ece", 0.01), "holdout")
    assert c.better_by == pytest.approx(-0.03) and not c.passed and "ECE 0.0500 vs 0.0200 (worse by 0.0300" in \
        c.sentence()


def test_confidence_zero_and_missing_intervals_decide_on_the_point_estimate():
    d = _diff("roc_auc", 0.77, 0.79, -0.06, 0.02)
    assert not judge(d, MetricRule("roc_auc", 0.01), "holdout", confidence=0).passed
    assert not judge(_diff("roc_auc", 0.77, 0.79, math.nan, math.nan), MetricRule("roc_auc", 0.01), "x").passed
    undefined = judge(_diff("pr_auc", math.nan, 0.3, math.nan, math.nan), MetricRule("pr_auc", 0.01), "x")
    assert not undefined.passed and undefined.note == "undefined on these rows"
    assert undefined.as_record()["challenger"] is None


@pytest.mark.parametrize("challenger_auc, comparisons, passed, words", [
    (0.70, None, True, "no champion yet"),
    (0.64, None, False, "below the floor"),
    (0.60, [], False, "below the floor"),  # better than a poor champion is not enough
    (float("nan"), None, False, "undefined"),
])
def test_the_floor(challenger_auc, comparisons, passed, words):
    result = decide(challenger_auc, comparisons, min_auc=0.65)
    assert result.passed is passed and words in result.reason


def test_every_comparison_must_pass_and_the_reason_names_the_failures():
    rules = parse_metrics(DEFAULT_METRICS)
    good = judge(_diff("roc_auc", 0.80, 0.79, -0.01, 0.03), rules[0], "holdout")
    bad = judge(_diff("top_decile_lift", 2.0, 3.0, -1.5, -0.4), rules[4], "realised:2024-05")
    result = decide(0.80, [good, bad], min_auc=0.65)
    assert not result.passed and "top-decile lift 2.0000 vs 3.0000" in result.reason and "[realised:2024-05]" in \
        result.reason
    ok = decide(0.80, [good], min_auc=0.65)
    assert ok.passed and "ROC-AUC (+0.0100)" in ok.reason


def test_thresholds_are_validated():
    with pytest.raises(ParameterError, match="min_auc"):
        check_thresholds(1.5, 0.01)
    with pytest.raises(ParameterError, match="tolerance"):
        check_thresholds(0.65, -0.1)
    with pytest.raises(ParameterError, match="confidence"):
        check_thresholds(0.65, 0.01, confidence=1.0)
