"""Export layout, atomic writes and newest-export selection."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from cmle import storage
from cmle.errors import NotFoundError

UTC = dt.timezone.utc


def test_layout_and_newest_by_parsed_time(tmp_path):
    root = str(tmp_path / "landing")
    for when in (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
                 dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)):
        with storage.atomic_export_folder(root, "cmle/egress", "ds1", when=when) as (folder, t):
            storage.write_table(folder, pa.table({"x": [int(t[-2:])]}), "part-00000.parquet")
            storage.write_table(folder, pa.table({"x": [0]}), "part-00001.parquet")
    exports = storage.list_exports(root, "cmle/egress", "ds1")
    assert [e.export_time for e in exports] == ["20251231235959", "20260102030405", "20260102030406"]
    newest = storage.newest_export(root, "cmle/egress", "ds1")
    assert newest.url == f"{root}/cmle/egress/ds1/exportTime=20260102030406"
    assert sorted(storage.read_export(newest.url).column("x").to_pylist()) == [0, 6]  # every part is read
    assert storage.count_rows(newest.url) == 2
    batches = list(storage.iter_export_batches(newest.url, batch_rows=1))
    assert sum(b.num_rows for b in batches) == 2


def test_crash_mid_write_is_never_picked(tmp_path):
    root = str(tmp_path)
    with storage.atomic_export_folder(root, "p", "ds", when=dt.datetime(2026, 1, 1, tzinfo=UTC)) as (folder, _):
        storage.write_table(folder, pa.table({"x": [1]}))
    with pytest.raises(RuntimeError):
        with storage.atomic_export_folder(root, "p", "ds", when=dt.datetime(2026, 2, 1, tzinfo=UTC)) as (folder, _):
            storage.write_table(folder, pa.table({"x": [2]}))
            raise RuntimeError("crash")
    assert storage.newest_export(root, "p", "ds").export_time == "20260101000000"
    assert [p.name for p in (tmp_path / "p" / "ds").iterdir()] == ["exportTime=20260101000000"]


def test_in_progress_and_foreign_folders_are_skipped(tmp_path):
    base = tmp_path / "p" / "ds"
    (base / "exportTime=20260101000000").mkdir(parents=True)
    (base / "exportTime=20260101000000" / "part-0.parquet").write_bytes(b"")
    (base / "exportTime=20270101000000").mkdir()
    (base / "exportTime=20270101000000" / storage.IN_PROGRESS).write_bytes(b"")
    (base / ".tmp-20280101000000-abcd").mkdir()
    (base / "exportTime=garbage").mkdir()
    assert storage.newest_export(str(tmp_path), "p", "ds").export_time == "20260101000000"


def test_same_second_gets_a_distinct_export_time(tmp_path):
    when = dt.datetime(2026, 1, 1, tzinfo=UTC)
    times = []
    for _ in range(3):
        with storage.atomic_export_folder(str(tmp_path), "p", "ds", when=when) as (folder, t):
            storage.write_table(folder, pa.table({"x": [1]}))
            times.append(t)
    assert times == ["20260101000000", "20260101000001", "20260101000002"]


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(NotFoundError, match="no export of dataset ds"):
        storage.newest_export(str(tmp_path), "p", "ds")


def test_remote_url_without_driver_is_a_clear_error():
    from cmle.errors import CmleError

    with pytest.raises(CmleError, match="pip install"):
        storage.list_exports("abfss://container@acct.dfs.core.windows.net", "p", "ds")
