"""The CLI: parameters, clear errors without tracebacks, outputs as JSON, runs marked in MLflow."""

from __future__ import annotations

import json

import mlflow
import pytest

from cmle.cli import run_cli
from cmle.stages import Param, get_stage
from cmle.errors import ParameterError


def test_stage_runs_and_prints_outputs(tmp_cwd, capsys):
    assert run_cli("cleanup", ["--dry_run", "true"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True
    runs = mlflow.search_runs(experiment_names=["cmle"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["cmle.stage"] == "cleanup"
    assert runs[0].data.params["dry_run"] == "True"
    assert runs[0].info.status == "FINISHED"


@pytest.mark.parametrize("argv, match", [
    (["--dry_run", "maybe"], "parameter dry_run = 'maybe' is not a valid bool"),
    (["--config", "missing.ini"], "missing.ini"),
])
def test_user_mistakes_exit_2_with_a_message(tmp_cwd, capsys, argv, match):
    assert run_cli("cleanup", argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_unknown_stage(tmp_cwd, capsys):
    assert run_cli("nope", []) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err


def test_bad_config_value_exit_2(tmp_cwd, capsys, monkeypatch):
    monkeypatch.setenv("CMLE_PLATFORM_BACKEND", "cloud")
    assert run_cli("cleanup", []) == 2
    assert "[Platform] backend" in capsys.readouterr().err


def test_dash_and_underscore_flags(tmp_cwd, capsys):
    assert run_cli("cleanup", ["--dry-run=1"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True


@pytest.mark.parametrize("ptype, raw, value", [
    (int, "12", 12), (int, 3.0, 3), (float, "0.5", 0.5), (bool, "yes", True), (bool, "0", False), (str, 5, "5"),
])
def test_param_conversion(ptype, raw, value):
    assert Param("p", ptype, None).convert("s", raw) == value


@pytest.mark.parametrize("param, raw", [
    (Param("p", int, 1), "1.5"), (Param("p", int, 1), 2.5), (Param("p", float, 1.0), "x"),
    (Param("p", int, 1, min=1), "0"), (Param("p", str, "a", choices=("a", "b")), "c"),
])
def test_param_rejects(param, raw):
    with pytest.raises(ParameterError, match="parameter p"):
        param.convert("s", raw)


def test_unknown_param_is_refused():
    with pytest.raises(ParameterError, match="unknown parameter 'nope'"):
        get_stage("cleanup").resolve({"nope": 1})


def test_job_parameters_of_other_stages_are_accepted_and_ignored(tmp_cwd, capsys):
    """Databricks pushes every job parameter to every wheel task as --name=value."""
    argv = ["--dry_run=true", "--min_positives=50", "--spec=conf/models/retail.yaml", "--profiles=10",
            "--synthetic=false", "--config="]
    assert run_cli("cleanup", argv) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    run = mlflow.search_runs(experiment_names=["cmle"], output_format="list")[0]
    assert "min_positives" not in run.data.params and "spec" not in run.data.params
    # a name no stage knows is still a mistake
    capsys.readouterr()
    assert run_cli("cleanup", ["--min_positivs=50"]) == 2
    assert "min_positivs" in capsys.readouterr().err


def test_every_stage_accepts_every_pipeline_parameter():
    from cmle.cli import JOB_ONLY_PARAMETERS, other_parameters
    from cmle.stages import ALL_STAGES

    everything = {p.name for s in ALL_STAGES for p in get_stage(s).params} | set(JOB_ONLY_PARAMETERS)
    for name in ALL_STAGES:
        stage = get_stage(name)
        assert {p.name for p in stage.params} | set(other_parameters(stage)) | {"config"} >= everything
