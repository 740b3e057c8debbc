"""The embedded platform keeps AEP's semantics: get-or-create, whole batches, CTAS, export."""

from __future__ import annotations

import datetime as dt
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import ingestion, naming, storage
from cmle.errors import BatchFailedError, PlatformError, QueryError
from cmle.platform.base import BATCH_SUCCESS, EXPERIENCE_EVENT, PROFILE, Platform
from cmle.platform.local import LocalPlatform

UTC = dt.timezone.utc


def events(n: int, start: int = 0, user_prefix: str = "u") -> pa.Table:
    ts = [dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i) for i in range(start, start + n)]
    return pa.table({
        "_id": [f"e{i}" for i in range(start, start + n)],
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "eventType": ["web.webpagedetails.pageViews"] * n,
        "_cmle": pa.array([{"userid": f"{user_prefix}{i % 7}"} for i in range(start, start + n)]),
    })


@pytest.fixture
def ee_dataset(platform):
    fg = platform.get_or_create_field_group(naming.event_field_group("t"), {"userid": "string"}, EXPERIENCE_EVENT)
    schema = platform.get_or_create_schema(naming.event_schema("t"), EXPERIENCE_EVENT, [fg])
    return platform.get_or_create_dataset(naming.events_dataset("t"), schema)


def test_is_a_platform(platform):
    assert isinstance(platform, Platform)
    assert platform.tenant_id == "cmle"


def test_get_or_create_is_idempotent(platform, ee_dataset):
    fg = platform.get_or_create_field_group(naming.event_field_group("t"), {"userid": "string"}, EXPERIENCE_EVENT)
    schema = platform.get_or_create_schema(naming.event_schema("t"), EXPERIENCE_EVENT, [fg])
    again = platform.get_or_create_dataset(naming.events_dataset("t"), schema)
    assert again == ee_dataset
    kinds = [r.kind for r in platform.list_resources()]
    assert kinds.count("fieldgroup") == 1 and kinds.count("schema") == 1 and kinds.count("dataset") == 1
    assert ee_dataset.table == naming.table_name(naming.events_dataset("t"))


def test_get_or_create_is_safe_across_threads(platform):
    ids = []

    def create():
        p = LocalPlatform(platform.root)
        ids.append(p.get_or_create_field_group("[CMLE] race (t)", {"userid": "string"}, PROFILE))
        p.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1


def test_schema_checks(platform):
    fg = platform.get_or_create_field_group("[CMLE] p (t)", {"userid": "string"}, PROFILE)
    with pytest.raises(PlatformError, match="extends profile"):
        platform.get_or_create_schema("[CMLE] wrong (t)", EXPERIENCE_EVENT, [fg])
    nouser = platform.get_or_create_field_group("[CMLE] n (t)", {"x": "number"}, PROFILE)
    with pytest.raises(PlatformError, match="identity field"):
        platform.get_or_create_schema("[CMLE] noid (t)", PROFILE, [nouser])
    with pytest.raises(PlatformError, match="unsupported XDM types"):
        platform.get_or_create_field_group("[CMLE] bad (t)", {"x": "complex"}, PROFILE)


def test_batch_success_and_idempotent_reingest(platform, ee_dataset):
    first = ingestion.ingest_tables(platform, ee_dataset.id, [events(10), events(5, start=10)], key="gen-1")
    assert first.batch.status == "success" and first.batch.records == 15 and not first.reused
    again = ingestion.ingest_tables(platform, ee_dataset.id, [events(10), events(5, start=10)], key="gen-1")
    assert again.reused and again.batch.id == first.batch.id
    assert len(platform.list_batches(ee_dataset.id)) == 1
    assert platform.query(f"SELECT count(*) AS n FROM {ee_dataset.table}")["n"][0] == 15


def test_batch_that_fails_midway_leaves_nothing(platform, ee_dataset):
    good, bad = events(10), events(5, start=10).drop_columns(["_id"])  # second file invalid
    with pytest.raises(BatchFailedError, match="required ExperienceEvent fields missing"):
        ingestion.ingest_tables(platform, ee_dataset.id, [good, bad], key="gen-bad")
    assert platform.read_dataset(ee_dataset.id).num_rows == 0
    (failed,) = platform.list_batches(ee_dataset.id)
    assert failed.status == "failed" and failed.errors
    assert not list((platform.root / "staging").iterdir()), "failed batch files are removed"
    # a retry with good data succeeds and the failed batch still contributes nothing
    ok = ingestion.ingest_tables(platform, ee_dataset.id, [good], key="gen-bad")
    assert ok.batch.records == 10
    assert platform.read_dataset(ee_dataset.id).num_rows == 10


@pytest.mark.parametrize("mutate, reason", [
    (lambda t: t.set_column(3, "_cmle", pa.array([{"userid": None}] * t.num_rows,
                                                  pa.struct([("userid", pa.string())]))), "without identity"),
    (lambda t: t.set_column(3, "_cmle", pa.array([{"userid": "u", "extra": 1}] * t.num_rows)), "not in the schema"),
    (lambda t: t.set_column(3, "_cmle", pa.array([{"userid": 5}] * t.num_rows)), "the schema says string"),
    (lambda t: t.drop_columns(["_cmle"]), "under the struct _cmle"),
])
def test_invalid_files_fail_the_batch(platform, ee_dataset, mutate, reason):
    with pytest.raises(BatchFailedError, match=reason):
        ingestion.ingest_tables(platform, ee_dataset.id, [mutate(events(3))], key="k")
    assert platform.read_dataset(ee_dataset.id).num_rows == 0


def test_unreadable_file_and_incompatible_columns_fail(platform, ee_dataset):
    bid = platform.create_batch(ee_dataset.id)
    platform.upload_file(bid, ee_dataset.id, "junk.parquet", b"not parquet")
    platform.complete_batch(bid)
    assert platform.get_batch(bid).status == "failed"
    ingestion.ingest_tables(platform, ee_dataset.id, [events(3)], key="a")
    other = events(3).append_column("extra", pa.array([1, 2, 3]))
    with pytest.raises(BatchFailedError, match="do not match"):
        ingestion.ingest_tables(platform, ee_dataset.id, [other], key="b")


def test_replace_reverts_previous_batches(platform, ee_dataset):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(4)], key="v1", replace=True)
    ingestion.ingest_tables(platform, ee_dataset.id, [events(6)], key="v2", replace=True)
    assert platform.read_dataset(ee_dataset.id).num_rows == 6
    statuses = [b.status for b in platform.list_batches(ee_dataset.id)]
    assert statuses == ["deleted", "success"]


def test_query_translates_spark_sql_and_caps_rows(platform, ee_dataset):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(20)], key="q")
    df = platform.query(f"SELECT _cmle.userid AS userid, count(*) AS n FROM {ee_dataset.table} "
                        "GROUP BY _cmle.userid ORDER BY userid")
    assert list(df["userid"]) == [f"u{i}" for i in range(7)]
    assert df["n"].sum() == 20
    capped = platform.query(f"SELECT * FROM {ee_dataset.table}", max_rows=5)
    assert len(capped) == 5


def test_query_errors_are_clear(platform):
    with pytest.raises(QueryError, match="nosuch"):
        platform.query("SELECT * FROM nosuch")
    with pytest.raises(QueryError, match="does not parse"):
        platform.query("SELEC FROM WHERE")


def test_query_timeout_cancels(platform):
    slow = "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1"
    with pytest.raises(QueryError, match="timed out"):
        platform.query(slow, timeout_s=0.5)


def test_ctas_replaces_never_appends(platform, ee_dataset):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(14)], key="c")
    sql = f"SELECT _cmle.userid AS userid, count(*) AS n FROM {ee_dataset.table} GROUP BY _cmle.userid"
    first = platform.create_table_as("cmle_training_set_t", sql)
    second = platform.create_table_as("cmle_training_set_t", sql)
    assert first.id == second.id
    assert platform.query("SELECT count(*) AS c FROM cmle_training_set_t")["c"][0] == 7


def test_ctas_written_in_parallel_parts_keeps_every_row(tmp_path):
    """A large result is written one part per thread; the dataset holds all of it, once."""
    platform = LocalPlatform(tmp_path / "p", threads=4)
    n = 600_000
    # A GROUP BY's result comes out of both threads (range() alone would come out of one).
    ds = platform.create_table_as("cmle_big_t", f"SELECT range % {n} AS i, count(*) AS m "
                                                f"FROM range({3 * n}) GROUP BY ALL")
    assert len(list((platform.root / "lake" / ds.id).glob("*/part-*.parquet"))) >= 2
    assert sum(b.records for b in platform.list_batches(ds.id) if b.status == BATCH_SUCCESS) == n
    got = platform.query("SELECT count(*) AS c, count(DISTINCT i) AS d, sum(i) AS s, min(m) AS m FROM cmle_big_t")
    assert (int(got["c"][0]), int(got["d"][0]), int(got["s"][0]), int(got["m"][0])) == (n, n, n * (n - 1) // 2, 3)
    # An empty result still has its schema.
    empty = platform.create_table_as("cmle_empty_t", "SELECT 1 AS a, 'x' AS b WHERE false")
    assert platform.read_dataset(empty.id).schema.names == ["a", "b"]
    assert platform.read_dataset(empty.id).num_rows == 0
    platform.close()


def test_put_table_keeps_row_order(tmp_path):
    platform = LocalPlatform(tmp_path / "p", threads=2)
    values = list(range(300_000, 0, -1))
    ds = platform.put_table("cmle_ordered_t", pa.table({"v": values}))
    assert platform.read_dataset(ds.id).column("v").to_pylist() == values
    platform.close()


def test_readers_see_whole_batches_while_a_writer_writes(platform, ee_dataset):
    """Concurrent readers always see a multiple of the batch size: never part of a batch."""
    seen, errors, stop = [], [], threading.Event()

    def reader():
        p = LocalPlatform(platform.root)
        while not stop.is_set():
            try:
                seen.append(int(p.query(f"SELECT count(*) AS c FROM {ee_dataset.table}")["c"][0]))
            except QueryError as exc:  # the view may not exist before the first batch
                errors.append(exc)
        p.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(6):
            ingestion.ingest_tables(platform, ee_dataset.id, [events(50, start=i * 50), events(50, start=i * 50 + 1000)],
                                    key=f"w{i}")
    finally:
        stop.set()
        t.join()
    assert seen and all(n % 100 == 0 for n in seen)
    assert platform.read_dataset(ee_dataset.id).num_rows == 600


def test_export_layout_and_newest(platform, ee_dataset, settings):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(9)], key="e")
    first = platform.export_dataset(ee_dataset.id, "cmle/egress", compression="gzip")
    second = platform.export_dataset(ee_dataset.id, "cmle/egress", compression="gzip")
    assert first.export_time != second.export_time
    assert first.url.endswith(f"cmle/egress/{ee_dataset.id}/exportTime={first.export_time}")
    newest = storage.newest_export(platform.storage_url, "cmle/egress", ee_dataset.id)
    assert newest.export_time == max(first.export_time, second.export_time)
    assert storage.read_export(newest.url).num_rows == 9
    meta = pq.ParquetFile(second.files[0]).metadata
    assert meta.row_group(0).column(0).compression.lower() == "gzip"


def test_labels(platform, ee_dataset):
    assert platform.get_labels(ee_dataset.id) == set()
    platform.set_labels(ee_dataset.id, {"C9", "C1"})
    assert platform.get_labels(ee_dataset.id) == {"C1", "C9"}


def _scores_dataset(platform):
    fg = platform.get_or_create_field_group("[CMLE] s (t)", {"userid": "string", "propensity": "number"}, PROFILE)
    schema = platform.get_or_create_schema("[CMLE] ss (t)", PROFILE, [fg], profile_enabled=True)
    return platform.get_or_create_dataset("[CMLE] scores (t)", schema, profile_enabled=True)


def test_profile_upsert_and_audiences(platform):
    ds = _scores_dataset(platform)
    row = lambda u, p: {"userid": u, "propensity": p}  # noqa: E731
    ingestion.ingest_tables(platform, ds.id, [pa.table({"_cmle": pa.array([row("a", 0.9), row("b", 0.1)])})], key="r1")
    ingestion.ingest_tables(platform, ds.id, [pa.table({"_cmle": pa.array([row("a", 0.3)])})], key="r2")
    prof = platform.profile_attributes(["propensity"])
    assert dict(zip(prof["userid"], prof["propensity"])) == {"a": 0.3, "b": 0.1}
    aud = platform.get_or_create_audience("[CMLE] Audience mid (t)", "_cmle.propensity >= 0.2 and _cmle.propensity <= 0.5")
    assert platform.get_or_create_audience(aud.name, aud.pql).id == aud.id
    assert platform.evaluate_audiences([aud.id]) == {aud.id: 1}
    act = platform.activate_audience(aud, "local-files", ["propensity"])
    assert act.status == "success" and act.members == 1
    members = pq.read_table(act.location).to_pydict()
    assert members == {"userid": ["a"], "propensity": [0.3]}
    log_lines = (platform.root / "destinations" / "local_files" / "activation_log.jsonl").read_text().splitlines()
    assert len(log_lines) == 1 and '"status": "success"' in log_lines[0]


def test_audience_with_unsupported_pql_is_refused(platform):
    with pytest.raises(PlatformError, match="not a field under _cmle"):
        platform.get_or_create_audience("[CMLE] x (t)", "person.age > 3")


def test_delete_resources(platform, ee_dataset):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(3)], key="d")
    for r in platform.list_resources():
        platform.delete_resource(r)
        platform.delete_resource(r)  # idempotent
    assert platform.list_resources() == []
    assert platform.find_dataset(ee_dataset.name) is None


def test_ctas_with_key_skips_when_content_is_current(platform, ee_dataset):
    ingestion.ingest_tables(platform, ee_dataset.id, [events(14)], key="c")
    sql = f"SELECT _cmle.userid AS userid, count(*) AS n FROM {ee_dataset.table} GROUP BY _cmle.userid"
    ds = platform.create_table_as("cmle_scoring_set_t", sql, key="k1")
    version = ingestion.dataset_version(platform, ds.id)
    platform.create_table_as("cmle_scoring_set_t", sql, key="k1")
    assert ingestion.dataset_version(platform, ds.id) == version, "same key: no new batch"
    platform.create_table_as("cmle_scoring_set_t", sql, key="k2")
    assert ingestion.dataset_version(platform, ds.id) != version
    assert platform.query("SELECT count(*) AS c FROM cmle_scoring_set_t")["c"][0] == 7
