import pandas as pd
import pyarrow as pa
import pytest

from cmle import naming, storage
from cmle.errors import BatchFailedError, NotFoundError
from cmle.platform.base import BATCH_SUCCESS
from cmle.runner import run_stage
from cmle.scoring.schema import SCORE_SCHEMA
from tests.scoring.toy import (  # noqa: F401 - fixtures
    champion,
    mlflow_db_template,
    make_scores,
    own_store_settings,
    put_scoring_set,
    scoring_table,
    toy_registry,
    write_score_run,
)


def _batches(platform, settings):
    ds = platform.find_dataset(naming.scores_dataset(settings.platform.owner))
    return [b for b in platform.list_batches(ds.id) if b.status == BATCH_SUCCESS]


def test_ingest_creates_the_profile_resources_and_is_idempotent_per_score_run(settings, platform, mlflow_store):
    t = write_score_run(settings, make_scores(n=50))
    out = run_stage("ingest", settings)
    assert (out["records"], out["reused"], out["export_time"]) == (50, False, t)
    again = run_stage("ingest", settings, {"export_time": t})
    assert again["reused"] and again["batch_id"] == out["batch_id"]
    assert [b.id for b in _batches(platform, settings)] == [out["batch_id"]]
    batch = _batches(platform, settings)[0]
    assert batch.tags["cmle.key"] == f"scores:{t}"

    ds = platform.get_dataset(out["dataset_id"])
    assert ds.name == naming.scores_dataset("cmle") and ds.profile_enabled
    names = [r.name for r in platform.list_resources()]
    for name in (naming.score_field_group("cmle"), naming.score_schema("cmle"), naming.scores_dataset("cmle")):
        assert names.count(name) == 1
    rows = platform.read_dataset(ds.id).to_pandas()
    assert rows.columns.tolist() == ["_cmle"] and len(rows) == 50
    assert set(rows["_cmle"].iloc[0]) == set(SCORE_SCHEMA.names)


def test_profile_attributes_hold_each_profiles_latest_score(settings, platform, mlflow_store):
    first = make_scores(n=50, seed=1, version="1")
    t1 = write_score_run(settings, first)
    run_stage("ingest", settings)
    second = make_scores(seed=2, version="2", ids=[f"u{i:05d}" for i in range(30)])
    write_score_run(settings, second)
    run_stage("ingest", settings)
    assert run_stage("ingest", settings, {"export_time": t1})["reused"]  # an old run is not sent again
    assert len(_batches(platform, settings)) == 2

    attrs = platform.profile_attributes(["propensity", "model_version"]).set_index("userid")
    expected = pd.concat([second, first.iloc[30:]]).set_index("userid")
    assert len(attrs) == 50
    pd.testing.assert_series_equal(attrs["propensity"], expected.loc[attrs.index, "propensity"])
    assert attrs["model_version"].value_counts().to_dict() == {"2": 30, "1": 20}


def test_score_stage_output_ingests_as_one_batch(settings, platform, champion):
    put_scoring_set(platform, settings, scoring_table(n=33))
    scored = run_stage("score", settings, {"batch_rows": 10})
    out = run_stage("ingest", settings, {"export_time": scored["export_time"]})
    assert out["records"] == 33 and out["model_version"] == "1"
    files = storage.read_export(scored["scores_url"]).to_pandas().set_index("userid")
    attrs = platform.profile_attributes(["propensity", "bucket"]).set_index("userid")
    pd.testing.assert_series_equal(attrs["propensity"], files.loc[attrs.index, "propensity"])


def test_a_failed_batch_is_an_error_with_the_platforms_reasons(settings, platform, mlflow_store):
    scores = make_scores(n=5)
    scores.loc[2, "userid"] = None
    write_score_run(settings, pa.Table.from_pandas(scores, schema=SCORE_SCHEMA, preserve_index=False))
    with pytest.raises(BatchFailedError, match=r"ended failed: .*1 rows without identity _cmle.userid"):
        run_stage("ingest", settings)
    assert _batches(platform, settings) == []


def test_missing_score_run_says_what_to_do(settings, mlflow_store):
    with pytest.raises(NotFoundError, match="no score run yet .*run `score` first"):
        run_stage("ingest", settings)
    write_score_run(settings, make_scores(n=3))
    with pytest.raises(NotFoundError, match="no score run at exportTime=20000101000000"):
        run_stage("ingest", settings, {"export_time": "20000101000000"})
