"""The `synthetic` stage through the runner: XDM resources and datasets, batches with the
right row counts, idempotent re-runs, replacement on new parameters, the oracle, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from cmle import naming
from cmle.errors import ParameterError
from cmle.platform.base import BATCH_SUCCESS
from cmle.runner import run_stage
from cmle.stages import get_stage
from cmle.synthetic.oracle import oracle_path

SMALL = {"profiles": 400, "weeks": 4, "end_date": "2024-06-01", "seed": 7}


def _count(platform, table: str) -> int:
    return int(platform.query(f"SELECT COUNT(*) AS n FROM {table}")["n"].iloc[0])


def _live(platform, dataset_id: str) -> list:
    return [b for b in platform.list_batches(dataset_id) if b.status == BATCH_SUCCESS]


def test_stage_creates_datasets_ingests_and_writes_the_oracle(settings, mlflow_store, platform):
    out = run_stage("synthetic", settings, SMALL)
    json.dumps(out)  # JSON-able
    owner = settings.platform.owner
    events = platform.find_dataset(naming.events_dataset(owner))
    profiles = platform.find_dataset(naming.profiles_dataset(owner))
    assert out["events_dataset_id"] == events.id and out["profiles_dataset_id"] == profiles.id
    assert profiles.profile_enabled and not events.profile_enabled
    assert events.table == naming.table_name(naming.events_dataset("cmle"))

    assert out["profiles"] == 400 and _count(platform, profiles.table) == 400
    assert out["events"] > 400 and _count(platform, events.table) == out["events"]
    users = platform.query(f"SELECT COUNT(DISTINCT _cmle.userid) AS n FROM {events.table}")["n"].iloc[0]
    assert 0 < users <= 400
    conversions = _count(platform, f"{events.table} WHERE eventType = 'web.formFilledOut'")
    assert out["conversion_rate"] == pytest.approx(conversions / 400)
    assert out["window_start"] == "2024-05-04T00:00:00+00:00" and out["window_end"] == "2024-06-01T00:00:00+00:00"
    assert platform.profile_attributes(["loyaltyTier", "age"]).shape[0] == 400

    path = Path(out["oracle_path"])
    assert path == oracle_path(settings) and path.exists()
    assert pq.read_metadata(path).num_rows == out["events"] + out["profiles"]

    run = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'synthetic'",
                             output_format="list")[0]
    metrics = run.data.metrics
    for name in ("events", "profiles", "events_per_profile", "conversion_rate", "generation_seconds",
                 "events_per_second"):
        assert name in metrics, name
    assert metrics["events"] == out["events"]
    assert run.data.params["end_date"] == "2024-06-01"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "synthetic")}
    assert "synthetic/event_mix.csv" in artifacts


def test_rerun_with_the_same_parameters_ingests_nothing(settings, mlflow_store, platform):
    first = run_stage("synthetic", settings, SMALL)
    batches = {ds: platform.list_batches(first[ds]) for ds in ("events_dataset_id", "profiles_dataset_id")}
    again = run_stage("synthetic", settings, SMALL)
    assert again["reused"] and not first["reused"]
    assert again["events_batch_id"] == first["events_batch_id"]
    for ds, before in batches.items():
        assert [b.id for b in platform.list_batches(first[ds])] == [b.id for b in before]
    assert _count(platform, platform.get_dataset(first["events_dataset_id"]).table) == first["events"]


def test_other_parameters_replace_the_content(settings, mlflow_store, platform):
    first = run_stage("synthetic", settings, SMALL)
    second = run_stage("synthetic", settings, {**SMALL, "seed": 8, "profiles": 300, "legacy": True})
    assert second["events_dataset_id"] == first["events_dataset_id"]
    assert second["events_batch_id"] != first["events_batch_id"]
    for ds in ("events_dataset_id", "profiles_dataset_id"):
        assert len(_live(platform, second[ds])) == 1
    assert _count(platform, platform.get_dataset(second["profiles_dataset_id"]).table) == 300
    assert _count(platform, platform.get_dataset(second["events_dataset_id"]).table) == second["events"]
    assert pq.read_metadata(second["oracle_path"]).num_rows == second["events"] + 300


@pytest.mark.parametrize("params, message", [
    ({"profiles": 0}, "profiles = 0 must be at least 1"),
    ({"weeks": 0}, "weeks = 0 must be at least 1"),
    ({"end_date": "1st of June"}, "end_date = '1st of June' is not a date"),
    ({"seed": -3}, "seed = -3"),
    ({"legacy": "perhaps"}, "legacy = 'perhaps' is not a valid bool"),
])
def test_bad_parameters_are_refused(settings, mlflow_store, params, message):
    with pytest.raises(ParameterError, match=message):
        run_stage("synthetic", settings, {**SMALL, **params})


def test_stage_declares_its_parameters():
    stage = get_stage("synthetic")
    assert {p.name: (p.type, p.default) for p in stage.params} == {
        "profiles": (int, 100_000), "weeks": (int, 10), "end_date": (str, ""), "seed": (int, 42),
        "legacy": (bool, False), "churn": (bool, True), "extend_weeks": (int, 0), "shift_events": (float, 1.0),
        "shift_conversion": (float, 0.0), "spec": (str, "")}


def test_a_spec_of_your_own_data_skips_the_synthetic_data(settings, mlflow_store):
    from pathlib import Path

    retail = Path(__file__).resolve().parents[2] / "conf" / "models" / "retail.yaml"
    out = run_stage("synthetic", settings, {**SMALL, "spec": str(retail)})
    assert out == {"skipped": True, "spec_name": "retail_purchase", "reused": True}
