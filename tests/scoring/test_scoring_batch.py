import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import storage
from cmle.errors import DataCheckError
from cmle.scoring import batch, model_ref
from cmle.scoring.schema import SCORE_COLUMNS, SCORE_SCHEMA
from tests.scoring.toy import put_scoring_set, scoring_table


def _source(platform, settings, table) -> storage.ExportFolder:
    result = put_scoring_set(platform, settings, table)
    return storage.ExportFolder(url=result.url, export_time=result.export_time)


def _score(settings, model, ref, source, folder, **kw) -> batch.ScoreRun:
    return batch.score_export(model, ref, source, settings.storage_url, settings.cloud.import_path, folder, **kw)


def test_several_record_batches_score_the_same_as_one(settings, platform, champion):
    table = scoring_table(n=57)
    source = _source(platform, settings, table)
    model = model_ref.load(champion)
    one = _score(settings, model, champion, source, "one", batch_rows=1_000)
    many = _score(settings, model, champion, source, "many", batch_rows=7, rows_per_file=20)

    assert len(one.files) == 1 and len(many.files) == 3
    assert [pq.ParquetFile(f).metadata.num_rows for f in many.files] == [20, 20, 17]
    a, b = storage.read_export(one.url), storage.read_export(many.url)
    assert a.schema.remove_metadata() == SCORE_SCHEMA == b.schema.remove_metadata()
    keep = [c for c in SCORE_COLUMNS if c != "score_date"]
    pd.testing.assert_frame_equal(a.select(keep).to_pandas(), b.select(keep).to_pandas())
    # ... and both equal the model applied to the whole table at once
    direct = model.predict(table.select(["visits", "days_since_last_visit", "region"]).to_pandas())
    got = a.to_pandas()
    assert got["userid"].tolist() == table.column("userid").to_pylist()
    pd.testing.assert_series_equal(got["propensity"], direct["propensity"], check_names=False)
    assert (got["score"] == direct["score"]).all() and (got["bucket"] == direct["bucket"]).all()
    assert set(got["model_version"]) == {champion.version} and set(got["model_name"]) == {champion.name}
    # one score date per run: the run's export time
    assert got["score_date"].nunique() == 1
    assert got["score_date"].iloc[0].strftime("%Y%m%d%H%M%S") == one.export_time
    assert one.summary.rows == many.summary.rows == 57
    assert (one.summary.score_counts == many.summary.score_counts).all()
    assert one.summary.bucket_counts == many.summary.bucket_counts


def test_score_files_use_the_export_layout_and_carry_their_origin(settings, platform, champion):
    source = _source(platform, settings, scoring_table(n=10))
    run = _score(settings, model_ref.load(champion), champion, source, "scores_x", batch_rows=4)
    expected = storage.join(settings.storage_url, settings.cloud.import_path, "scores_x",
                            f"exportTime={run.export_time}")
    assert run.url == expected and run.rows == 10
    assert [os.path.basename(f) for f in run.files] == ["part-00000.parquet"]
    assert pq.ParquetFile(run.files[0]).metadata.num_row_groups == 3  # one row group per record batch
    again = batch.find_score_run(settings.storage_url, settings.cloud.import_path, "scores_x", summarize=True)
    assert (again.url, again.rows, again.model_version, again.source_export_time) == (
        run.url, 10, champion.version, source.export_time)
    assert again.summary.bucket_counts == run.summary.bucket_counts
    assert batch.same_run(again, champion, source)
    other = model_ref.ModelRef(champion.name, "99", "99")
    assert not batch.same_run(again, other, source)


def _nothing_written(settings, folder):
    where = storage.dataset_folder(settings.storage_url, settings.cloud.import_path, folder)
    return not os.path.exists(where) or os.listdir(where) == []


def test_missing_signature_columns_fail_before_anything_is_written(settings, platform, champion):
    source = _source(platform, settings, scoring_table(n=20, drop=("days_since_last_visit",)))
    with pytest.raises(DataCheckError, match=r"missing: \['days_since_last_visit'\]"):
        _score(settings, model_ref.load(champion), champion, source, "scores_y")
    assert not os.path.exists(storage.dataset_folder(settings.storage_url, settings.cloud.import_path, "scores_y"))


def test_optional_signature_column_may_be_absent(settings, platform, champion):
    source = _source(platform, settings, scoring_table(n=20, drop=("region",)))
    run = _score(settings, model_ref.load(champion), champion, source, "scores_opt")
    assert run.rows == 20


def test_wrong_column_type_fails_before_anything_is_written(settings, platform, champion):
    table = scoring_table(n=20)
    table = table.set_column(table.schema.get_field_index("visits"), "visits",
                             pa.array([f"v{i}" for i in range(20)]))
    source = _source(platform, settings, table)
    with pytest.raises(DataCheckError, match=r"column 'visits' is string, the model expects double"):
        _score(settings, model_ref.load(champion), champion, source, "scores_t")
    assert _nothing_written(settings, "scores_t")


def test_a_failure_in_a_later_batch_publishes_nothing(settings, platform, champion):
    table = scoring_table(n=30)
    ids = table.column("userid").to_pylist()
    ids[25] = None  # a row without identity, in the fourth batch of 8
    table = table.set_column(0, "userid", pa.array(ids, pa.string()))
    source = _source(platform, settings, table)
    with pytest.raises(DataCheckError, match="without userid"):
        _score(settings, model_ref.load(champion), champion, source, "scores_z", batch_rows=8)
    assert _nothing_written(settings, "scores_z")
    assert storage.list_exports(settings.storage_url, settings.cloud.import_path, "scores_z") == []


def test_check_columns_needs_the_identity_and_a_signature(champion):
    model = model_ref.load(champion)
    schema = pa.schema([("visits", pa.float64()), ("days_since_last_visit", pa.int64())])
    with pytest.raises(DataCheckError, match="identity column 'userid' is missing"):
        batch.check_columns(schema, model, "toy")
    ok = pa.schema([("userid", pa.string()), ("snapshot_ts", pa.timestamp("us")), *schema])
    assert batch.check_columns(ok, model, "toy") == {"visits": "double", "days_since_last_visit": "double"}


def test_prefetched_keeps_order_raises_producer_errors_and_stops_early():
    assert list(batch.prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad part")

    with pytest.raises(ValueError, match="bad part"):
        list(batch.prefetched(failing()))

    closed = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    it = batch.prefetched(source())
    assert next(it) == 0
    it.close()  # the consumer stops early: the producer stops and closes its source
    assert closed == [True]
