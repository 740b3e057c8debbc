"""The ``export`` stage: AEP export layout, atomic writes, newest-export selection, label gate."""

from __future__ import annotations

import datetime as dt
import os
import re

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import exports, naming, storage
from cmle.errors import GovernanceError, NotFoundError
from cmle.runner import run_stage
from cmle.stages.export import export

EXPORT_TIME = re.compile(r"^\d{14}$")


SNAPSHOT = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def feature_table(n: int, labelled: bool = True) -> pa.Table:
    cols = {"userid": [f"u{i:03d}" for i in range(n)],
            "snapshot_ts": pa.array([SNAPSHOT] * n, pa.timestamp("us", tz="UTC"))}
    if labelled:
        cols["label"] = pa.array([i % 2 for i in range(n)], pa.int32())
    cols["emailsReceived"] = pa.array(list(range(n)), pa.int64())
    cols["minutes_since_emailSent"] = pa.array([None if i % 3 else i * 1.5 for i in range(n)], pa.float64())
    return pa.table(cols)


@pytest.fixture
def feature_sets(platform):
    """Training (both framings) and scoring sets as featurize leaves them."""
    return {
        "training": platform.put_table(naming.training_set("cmle"), feature_table(30)),
        "cmle_training": platform.put_table(naming.training_set("cmle", "cmle"), feature_table(12)),
        "scoring": platform.put_table(naming.scoring_set("cmle"), feature_table(25, labelled=False)),
    }


def test_exports_every_set_in_the_aep_layout(ctx, settings, feature_sets):
    out = export(ctx)
    for key, ds in feature_sets.items():
        t = out[f"{key}_export_time"]
        assert EXPORT_TIME.match(t) and out[f"{key}_dataset_id"] == ds.id
        assert out[f"{key}_export_url"] == storage.join(settings.storage_url, "cmle/egress", ds.id, f"exportTime={t}")
        parts = storage.part_files(out[f"{key}_export_url"])
        assert parts and all(re.search(r"/part-\d+\.parquet$", p) for p in parts)
        assert out[f"{key}_export_files"] == len(parts)
        meta = pq.ParquetFile(parts[0]).metadata
        assert meta.row_group(0).column(0).compression == "GZIP"  # [Cloud] compression_type
        exported = storage.read_export(out[f"{key}_export_url"])
        assert exported.num_rows == out[f"{key}_export_rows"] == ctx.platform.read_dataset(ds.id).num_rows
        assert exported.sort_by("userid").equals(ctx.platform.read_dataset(ds.id).sort_by("userid"))
    # what train and score read
    assert exports.newest_feature_export(ctx, "training").url == out["training_export_url"]
    assert exports.newest_feature_export(ctx, "training", "cmle").url == out["cmle_training_export_url"]
    assert exports.newest_feature_export(ctx, "scoring").url == out["scoring_export_url"]


def test_each_run_adds_an_export_and_readers_take_the_newest(ctx, settings, feature_sets):
    first = export(ctx, sets="training")
    ctx.platform.put_table(naming.training_set("cmle"), feature_table(40))
    second = export(ctx, sets="training")
    ds = feature_sets["training"]
    assert [e.export_time for e in storage.list_exports(settings.storage_url, "cmle/egress", ds.id)] == \
        [first["training_export_time"], second["training_export_time"]]
    assert second["training_export_time"] > first["training_export_time"]
    newest = exports.newest_feature_export(ctx, "training")
    assert newest.url == second["training_export_url"] and storage.read_export(newest.url).num_rows == 40


def test_sets_parameter_chooses_what_is_exported(ctx, feature_sets):
    out = export(ctx, sets="scoring")
    assert {k for k in out if k.endswith("_dataset_id")} == {"scoring_dataset_id"}
    ctx.platform.delete_resource(next(r for r in ctx.platform.list_resources()
                                      if r.name == naming.training_set("cmle", "cmle")))
    out = export(ctx, sets="training")
    assert "training_export_url" in out and "cmle_training_export_url" not in out


def test_missing_sets_are_a_clear_error(ctx):
    with pytest.raises(NotFoundError, match="run featurize first"):
        export(ctx)


def test_a_crash_while_exporting_publishes_nothing(ctx, settings, feature_sets, monkeypatch):
    ds = feature_sets["training"]
    good = export(ctx, sets="training")

    def crash(src, dst):
        raise OSError("simulated crash before the export folder is published")

    monkeypatch.setattr(storage.os, "rename", crash)
    with pytest.raises(OSError, match="simulated crash"):
        export(ctx, sets="training")
    monkeypatch.undo()
    folder = storage.dataset_folder(settings.storage_url, "cmle/egress", ds.id)
    assert sorted(os.listdir(folder)) == [f"exportTime={good['training_export_time']}"]  # no half-written folder
    assert exports.newest_feature_export(ctx, "training").url == good["training_export_url"]


def test_newest_is_the_parsed_maximum_and_unfinished_exports_are_skipped(ctx, settings, feature_sets):
    ds = feature_sets["training"]
    root, path = settings.storage_url, "cmle/egress"
    folder = storage.dataset_folder(root, path, ds.id)
    table = feature_table(3)
    # complete exports, created newest first so that creation (and mtime) order differs from time order
    for when in ("20250301120000", "20250228235959", "20241231000000"):
        os.makedirs(f"{folder}/exportTime={when}")
        pq.write_table(table, f"{folder}/exportTime={when}/part-00000.parquet")
    # what a crash leaves behind: a local temporary folder, an object-store export still marked in
    # progress (newer than every complete one), and folders that are not exports
    os.makedirs(f"{folder}/.tmp-20991231000000-abcd1234")
    pq.write_table(table, f"{folder}/.tmp-20991231000000-abcd1234/part-00000.parquet")
    os.makedirs(f"{folder}/exportTime=20991231000000")
    pq.write_table(table, f"{folder}/exportTime=20991231000000/part-00000.parquet")
    open(f"{folder}/exportTime=20991231000000/{storage.IN_PROGRESS}", "w").close()
    os.makedirs(f"{folder}/exportTime=2025-03-01")
    os.makedirs(f"{folder}/notes")
    listed = [e.export_time for e in storage.list_exports(root, path, ds.id)]
    assert listed == ["20241231000000", "20250228235959", "20250301120000"]
    assert exports.newest_feature_export(ctx, "training").export_time == "20250301120000"
    # a new export lands after all of them and becomes the newest
    out = export(ctx, sets="training")
    assert exports.newest_feature_export(ctx, "training").url == out["training_export_url"]


@pytest.mark.parametrize("label, meaning", [("C9", "no data science"), ("PSPD", "permitted sensitive personal data"),
                                            ("RHD", "regulated health data"), ("c9", "no data science")])
def test_label_gate_refuses_forbidden_labels_and_exports_nothing(ctx, settings, feature_sets, label, meaning):
    ctx.platform.set_labels(feature_sets["cmle_training"].id, {label, "C1"})
    with pytest.raises(GovernanceError) as err:
        export(ctx)
    message = str(err.value)
    assert f"{label.upper()} ({meaning})" in message and naming.training_set("cmle", "cmle") in message
    assert "Nothing was exported" in message and "featurize" in message
    assert not os.path.exists(storage.join(settings.storage_url, "cmle/egress"))


def test_label_gate_lets_other_labels_through(ctx, feature_sets):
    ctx.platform.set_labels(feature_sets["training"].id, {"C1", "I1", "S2"})
    assert export(ctx, sets="training")["training_export_rows"] == 30


def test_export_stage_as_an_mlflow_run(settings, platform, feature_sets):
    out = run_stage("export", settings, {"sets": "all"})
    runs = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'export'")
    assert runs.iloc[0]["metrics.training_export_rows"] == 30 == out["training_export_rows"]
    assert runs.iloc[0]["metrics.scoring_export_rows"] == 25


def test_rerun_over_unchanged_sets_exports_nothing_new(settings, mlflow_store, feature_sets):
    from cmle.runner import run_stage

    first = run_stage("export", settings, {})
    again = run_stage("export", settings, {})
    assert not first["reused"] and again["reused"]
    assert again["training_export_time"] == first["training_export_time"]
    ds = feature_sets["training"]
    assert len(storage.list_exports(settings.storage_url, "cmle/egress", ds.id)) == 1
    forced = run_stage("export", settings, {"force": True})
    assert not forced["reused"] and len(storage.list_exports(settings.storage_url, "cmle/egress", ds.id)) == 2
