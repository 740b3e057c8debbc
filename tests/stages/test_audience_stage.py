import json

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cmle import naming
from cmle.audiences.rules import DEFAULT_RULES, evaluate, parse_rules
from cmle.errors import NotFoundError, ParameterError
from cmle.runner import run_stage
from tests.scoring.toy import make_scores, mlflow_db_template, own_store_settings, write_score_run  # noqa: F401


@pytest.fixture
def scored(settings, mlflow_store):
    """Two ingested score runs; the second rescored 120 of the 200 profiles."""
    first = make_scores(n=200, seed=3, version="1")
    second = make_scores(seed=4, version="2", ids=[f"u{i:05d}" for i in range(120)])
    for scores in (first, second):
        write_score_run(settings, scores)
        run_stage("ingest", settings)
    return pd.concat([second, first.iloc[120:]], ignore_index=True)  # each profile's latest score


def _destination(settings, name="local-files"):
    return settings.local_root / "destinations" / naming.table_name(name)


def test_audience_counts_match_the_rules_on_each_profiles_latest_score(settings, platform, scored):
    out = run_stage("audience", settings)
    expected = evaluate(parse_rules(DEFAULT_RULES), scored)
    assert {name: a["qualified"] for name, a in out["audiences"].items()} == expected
    assert all(expected.values()) and out["scored_profiles"] == 200
    assert out["audiences"]["moderate_to_high"]["pql"] == "_cmle.propensity >= 0.2 and _cmle.propensity <= 0.93"
    ours = sorted(r.name for r in platform.list_resources() if r.kind == "audience")
    assert ours == sorted(naming.audience(n, "cmle") for n in expected)

    run = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'audience'").iloc[0]
    assert run["metrics.qualified_top10"] == expected["top10"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "audiences")}
    assert {"audiences/reach_curve.png", "audiences/reach_curve.csv", "audiences/audiences.csv",
            "audiences/activations.csv"} <= artifacts


def test_activation_writes_members_files_and_logs_every_send(settings, platform, scored):
    params = {"rules": "mid:band:0.3:0.6;hot:bucket:high", "fields": "propensity,bucket"}
    out = run_stage("audience", settings, params)
    dest = _destination(settings)
    expected = evaluate(parse_rules("mid:band:0.3:0.6;hot:bucket:high"), scored)
    for name, n in expected.items():
        members = pq.read_table(dest / f"{naming.table_name(naming.audience(name, 'cmle'))}.parquet").to_pandas()
        assert members.columns.tolist() == ["userid", "propensity", "bucket"] and len(members) == n
    mid = pq.read_table(dest / f"{naming.table_name(naming.audience('mid', 'cmle'))}.parquet").to_pandas()
    assert mid["propensity"].between(0.3, 0.6).all()
    assert sorted(mid["userid"]) == sorted(scored.loc[scored["propensity"].between(0.3, 0.6), "userid"])
    assert [a["status"] for a in out["activations"]] == ["success", "success"]

    again = run_stage("audience", settings, params)
    assert {n: a["id"] for n, a in again["audiences"].items()} == {n: a["id"] for n, a in out["audiences"].items()}
    log = [json.loads(line) for line in (dest / "activation_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and {e["status"] for e in log} == {"success"}
    assert [e["members"] for e in log] == [expected["mid"], expected["hot"]] * 2
    assert len([r for r in platform.list_resources() if r.kind == "audience"]) == 2


def test_an_empty_destination_skips_activation(settings, scored):
    out = run_stage("audience", settings, {"destination": ""})
    assert out["activations"] == [] and not _destination(settings).exists()


def test_bad_parameters_and_missing_scores_are_clear_errors(settings, mlflow_store):
    with pytest.raises(ParameterError, match="unknown kind"):
        run_stage("audience", settings, {"rules": "x:range:1"})
    with pytest.raises(ParameterError, match=r"fields \['age'\] are not score fields"):
        run_stage("audience", settings, {"fields": "propensity,age"})
    with pytest.raises(NotFoundError, match="run `score` and `ingest` first"):
        run_stage("audience", settings)


def test_the_local_default_destination_means_none_on_aep():
    from cmle.stages.audience import DEFAULT_DESTINATION, resolve_destination

    assert resolve_destination("local", DEFAULT_DESTINATION) == (DEFAULT_DESTINATION, "")
    dest, note = resolve_destination("aep", DEFAULT_DESTINATION)
    assert dest == "" and "no destination configured" in note and "destination dataflow" in note
    assert resolve_destination("aep", " Audience exports ") == ("Audience exports", "")
    assert resolve_destination("aep", "") == ("", "")


def test_via_sql_needs_aep_and_says_so_before_any_work(settings, platform, mlflow_store):
    needs = "via = sql creates Data Distiller SQL audiences in AEP Query Service, which the local platform does not have"
    with pytest.raises(ParameterError, match=needs):
        run_stage("audience", settings, {"via": "sql"})
    with pytest.raises(ParameterError, match=needs):
        platform.create_sql_audience(naming.sql_audience("top10", "cmle"), "SELECT 1", "userid", "ECID")
    with pytest.raises(ParameterError, match=needs):
        run_stage("main", settings, {"via": "sql", "profiles": 50})
    assert not [r for r in platform.list_resources() if r.kind in ("audience", "dataset")]
