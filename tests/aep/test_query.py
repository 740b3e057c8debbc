"""Query Service: psycopg2 against a real PostgreSQL server behind the double's wire
endpoint (Spark SQL sent unchanged), result caps, timeout and cancel, reconnect when the
token expires, CTAS over REST with results in PostgreSQL."""

from __future__ import annotations

import pytest

from aep.helpers import ecid, profile_dataset, profiles_table
from cmle import ingestion
from cmle.errors import ParameterError, QueryError
from cmle.platform.base import Resource


@pytest.fixture
def people(aep):
    ds = profile_dataset(aep)
    ingestion.ingest_tables(aep, ds.id, [profiles_table(30)], key="people", timeout_s=10)
    return ds


def test_spark_sql_is_sent_unchanged_and_answered(aep, double, people):
    sql = (f"SELECT _cmle.region AS region, COUNT(*) AS n, MAX(`_cmle`.age) AS oldest "
           f"FROM {people.table} GROUP BY _cmle.region ORDER BY region")
    df = aep.query(sql)
    assert df.to_dict("records") == [{"region": "north", "n": 15, "oldest": 48}, {"region": "south", "n": 15, "oldest": 49}]
    assert sql in double.wire_queries()  # the wire carried the stages' Spark SQL, not PostgreSQL


def test_results_are_capped(aep, people, caplog):
    df = aep.query(f"SELECT _cmle.userid AS u FROM {people.table}", max_rows=10)
    assert len(df) == 10
    assert "capped at 10 rows" in caplog.text
    assert len(aep.query(f"SELECT _cmle.userid AS u FROM {people.table}", max_rows=10**9)) == 30


def test_sql_error_is_a_query_error(aep, people):
    with pytest.raises(QueryError, match="query failed"):
        aep.query(f"SELECT no_such_column FROM {people.table}")
    assert len(aep.query("SELECT 1 AS one")) == 1  # the session survives


def test_slow_query_is_cancelled_at_the_timeout(aep, double, people):
    double.wire_fault("slow_interactive")
    with pytest.raises(QueryError, match="timed out after 1 s and was cancelled"):
        aep.query(f"SELECT COUNT(*) AS n FROM {people.table}", timeout_s=1.0)
    assert aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")["n"][0] == 30


def test_reconnects_when_the_token_expires(aep, double, people):
    assert aep.query("SELECT 1 AS one")["one"][0] == 1
    double.expire_tokens()  # REST answers 401, the PostgreSQL sessions are terminated
    assert aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")["n"][0] == 30
    assert aep.queries.reconnects == 1
    assert aep.client.transport.tokens.fetches == 2


def test_reconnects_when_the_token_was_refreshed(aep, double, people):
    aep.query("SELECT 1 AS one")
    first = aep.queries._conn
    aep.client.transport.tokens.invalidate(aep.client.transport.tokens.token())
    aep.query("SELECT 1 AS one")
    assert aep.queries._conn is not first and first.closed


def test_ctas_creates_a_dataset_backed_by_a_table(aep, double, people):
    ds = aep.create_table_as("cmle_adults_cmle", f"SELECT _cmle.userid AS userid, _cmle.age AS age "
                                                  f"FROM {people.table} WHERE _cmle.age >= 40", timeout_s=10)
    assert ds.name == ds.table == "cmle_adults_cmle"
    assert double.datasets[ds.id]["tags"]["adobe/pqs/table"] == ["cmle_adults_cmle"]
    with double.admin() as cur:  # the result lives in PostgreSQL
        cur.execute('SELECT COUNT(*) FROM "cmle_adults_cmle"')
        assert cur.fetchone()[0] == 10
    assert aep.read_dataset(ds.id).num_rows == 10
    (q,) = double.queries.values()
    assert "CREATE TABLE cmle_adults_cmle AS (SELECT _cmle.userid" in q["request"]["sql"]
    assert q["request"]["dbName"] == "dev:all"


def _adhoc_schemas(double) -> list[str]:
    return [s["$id"] for s in double.schemas.values() if s.get("meta:class", "").endswith("/data/adhoc")]


def test_ctas_rerun_replaces_rows_and_keeps_the_dataset_id(aep, double, people):
    sql = f"SELECT _cmle.userid AS userid FROM {people.table}"
    first = aep.create_table_as("cmle_all_cmle", sql, timeout_s=10)
    second = aep.create_table_as("cmle_all_cmle", sql + " WHERE _cmle.age < 40", timeout_s=10)
    assert second.id == first.id  # same columns: INSERT INTO the same dataset, its export flow stays valid
    assert aep.query("SELECT COUNT(*) AS n FROM cmle_all_cmle")["n"][0] == 20
    assert aep.read_dataset(second.id).num_rows == 20  # the old batch was reverted: replaced, never appended
    assert [d["name"] for d in double.datasets.values()].count("cmle_all_cmle") == 1
    assert len(_adhoc_schemas(double)) == 1
    assert "INSERT INTO cmle_all_cmle SELECT * FROM (SELECT" in list(double.queries.values())[-1]["request"]["sql"]


def test_ctas_with_other_columns_recreates_and_deletes_the_old_adhoc_schema(aep, double, people):
    first = aep.create_table_as("cmle_all_cmle", f"SELECT _cmle.userid AS userid FROM {people.table}", timeout_s=10)
    second = aep.create_table_as("cmle_all_cmle", f"SELECT _cmle.userid AS userid, _cmle.age AS age "
                                                  f"FROM {people.table}", timeout_s=10)
    assert second.id != first.id  # DROP + CREATE: a new dataset on a new ad-hoc schema
    assert _adhoc_schemas(double) == [second.schema_id]  # the replaced one's schema did not pile up
    assert aep.query("SELECT COUNT(*) AS n FROM cmle_all_cmle")["n"][0] == 30
    aep.delete_resource(Resource("dataset", second.id, second.name))
    assert _adhoc_schemas(double) == []  # deleting a CTAS dataset deletes its ad-hoc schema


def test_ctas_sql_error_reports_the_platform_code(aep):
    with pytest.raises(QueryError, match=r"ended FAILED .*42P01: .*does not exist"):
        aep.create_table_as("cmle_bad_cmle", "SELECT missing_column FROM cmle_nothing_here", timeout_s=10)


def test_ctas_failure_injected(aep, double, people):
    double.faults.behave("fail_query")
    with pytest.raises(QueryError, match="58000"):
        aep.create_table_as("cmle_x_cmle", f"SELECT * FROM {people.table}", timeout_s=10)


def test_ctas_timeout_cancels_the_query(aep, double, people):
    double.faults.behave("hang_query")
    with pytest.raises(QueryError, match="did not finish within 1 s .* it was cancelled"):
        aep.create_table_as("cmle_slow_cmle", f"SELECT * FROM {people.table}", timeout_s=1.0)
    (q,) = double.queries.values()
    assert ("PATCH", "PATCH /data/foundation/query/queries/{queryid}", 202) in double.calls
    import time

    deadline = time.monotonic() + 5
    while q["state"] != "KILLED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q["state"] == "KILLED"
    assert aep.find_dataset("cmle_slow_cmle") is None


def test_ctas_name_must_be_a_table_name(aep):
    with pytest.raises(ParameterError, match="table name"):
        aep.create_table_as("[CMLE] Training set (cmle)", "SELECT 1 AS a")


def test_profile_attributes_merge_profile_datasets(aep):
    from aep.helpers import SCORE_FIELDS, scores_table
    from cmle import naming
    from cmle.platform.base import PROFILE

    people = profile_dataset(aep)
    ingestion.ingest_tables(aep, people.id, [profiles_table(3)], key="p", timeout_s=10)
    fg = aep.get_or_create_field_group(naming.score_field_group("cmle"), SCORE_FIELDS, PROFILE)
    schema = aep.get_or_create_schema(naming.score_schema("cmle"), PROFILE, [fg], profile_enabled=True)
    scores = aep.get_or_create_dataset(naming.scores_dataset("cmle"), schema, profile_enabled=True)
    ingestion.ingest_tables(aep, scores.id, [scores_table({ecid(0): 0.9, ecid(2): 0.1})], key="s", timeout_s=10)
    df = aep.profile_attributes(["propensity", "age"])
    assert df["userid"].tolist() == [ecid(0), ecid(1), ecid(2)]
    assert df["age"].tolist() == [20, 21, 22]
    assert df["propensity"].tolist()[0] == 0.9 and df["propensity"].isna().tolist() == [False, True, False]


def test_transient_engine_failures_are_re_run_within_a_budget(aep, double, people):
    double.wire_fault("overload_interactive", times=2)  # SQLSTATE XX000, as an overloaded engine answers
    assert aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")["n"][0] == 30
    assert aep.queries.retries == 2


def test_transient_failures_beyond_the_budget_fail_clearly(aep, double, people):
    double.wire_fault("overload_interactive", times=50)
    with pytest.raises(QueryError, match=r"query failed \(after \d+ attempts\): .*overloaded .*XX000"):
        aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")
    assert aep.queries.retries == aep.client.transport.policy.max_retries


def test_sql_errors_are_not_re_run(aep, double, people):
    double.wire_fault("fail_interactive")  # a SQL error (42601): re-running cannot help
    with pytest.raises(QueryError, match="injected failure"):
        aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")
    assert aep.queries.retries == 0


def test_a_lost_connection_is_reopened_and_the_query_re_run(aep, double, people):
    aep.query("SELECT 1 AS one")
    double.wire_fault("drop_interactive", times=2)
    assert aep.query(f"SELECT COUNT(*) AS n FROM {people.table}")["n"][0] == 30
    assert aep.queries.reconnects == 2


@pytest.mark.parametrize("sql", [
    "$$ BEGIN\n    CREATE TABLE cmle_block_cmle AS SELECT 1 AS x;\nEND\n$$;",  # Adobe's layout: END on its own line
    "$$ BEGIN\n  DROP TABLE IF EXISTS cmle_block_cmle;\n  CREATE TABLE cmle_block_cmle AS (SELECT 1 AS x);\n"
    "  EXCEPTION WHEN OTHER THEN SET @ret = SELECT 'ERROR';\nEND\n$$;",
])
def test_the_double_accepts_anonymous_blocks(aep, double, sql):
    query_id = aep.queries.submit(sql, "block")
    assert aep.queries.wait(query_id, 10, "block")["state"] == "SUCCESS"
    assert aep.find_dataset("cmle_block_cmle") is not None


def test_a_ctas_submitted_late_is_processed_once(aep, double, people):
    """The query POST is dropped and Query Service runs it late_s later: the adapter looks it
    up for longer than that and never submits it twice (no second dataset, no orphan)."""
    double.late_s = 0.6
    aep.client.transport.lookup_s = 2.0
    double.faults.add("late", "POST", "/data/foundation/query/queries", times=1)
    ds = aep.create_table_as("cmle_late_cmle", f"SELECT _cmle.userid AS userid FROM {people.table}", timeout_s=10)
    assert len(double.queries) == 1
    assert [d["name"] for d in double.datasets.values()].count("cmle_late_cmle") == 1
    assert aep.query("SELECT COUNT(*) AS n FROM cmle_late_cmle")["n"][0] == 30 and ds.table == "cmle_late_cmle"
    assert aep.client.transport.stats["creations_found_after_failure"] == 1


def test_profile_attributes_come_from_this_owners_datasets_only(aep):
    from aep.helpers import SCORE_FIELDS, scores_table
    from cmle import naming
    from cmle.platform.base import PROFILE

    def scores_of(owner: str, scores: dict) -> None:
        fg = aep.get_or_create_field_group(naming.score_field_group(owner), SCORE_FIELDS, PROFILE)
        schema = aep.get_or_create_schema(naming.score_schema(owner), PROFILE, [fg], profile_enabled=True)
        ds = aep.get_or_create_dataset(naming.scores_dataset(owner), schema, profile_enabled=True)
        ingestion.ingest_tables(aep, ds.id, [scores_table(scores)], key=owner, timeout_s=10)

    scores_of("cmle", {ecid(0): 0.9, ecid(1): 0.2})
    scores_of("someone", {ecid(1): 0.7, ecid(5): 0.8})  # another owner's scores in the same sandbox
    df = aep.profile_attributes(["propensity"])
    assert dict(zip(df["userid"], df["propensity"])) == {ecid(0): 0.9, ecid(1): 0.2}
