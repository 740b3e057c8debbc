"""The `explore` stage through the runner: finds the events dataset, logs tables, plots, SQL
and metrics to its MLflow run, returns the headline numbers; clear errors without data."""

from __future__ import annotations

import io
import json

import mlflow
import pandas as pd
import pytest
from PIL import Image

from cmle import naming
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.runner import run_stage
from cmle.stages import get_stage
from tests.explore.handmade_events import C, F, O, S, events_dataset, events_table, put_events

TABLES = ("totals", "event_mix", "funnel", "cooccurrence", "correlation")
FIGURES = ("event_mix", "funnel", "cooccurrence", "correlation")


def _artifacts(client: mlflow.MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path or None):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def _only_run(client: mlflow.MlflowClient):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`cmle.stage` = 'explore'")
    assert len(runs) == 1
    return runs[0]


def test_explore_stage_logs_tables_plots_sql_and_metrics(settings, mlflow_store, platform, tmp_path):
    put_events(platform, settings.platform.owner)
    outputs = run_stage("explore", settings, {})

    assert outputs["users"] == 7 and outputs["events"] == 22 and outputs["converted_users"] == 3
    assert outputs["conversion_rate"] == pytest.approx(3 / 7)
    assert outputs["events_per_user"] == pytest.approx(22 / 7)
    assert outputs["event_types"] == 7
    assert outputs["funnel_users_in_order"] == {S: 5, O: 4, C: 2, F: 1}
    assert outputs["events_table"] == naming.table_name(naming.events_dataset("cmle"))
    assert outputs["strongest_correlation"]["event_type"] in {"advertising.clicks", "advertising.impressions"}
    json.dumps(outputs)  # JSON-able

    client = mlflow.MlflowClient(mlflow_store)
    run = _only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"sample_users": "0", "timeout_s": "600.0", "spec": "", "dataset": "",
                               "identity": "", "window_days": "0", "write_spec": "", **{
        k: v for k, v in run.data.params.items() if k.startswith("config.")}}
    metrics = run.data.metrics
    assert metrics["users"] == 7 and metrics["events"] == 22 and metrics["event_types"] == 7
    assert metrics["conversion_rate"] == pytest.approx(3 / 7)
    assert metrics["events_per_user"] == pytest.approx(22 / 7)

    artifacts = _artifacts(client, run.info.run_id)
    expected = ({f"explore/{t}.csv" for t in TABLES} | {f"explore/{f}.png" for f in FIGURES}
                | {f"explore/sql/{t}.sql" for t in TABLES})
    assert expected <= artifacts, expected - artifacts
    assert "outputs.json" in artifacts

    local = client.download_artifacts(run.info.run_id, "explore", str(tmp_path))
    for name in FIGURES:
        with open(f"{local}/{name}.png", "rb") as fh:
            data = fh.read()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(data))
        image.verify()  # a complete, decodable PNG
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    funnel = pd.read_csv(f"{local}/funnel.csv")
    assert list(funnel["users_in_order"]) == [5, 4, 2, 1]
    mix = pd.read_csv(f"{local}/event_mix.csv")
    assert dict(zip(mix["event_type"], mix["users"]))[S] == 5
    cooc = pd.read_csv(f"{local}/cooccurrence.csv")
    assert len(cooc) == 49
    with open(f"{local}/sql/event_mix.sql") as fh:
        assert "COUNT(DISTINCT `_cmle`.`userid`)" in fh.read()


def test_explore_stage_sample_parameter(settings, mlflow_store, platform):
    put_events(platform, settings.platform.owner)
    outputs = run_stage("explore", settings, {"sample_users": "3"})
    assert outputs["correlation_users"] == 3
    assert outputs["users"] == 7  # only the correlation is sampled
    with pytest.raises(ParameterError):
        run_stage("explore", settings, {"sample_users": -1})


def test_explore_stage_without_events_dataset_says_run_synthetic(settings, mlflow_store):
    with pytest.raises(NotFoundError, match="run the synthetic stage first"):
        run_stage("explore", settings, {})


def test_explore_stage_with_empty_events_dataset(settings, mlflow_store, platform):
    events_dataset(platform, settings.platform.owner)  # created, never loaded
    with pytest.raises(DataCheckError, match="holds no data"):
        run_stage("explore", settings, {})
    put_events(platform, settings.platform.owner, events_table().slice(0, 0))  # loaded with no row
    with pytest.raises(DataCheckError, match="holds no event"):
        run_stage("explore", settings, {})


def test_stage_declaration():
    stage = get_stage("explore")
    assert stage.name == "explore"
    assert {p.name: p.default for p in stage.params} == {"sample_users": 0, "timeout_s": 600.0, "spec": "",
                                                         "dataset": "", "identity": "", "window_days": 0,
                                                         "write_spec": ""}
