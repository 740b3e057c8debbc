import numpy as np
import pandas as pd
import pytest

from cmle import pql
from cmle.audiences.rules import (
    DEFAULT_RULES,
    BandRule,
    BucketRule,
    TopPercentRule,
    evaluate,
    format_rules,
    parse_rule,
    parse_rules,
    reach_curve,
)
from cmle.errors import ParameterError


def test_default_rules_are_the_notebook_band_top_ten_percent_and_high_bucket():
    rules = parse_rules(DEFAULT_RULES)
    assert rules == [BandRule("moderate_to_high", 0.2, 0.93), TopPercentRule("top10", 10),
                     BucketRule("high_bucket", ("high",))]
    assert format_rules(rules) == DEFAULT_RULES


@pytest.mark.parametrize("spec, expected", [
    ("b:band:0.2:0.93", "_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93"),
    ("b:band:0.5:", "_cmle.propensity >= 0.5"),
    ("b:band::0.05", "_cmle.propensity <= 0.05"),
    ("b:band:0:1", "_cmle.propensity >= 0 and _cmle.propensity <= 1"),
    ("t:top:10", "_cmle.percentile >= 91"),
    ("t:top:100", "_cmle.percentile >= 1"),
    ("t:top:1", "_cmle.percentile >= 100"),
    ("h:bucket:high", '_cmle.bucket = "high"'),
    ("h:bucket:medium, HIGH", '_cmle.bucket = "medium" or _cmle.bucket = "high"'),
])
def test_rules_render_pql_that_the_platform_accepts(spec, expected):
    rule = parse_rule(spec)
    assert rule.pql("cmle") == expected
    pql.to_sql(rule.pql("cmle"), "cmle")  # inside the PQL subset the embedded platform evaluates
    assert parse_rule(rule.spec()) == rule


def test_rules_tolerate_spaces_newlines_and_empty_items():
    rules = parse_rules(" a : band : 0.1 : 0.2 ;\n b:top:5;; \n")
    assert [r.name for r in rules] == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("", "holds no rule"),
    ("a:band:0.2", "LOWER:UPPER"),
    ("a:band::", "at least one bound"),
    ("a:band:0.9:0.2", "above upper bound"),
    ("a:band:x:0.2", "'x' is not a number"),
    ("a:band:0.2:1.5", "outside 0-1"),
    ("a:top:0", "whole PERCENT from 1 to 100"),
    ("a:top:12.5", "whole PERCENT"),
    ("a:bucket:hot", "low, medium, high"),
    ("a:segment:1", "unknown kind 'segment'"),
    ("9a:top:5", "must start with a letter"),
    ("a:top:5;a:top:10", r"unique, \['a'\] repeat"),
    ("justaname", "NAME:KIND:ARGS"),
])
def test_bad_rules_say_what_is_wrong(text, message):
    with pytest.raises(ParameterError, match=message):
        parse_rules(text)


def _scores():
    return pd.DataFrame({
        "userid": [f"u{i}" for i in range(8)],
        "propensity": [0.05, 0.2, 0.5, 0.93, 0.94, np.nan, 0.19999, 0.7],
        "percentile": [10, 40, 80, 99, 100, None, 39, 91],
        "bucket": ["low", "low", "medium", "high", "high", None, "low", "medium"],
    })


def test_rules_evaluate_on_hand_made_scores_with_inclusive_bounds():
    rules = parse_rules("band:band:0.2:0.93;top10:top:10;high:bucket:high;hm:bucket:medium,high;lo:band::0.2")
    counts = evaluate(rules, _scores())
    assert counts == {"band": 4,  # 0.2, 0.5, 0.93, 0.7 (bounds included, NaN never)
                      "top10": 3,  # percentiles 99, 100, 91
                      "high": 2, "hm": 4, "lo": 3}
    assert rules[0].mask(_scores()).tolist() == [False, True, True, True, False, False, False, True]


def test_reach_curve_counts_profiles_at_or_above_each_threshold():
    curve = reach_curve(_scores()["propensity"])
    assert len(curve) == 101 and curve["threshold"].iloc[20] == 0.2
    assert curve.set_index("threshold").loc[[0.0, 0.2, 0.5, 0.93, 0.94, 1.0], "reached"].tolist() == [7, 5, 4, 2, 1, 0]
    assert curve["share"].iloc[0] == 1.0
    assert curve["reached"].is_monotonic_decreasing
    empty = reach_curve([], thresholds=[0.1, 0.5])
    assert empty["reached"].tolist() == [0, 0] and empty["share"].tolist() == [0.0, 0.0]


# --- influential factors in rules -------------------------------------------------------------
def test_a_rule_can_ask_for_a_factor_among_the_top_factors():
    from cmle.audiences.rules import FactorRule, format_rules, parse_rules
    from cmle.pql import to_sql

    rules = parse_rules("hi_email:bucket:high:factor=emails_opened;top_any:top:20:factor=emails_opened,recency")
    hi, top = rules
    assert isinstance(hi, FactorRule) and hi.features == ("emails_opened",) and hi.kind == "bucket+factor"
    assert hi.pql("cmle") == ('(_cmle.bucket = "high") and '
                              '(exists F from _cmle.factors where F.feature = "emails_opened")')
    assert parse_rules(format_rules(rules)) == rules
    assert "emails_opened among their top influential factors" in hi.describe()
    scores = pd.DataFrame({
        "propensity": [0.9, 0.9, 0.9, 0.1], "percentile": [99, 95, 85, 10], "bucket": ["high", "high", "high", "low"],
        "factors": [[{"feature": "emails_opened"}], [{"feature": "recency"}, {"feature": "emails_opened"}],
                    [{"feature": "recency"}], None]})
    assert hi.mask(scores).tolist() == [True, True, False, False]
    assert top.mask(scores).tolist() == [True, True, True, False]  # either feature
    # the embedded platform evaluates the same PQL to the same rows
    import duckdb

    con = duckdb.connect()
    con.register("s", scores.assign(i=range(len(scores)), factors=[[{"feature": f["feature"], "contribution": 1.0} for f in fs]
                                             if fs else None for fs in scores["factors"]]))
    got = con.sql(f"SELECT i FROM s WHERE {to_sql(hi.pql('cmle'), 'cmle')} ORDER BY i").fetchall()
    assert [r[0] for r in got] == [0, 1]


@pytest.mark.parametrize("text", ["a:bucket:high:factor=", "a:bucket:high:factor=bad name", "a:top:10:factor=x-y"])
def test_bad_factor_conditions_are_refused(text):
    from cmle.audiences.rules import parse_rules

    with pytest.raises(ParameterError, match="factor="):
        parse_rules(text)
