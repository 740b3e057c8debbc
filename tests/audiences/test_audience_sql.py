"""Audience rules rendered as Data Distiller SQL audiences (golden strings)."""

import pytest

from cmle.audiences import sql
from cmle.audiences.rules import parse_rule

NEWEST = ("SELECT userid, propensity, score, percentile, decile, bucket, model_name, model_version, score_date FROM "
          "(SELECT s._acme.userid AS userid, s._acme.propensity AS propensity, s._acme.score AS score, "
          "s._acme.percentile AS percentile, s._acme.decile AS decile, s._acme.bucket AS bucket, "
          "s._acme.model_name AS model_name, s._acme.model_version AS model_version, s._acme.score_date AS score_date"
          "{factors}, ROW_NUMBER() OVER (PARTITION BY s._acme.userid ORDER BY s._acme.score_date DESC) AS cmle_newest "
          "FROM `cmle_scores_x` s WHERE s._acme.userid IS NOT NULL AND s._acme.propensity IS NOT NULL) newest "
          "WHERE cmle_newest = 1 AND ({where})")


@pytest.mark.parametrize("rule, where", [
    ("m:band:0.2:0.93", "propensity >= 0.2 AND propensity <= 0.93"),
    ("m:band:0.5:", "propensity >= 0.5"),
    ("m:band::0.05", "propensity <= 0.05"),
    ("t:top:10", "percentile >= 91"),
    ("t:top:100", "percentile >= 1"),
    ("b:bucket:high", "bucket IN ('high')"),
    ("b:bucket:high,medium", "bucket IN ('high', 'medium')"),
    ("f:top:5:factor=emails_opened", "(percentile >= 96) AND exists(factors, f -> f.feature IN ('emails_opened'))"),
    ("f:band:0.1:0.2:factor=a,b_c", "(propensity >= 0.1 AND propensity <= 0.2) AND "
                                    "exists(factors, f -> f.feature IN ('a', 'b_c'))"),
])
def test_each_rule_kind_renders_a_where_over_each_profiles_newest_score(rule, where):
    r = parse_rule(rule)
    assert sql.condition(r) == where
    factors = ", s._acme.factors AS factors" if "factor=" in rule else ""
    assert sql.select(r, "cmle_scores_x", "acme") == NEWEST.format(where=where, factors=factors)


def test_the_documented_statements():
    assert sql.create_audience("cmle_audience_t_x", "SELECT 1", "userid", "ECID") == (
        "CREATE AUDIENCE cmle_audience_t_x WITH (primary_identity='userid', identity_namespace='ECID') "
        "AS (SELECT 1)")
    assert sql.drop_audience("cmle_audience_t_x") == "DROP AUDIENCE IF EXISTS cmle_audience_t_x"


def test_nothing_escapes_a_name_or_a_literal():
    assert sql.literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        sql.select(parse_rule("t:top:10"), "scores; DROP TABLE x", "acme")
    with pytest.raises(ValueError):
        sql.select(parse_rule("t:top:10"), "cmle_scores_x", "acme.x")
