"""PQL subset -> SQL predicate for the embedded platform."""

import pytest

from cmle.errors import PlatformError
from cmle.pql import to_sql


@pytest.mark.parametrize("pql, sql", [
    ("_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93", '"propensity" >= 0.2 AND "propensity" <= 0.93'),
    ('_cmle.bucket = "high"', "\"bucket\" = 'high'"),
    ("_cmle.percentile >= 91 or not (_cmle.decile != 3)", '"percentile" >= 91 OR NOT ( "decile" <> 3 )'),
    ('_cmle.name = "O\'Brien"', "\"name\" = 'O''Brien'"),
])
def test_translation(pql, sql):
    assert to_sql(pql, "cmle") == sql


@pytest.mark.parametrize("pql, match", [
    ("person.age > 3", "not a field under _cmle"),
    ("_cmle.a.b > 3", "not a field under _cmle"),
    ("(_cmle.x > 1", "unbalanced"),
    ("_cmle.x > 1)", "unbalanced"),
    ("_cmle.x ~ 1", "not supported"),
    ("_cmle.x > 1; DROP TABLE t", "not supported"),
])
def test_refuses_what_it_cannot_evaluate(pql, match):
    with pytest.raises(PlatformError, match=match):
        to_sql(pql, "cmle")
