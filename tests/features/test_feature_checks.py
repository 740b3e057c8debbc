"""Every data check, on statistics and on real tables through the platform's query engine."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cmle.features import checks
from cmle.features.checks import SetStats

FEATURES = ["n_a", "minutes_b", "segment"]


def _by_name(results):
    return {r.name: r for r in results}


def good_stats(**changes) -> SetStats:
    values = dict(rows=1200, ids=1200, distinct_ids=1200, positives=600, negatives=600, labels=1200,
                  non_null={"n_a": 1200, "minutes_b": 30, "segment": 1200})
    values.update(changes)
    return SetStats(**values)


def test_a_good_set_passes_every_check():
    results = checks.evaluate(good_stats(), labelled=True, min_positives=500, min_negatives=500)
    assert [r.name for r in results] == ["rows", "null_ids", "duplicate_ids", "labels", "positives", "negatives",
                                         "null_features"]
    assert all(r.passed for r in results)
    assert checks.failures_message("x", results) == ""


@pytest.mark.parametrize("changes,check,words", [
    (dict(rows=0, ids=0, distinct_ids=0, positives=0, negatives=0, labels=0), "rows", "empty"),
    (dict(ids=1195, distinct_ids=1195, positives=595), "null_ids", "5 rows have no profile id"),
    (dict(distinct_ids=1197), "duplicate_ids", "3 rows repeat a profile id"),
    (dict(negatives=598, labels=1199), "labels", "2 rows have a NULL label"),
    (dict(positives=499, negatives=701), "positives", "only 499 positives"),
    (dict(positives=701, negatives=499), "negatives", "only 499 negatives"),
    (dict(non_null={"n_a": 1200, "minutes_b": 0, "segment": 1200}), "null_features", "minutes_b"),
])
def test_each_check_fails_on_what_it_guards(changes, check, words):
    results = _by_name(checks.evaluate(good_stats(**changes), labelled=True, min_positives=500, min_negatives=500))
    assert not results[check].passed
    message = checks.failures_message("the training set", results.values())
    assert f"[{check}]" in message and words in message


def test_min_counts_and_null_rate_are_configurable():
    stats = good_stats(positives=40, negatives=1160, non_null={"n_a": 1200, "minutes_b": 100, "segment": 1200})
    assert all(r.passed for r in checks.evaluate(stats, True, min_positives=40, min_negatives=1))
    strict = _by_name(checks.evaluate(stats, True, min_positives=40, min_negatives=1, max_null_rate=0.9))
    assert not strict["null_features"].passed and strict["null_features"].observed == "minutes_b"
    with pytest.raises(ValueError):
        checks.evaluate(stats, True, max_null_rate=0.0)


def test_scoring_sets_skip_label_and_null_checks():
    stats = good_stats(positives=0, negatives=0, labels=0, non_null={"n_a": 0})
    results = checks.evaluate(stats, labelled=False, check_nulls=False)
    assert [r.name for r in results] == ["rows", "null_ids", "duplicate_ids"] and all(r.passed for r in results)


def test_stats_come_from_one_query_on_the_platform(platform):
    table = pa.table({
        "userid": ["u1", "u2", "u2", None, "u4", "u5"],
        "snapshot_ts": pa.array([0] * 6, pa.timestamp("us", tz="UTC")),
        "label": pa.array([1, 0, 0, 1, None, 2], pa.int32()),
        "n_a": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "minutes_b": pa.array([None] * 6, pa.float64()),
        "segment": ["x", None, "y", "z", "x", "y"],
    })
    ds = platform.put_table("cmle_test_checks_cmle", table)
    stats = checks.collect_stats(platform, ds.table, FEATURES, labelled=True)
    assert (stats.rows, stats.null_ids, stats.duplicate_ids) == (6, 1, 1)
    assert (stats.positives, stats.negatives, stats.bad_labels) == (2, 2, 2)
    assert stats.null_rates() == pytest.approx({"n_a": 0.0, "minutes_b": 1.0, "segment": 1 / 6})
    failed = {r.name for r in checks.failed(checks.evaluate(stats, True, min_positives=3, min_negatives=1))}
    assert failed == {"null_ids", "duplicate_ids", "labels", "positives", "null_features"}


def test_stats_sql_is_spark_sql():
    sql = checks.stats_sql("cmle_training_set_cmle", ["a", "b"], labelled=True)
    assert "COUNT(DISTINCT userid)" in sql and "COUNT(`b`) AS nn_1" in sql and "`cmle_training_set_cmle`" in sql
