"""A batch a killed run left `loading` is aborted with the Batch Ingestion API's ABORT action
and replaced, without waiting; the double refuses what AEP refuses around ABORT."""

from __future__ import annotations

import subprocess
import time

import pytest

from aep.helpers import profile_dataset, profiles_table
from cmle import holder, ingestion
from cmle.platform.aep.errors import AEPError


def dead_holder() -> str:
    """The holder record of a process of this host that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    host = holder.this_process().split("/")[0]
    return f"{host}/{proc.pid}/1"


def test_a_killed_runs_loading_batch_is_aborted_and_replaced(aep, double, caplog):
    ds = profile_dataset(aep)
    stale = aep.create_batch(ds.id, {ingestion.KEY_TAG: "k", ingestion.HOLDER_TAG: dead_holder()})
    aep.upload_file(stale, ds.id, "part-00000.parquet", ingestion.parquet_bytes(profiles_table(2)))
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        result = ingestion.ingest_tables(aep, ds.id, [profiles_table(3)], key="k", timeout_s=20)
    assert time.monotonic() - started < 15
    assert double.batches[stale]["status"] == "aborted"
    assert result.batch.id != stale and result.batch.status == "success" and result.batch.records == 3
    assert "left loading by" in caplog.text and "aborting it" in caplog.text
    assert aep.query(f"SELECT COUNT(*) AS n FROM {ds.table}")["n"][0] == 3
    # the re-run after that finds the new batch and sends nothing
    again = ingestion.ingest_tables(aep, ds.id, [profiles_table(3)], key="k", timeout_s=20)
    assert again.reused and again.batch.id == result.batch.id


def test_a_live_runs_loading_batch_is_not_aborted(aep, double):
    ds = profile_dataset(aep)
    live = aep.create_batch(ds.id, {ingestion.KEY_TAG: "k", ingestion.HOLDER_TAG: holder.this_process()})
    assert not ingestion.is_abandoned(aep.get_batch(live))
    assert ingestion.abort_abandoned(aep, ds.id) == []
    assert double.batches[live]["status"] == "loading"


def test_bad_input_creates_no_batch_and_a_failed_upload_aborts_its_batch(aep, double):
    ds = profile_dataset(aep)

    def unreadable():
        raise ValueError("the score file is not Parquet")
        yield  # pragma: no cover

    with pytest.raises(ValueError):
        ingestion.ingest_tables(aep, ds.id, unreadable(), key="bad", timeout_s=10)
    assert double.batches == {}

    def second_fails():
        yield profiles_table(2)
        raise ValueError("the second file is not Parquet")

    with pytest.raises(ValueError):
        ingestion.ingest_tables(aep, ds.id, second_fails(), key="bad", timeout_s=10)
    assert [b["status"] for b in double.batches.values()] == ["aborted"]


def test_the_double_refuses_abort_of_a_finished_batch_and_complete_of_an_aborted_one(aep, double):
    ds = profile_dataset(aep)
    done = ingestion.ingest_tables(aep, ds.id, [profiles_table(2)], key="ok", timeout_s=10).batch
    with pytest.raises(AEPError) as refused:
        aep.abort_batch(done.id)
    assert refused.value.status == 400 and double.batches[done.id]["status"] == "success"
    open_batch = aep.create_batch(ds.id, {ingestion.KEY_TAG: "x"})
    aep.abort_batch(open_batch)
    aep.abort_batch(open_batch)  # a retried abort is not an error
    c = aep.client
    with pytest.raises(AEPError) as again:
        c.transport.request("POST", c.url("ingestion", f"/batches/{open_batch}"), safe=False,
                            params={"action": "COMPLETE"}, what="complete an aborted batch")
    assert again.value.status == 400 and double.batches[open_batch]["status"] == "aborted"
