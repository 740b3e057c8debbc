"""Batch ingestion: Parquet through our own PUT, large files through the large-file API,
completion polled to a terminal status, failures with the platform's error codes,
revert, reading a dataset back."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aep.helpers import ecid, events_dataset, profile_dataset, profiles_table
from cmle import holder, ingestion
from cmle.errors import BatchFailedError, DataCheckError


def test_ingest_is_idempotent_by_key(aep, double):
    ds = profile_dataset(aep)
    first = ingestion.ingest_tables(aep, ds.id, [profiles_table(5), profiles_table(3, start=5)], key="k1", timeout_s=10)
    assert first.batch.status == "success" and first.batch.records == 8 and not first.reused
    again = ingestion.ingest_tables(aep, ds.id, [profiles_table(5)], key="k1", timeout_s=10)
    assert again.reused and again.batch.id == first.batch.id
    assert len(double.batches) == 1
    tags = double.batches[first.batch.id]["tags"]
    assert tags["cmle.key"] == ["k1"] and tags["cmle.holder"] == [holder.this_process()]
    assert double.batches[first.batch.id]["inputFormat"]["format"] == "Parquet"
    assert aep.query(f"SELECT COUNT(*) AS n FROM {ds.table}")["n"][0] == 8


def test_replace_reverts_the_other_batches(aep):
    ds = profile_dataset(aep)
    ingestion.ingest_tables(aep, ds.id, [profiles_table(4)], key="run1", timeout_s=10)
    ingestion.ingest_tables(aep, ds.id, [profiles_table(2, start=10)], key="run2", replace=True, timeout_s=10)
    statuses = sorted(b.status for b in aep.list_batches(ds.id))
    assert statuses == ["inactive", "success"]
    users = aep.query(f"SELECT _cmle.userid AS u FROM {ds.table} ORDER BY u")["u"].tolist()
    assert users == [ecid(10), ecid(11)]


def test_events_with_nested_objects_are_queryable(aep):
    from aep.helpers import events_table

    ds = events_dataset(aep)
    ingestion.ingest_tables(aep, ds.id, [events_table(4)], key="ev", timeout_s=10)
    df = aep.query(f"SELECT eventType, COUNT(DISTINCT _cmle.userid) AS users, "
                   f"SUM(directMarketing.sends.value) AS sends, MAX(web.webPageDetails.URL) AS url "
                   f"FROM {ds.table} GROUP BY eventType ORDER BY eventType")
    assert df["eventType"].tolist() == ["directMarketing.emailOpened", "directMarketing.emailSent", "web.formFilledOut"]
    assert df["users"].tolist() == [4, 4, 4]
    assert df["sends"].tolist()[:2] == [4.0, 4.0] and df["url"].tolist()[2] == "https://x/3"


def test_failed_batch_raises_with_the_platform_error_code(aep, double):
    ds = profile_dataset(aep)
    bad = pa.table({"_cmle": pa.array([{"userid": None, "age": 3, "region": "x"}],
                                      pa.struct([("userid", pa.string()), ("age", pa.int64()), ("region", pa.string())]))})
    with pytest.raises(BatchFailedError, match="DCVS-1107-400") as err:
        ingestion.ingest_tables(aep, ds.id, [bad], key="bad", timeout_s=10)
    assert "primary identity" in str(err.value)
    # A failed batch contributes no row, and the next attempt makes a new batch.
    double.faults.behave("fail_batch")
    with pytest.raises(BatchFailedError, match="INGEST-1290-500"):
        ingestion.ingest_tables(aep, ds.id, [profiles_table(2)], key="k", timeout_s=10)
    ok = ingestion.ingest_tables(aep, ds.id, [profiles_table(2)], key="k", timeout_s=10)
    assert ok.batch.status == "success" and not ok.reused
    assert aep.query(f"SELECT COUNT(*) AS n FROM {ds.table}")["n"][0] == 2


def test_type_mismatch_fails_the_batch(aep):
    ds = profile_dataset(aep)
    bad = pa.table({"_cmle": pa.array([{"userid": ecid(1), "age": "old"}],
                                      pa.struct([("userid", pa.string()), ("age", pa.string())]))})
    with pytest.raises(BatchFailedError, match="DCVS-1106-400"):
        ingestion.ingest_tables(aep, ds.id, [bad], key="bad", timeout_s=10)


def test_large_files_use_the_large_file_api(aep, double):
    ds = profile_dataset(aep)
    aep.batches.large_file_bytes = 1024
    aep.batches.chunk_bytes = 700
    res = ingestion.ingest_tables(aep, ds.id, [profiles_table(200)], key="big", timeout_s=10)
    assert res.batch.records == 200
    patches = [c for c in double.calls if c[0] == "PATCH" and "/files/" in c[1]]
    assert len(patches) >= 2
    assert aep.query(f"SELECT COUNT(*) AS n FROM {ds.table}")["n"][0] == 200


def test_read_dataset_downloads_the_batch_files(aep):
    ds = profile_dataset(aep)
    ingestion.ingest_tables(aep, ds.id, [profiles_table(3)], key="k", timeout_s=10)
    table = aep.read_dataset(ds.id)
    assert table.num_rows == 3 and table.column("_cmle").type.field("userid").type == pa.string()
    assert aep.read_dataset(ds.id, columns=["_cmle"]).column_names == ["_cmle"]


def test_completing_twice_is_safe(aep, double):
    ds = profile_dataset(aep)
    bid = aep.create_batch(ds.id, {"cmle.key": "twice"})
    aep.upload_file(bid, ds.id, "part-0.parquet", ingestion.parquet_bytes(profiles_table(1)))
    aep.complete_batch(bid)
    aep.complete_batch(bid)
    assert ingestion.wait_for_batch(aep, bid, timeout_s=10, poll_s=0.02).status == "success"


def _with_ids(ids: list[str]) -> pa.Table:
    rows = [{"userid": u, "age": 30, "region": "north"} for u in ids]
    return pa.table({"_cmle": pa.array(rows, pa.struct([("userid", pa.string()), ("age", pa.int64()),
                                                       ("region", pa.string())]))})


# Each half of an ECID must fit a signed 64-bit integer (at most 9223372036854775807).
TOO_BIG_HALF = "9223372036854775808" + "0" * 19


def test_the_double_rejects_invalid_ecids_at_batch_processing(aep, double):
    ds = profile_dataset(aep)
    batch_id = aep.create_batch(ds.id)
    # Past the adapter's own check, straight to the batch API, as another client could.
    aep.batches.upload_file(batch_id, ds.id, "part-0.parquet",
                            ingestion.parquet_bytes(_with_ids([ecid(1), TOO_BIG_HALF])))
    aep.complete_batch(batch_id)
    with pytest.raises(BatchFailedError, match="UPLIB-101003-400: .*Invalid ECID"):
        ingestion.wait_for_batch(aep, batch_id, timeout_s=10, poll_s=0.02)
    assert aep.read_dataset(ds.id).num_rows == 0  # a failed batch contributes no row


@pytest.mark.parametrize("bad", [TOO_BIG_HALF, "12345", "u0001" + "0" * 33])
def test_invalid_ecids_are_refused_before_upload(aep, double, bad):
    ds = profile_dataset(aep)
    with pytest.raises(DataCheckError, match="invalid ECID .*signed 64-bit"):
        ingestion.ingest_tables(aep, ds.id, [_with_ids([ecid(1), bad])], key="bad", timeout_s=10)
    assert not any(files for files in double.batch_files.values())  # nothing was uploaded
