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


def test_exists_over_an_array_of_objects_becomes_a_list_filter():
    from cmle.pql import to_sql

    sql = to_sql('_cmle.score >= 75 and (exists F from _cmle.factors where F.feature = "a" or F.feature = "b")',
                 "cmle")
    assert sql == ('"score" >= 75 AND ( len(list_filter("factors", lambda F: F."feature" = \'a\' OR '
                   'F."feature" = \'b\')) > 0 )')
    assert to_sql('exists X from _cmle.factors: X.contribution > 0.5', "cmle") == \
        'len(list_filter("factors", lambda X: X."contribution" > 0.5)) > 0'
    for bad in ('exists F in _cmle.factors where F.feature = "a"', 'exists F from other.factors where F.x = 1',
                'exists F from _cmle.factors where G.feature = "a"'):
        with pytest.raises(PlatformError):
            to_sql(bad, "cmle")
