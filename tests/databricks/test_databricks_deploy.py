"""`cmle deploy` against the local Databricks double: create, reset, run and follow, dry run."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from databricks_double import RunPlan

from cmle.cli import run_cli
from cmle.databricks import bundle as bundle_mod
from cmle.databricks import deploy as dep
from cmle.errors import ConfigError, PlatformError
from cmle.stages import STAGE_ORDER

USER = "ann.lee@example.com"
DEV_NAME = "[dev ann_lee] cmle-pipeline-dev"


def _deploy(dbx_env, bundle_path, wheel, target="dev", out=None):
    w = dep.workspace_client(dbx_env)
    job = bundle_mod.resolve_job(bundle_path, target, user_name=w.current_user.me().user_name)
    return w, dep.deploy(w, job, wheel, out=out or io.StringIO())


def test_deploy_creates_one_job_with_the_uploaded_wheel_and_config(double, dbx_env, bundle_path, wheel):
    _, d = _deploy(dbx_env, bundle_path, wheel)
    assert (d.action, d.job_name, d.target) == ("created", DEV_NAME, "dev")
    assert list(double.jobs) == [d.job_id]
    created = double.jobs[d.job_id]
    assert [t["task_key"] for t in created["tasks"]] == ["use_synthetic", *STAGE_ORDER]
    # the wheel went to the target's volume under its content hash, and the job installs that file
    assert d.wheel.startswith("/Volumes/main/cmle_dev/artifacts/.bundle/cmle/dev/ann_lee/.internal/")
    assert d.wheel.endswith("/cmle-0.1.0-py3-none-any.whl")
    assert double.files[d.wheel] == wheel.read_bytes()
    assert created["environments"][0]["spec"]["dependencies"] == [d.wheel, "hyperopt==0.3.0"]
    # the config file the tasks read was synced to the bundle's file path
    config, spec = created["parameters"][0]["default"], created["parameters"][1]["default"]
    assert config == f"/Workspace/Users/{USER}/.bundle/cmle/dev/files/conf/databricks.dev.ini"
    assert spec == f"/Workspace/Users/{USER}/.bundle/cmle/dev/files/conf/models/synthetic.yaml"
    assert d.files == [config, spec]
    assert double.workspace[config] == (bundle_path.parent / "conf" / "databricks.dev.ini").read_bytes()
    assert double.workspace[spec] == (bundle_path.parent / "conf" / "models" / "synthetic.yaml").read_bytes()
    assert ("POST", "/api/2.2/jobs/create") in double.calls()
    assert ("GET", "/.well-known/databricks-config") in double.calls("/.well-known/")  # the SDK's discovery
    assert all(r.headers.get("Authorization") == f"Bearer {dbx_env['DATABRICKS_TOKEN']}"
               for r in double.requests if r.path.startswith("/api/"))


def test_redeploy_resets_the_same_job_and_never_creates_a_second(double, dbx_env, bundle_path, wheel):
    _, first = _deploy(dbx_env, bundle_path, wheel)
    wheel.write_bytes(wheel.read_bytes() + b" changed")
    _, second = _deploy(dbx_env, bundle_path, wheel)
    assert (first.action, second.action) == ("created", "reset")
    assert second.job_id == first.job_id and len(double.jobs) == 1
    assert [c for c in double.calls("/api/2.2/jobs/") if c[1] != "/api/2.2/jobs/list"] == [
        ("POST", "/api/2.2/jobs/create"), ("POST", "/api/2.2/jobs/reset")]
    # a changed wheel gets a new path, so the job's compute installs it
    assert second.wheel != first.wheel
    assert double.jobs[first.job_id]["environments"][0]["spec"]["dependencies"][0] == second.wheel


def test_prod_and_dev_are_separate_jobs(double, dbx_env, bundle_path, wheel):
    _deploy(dbx_env, bundle_path, wheel, "dev")
    _, prod = _deploy(dbx_env, bundle_path, wheel, "prod")
    assert sorted(j["name"] for j in double.jobs.values()) == ["[dev ann_lee] cmle-pipeline-dev",
                                                                "cmle-pipeline-prod"]
    assert prod.wheel.startswith("/Volumes/main/cmle/artifacts/.bundle/cmle/prod/")
    assert double.jobs[prod.job_id]["schedule"]["pause_status"] == "UNPAUSED"


def test_two_jobs_with_the_name_is_an_error_not_a_guess(double, dbx_env, bundle_path, wheel):
    w, d = _deploy(dbx_env, bundle_path, wheel)
    double.jobs[d.job_id + 1] = dict(double.jobs[d.job_id])
    with pytest.raises(PlatformError, match=r"2 Databricks jobs are named .*ids 1000, 1001"):
        dep.find_job(w, DEV_NAME)


def test_run_now_follows_the_run_and_prints_each_task(double, dbx_env, bundle_path, wheel):
    w, d = _deploy(dbx_env, bundle_path, wheel)
    out = io.StringIO()
    summary = dep.run_and_follow(w, d.job_id, poll_seconds=0.001, out=out)
    assert summary["result_state"] == "SUCCESS"
    assert summary["tasks"] == {k: "SUCCESS" for k in ("use_synthetic", *STAGE_ORDER)}
    assert summary["run_page_url"] == f"{double.host}/#job/{d.job_id}/run/{summary['run_id']}"
    (request,) = [r for r in double.requests if r.path == "/api/2.2/jobs/run-now"]
    token = request.body["idempotency_token"]
    assert request.body["job_id"] == d.job_id and 0 < len(token) <= 64
    lines = out.getvalue().splitlines()
    for key in STAGE_ORDER:  # each task's running and final state, with its run page
        mine = [ln for ln in lines if ln.split()[0] == key]
        assert [ln.split()[1:-1] for ln in mine] == [["RUNNING"], ["TERMINATED", "SUCCESS"]], mine
        assert all(ln.split()[-1].startswith(f"{double.host}/#job/{d.job_id}/run/") for ln in mine)
    # tasks ran in pipeline order
    running = [ln.split()[0] for ln in lines if " RUNNING " in ln]
    assert running == ["use_synthetic", *STAGE_ORDER]


def test_the_same_idempotency_token_never_starts_a_second_run(double, dbx_env, bundle_path, wheel):
    w, d = _deploy(dbx_env, bundle_path, wheel)
    a = dep.run_and_follow(w, d.job_id, "ci-build-42", poll_seconds=0.001, out=io.StringIO())
    b = dep.run_and_follow(w, d.job_id, "ci-build-42", poll_seconds=0.001, out=io.StringIO())
    assert a["run_id"] == b["run_id"] and len(double.runs) == 1
    with pytest.raises(ConfigError, match="at most 64"):
        dep.run_and_follow(w, d.job_id, "x" * 65, out=io.StringIO())


def test_a_failed_task_is_an_error_naming_it(double, dbx_env, bundle_path, wheel):
    w, d = _deploy(dbx_env, bundle_path, wheel)
    double.plan = RunPlan(fail_task="train", error="DataCheckError: the training set has no positives")
    out = io.StringIO()
    with pytest.raises(dep.JobRunFailed) as info:
        dep.run_and_follow(w, d.job_id, poll_seconds=0.001, out=out)
    msg = str(info.value)
    assert "task train FAILED: DataCheckError: the training set has no positives" in msg
    assert f"{double.host}/#job/{d.job_id}/run/" in msg
    assert "not run because of it: promote, score, ingest, audience" in msg
    assert "train      TERMINATED FAILED" in out.getvalue()
    assert "synthetic" not in msg.split("failed:")[1]  # tasks that succeeded are not blamed


def test_cli_deploy_runs_and_fails_with_the_task_named(double, dbx_env, bundle_path, wheel, tmp_cwd, capsys):
    args = ["--bundle", str(bundle_path), "--wheel", str(wheel), "--run_now", "true", "--poll_seconds", "0.001"]
    assert run_cli("deploy", args) == 0
    captured = capsys.readouterr()
    outputs = json.loads(captured.out)
    assert outputs["action"] == "created" and outputs["run"]["result_state"] == "SUCCESS"
    assert "audience" in captured.err and dbx_env["DATABRICKS_TOKEN"] not in captured.out + captured.err

    double.plan = RunPlan(fail_task="score", error="RegistryError: no champion")
    assert run_cli("deploy", args) == 2
    captured = capsys.readouterr()
    assert "cmle deploy: error:" in captured.err and "task score FAILED: RegistryError: no champion" in captured.err
    assert len(double.jobs) == 1 and len(double.runs) == 2


def test_a_refusing_workspace_is_a_clear_error(double, dbx_env, bundle_path, wheel, tmp_cwd, capsys):
    double.refuse["/api/2.0/fs/"] = (404, "NOT_FOUND", "Volume 'main.cmle_dev.artifacts' does not exist.")
    assert run_cli("deploy", ["--bundle", str(bundle_path), "--wheel", str(wheel)]) == 2
    err = capsys.readouterr().err
    assert f"the Databricks workspace {double.host} refused a request" in err
    assert "Volume 'main.cmle_dev.artifacts' does not exist" in err and "Traceback" not in err
    assert double.jobs == {}  # nothing half-deployed: the job comes after the uploads


def test_dry_run_prints_the_job_and_calls_nothing(double, dbx_env, bundle_path, tmp_cwd, capsys):
    assert run_cli("deploy", ["--bundle", str(bundle_path), "--dry_run", "true", "--target", "prod"]) == 0
    assert double.requests == []
    out = capsys.readouterr().out
    printed = json.loads(out[: out.index("\n}\n") + 2])  # the job definition, then the outputs
    assert printed["name"] == "cmle-pipeline-prod"
    assert [t["task_key"] for t in printed["tasks"]] == ["use_synthetic", *STAGE_ORDER]
    assert printed["environments"][0]["spec"]["dependencies"][0] == \
        "/Volumes/main/cmle/artifacts/.bundle/cmle/prod/.internal/<sha256>/cmle-0.1.0-py3-none-any.whl"


def test_dry_run_needs_no_credentials(bundle_path, tmp_cwd, monkeypatch, capsys):
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    assert run_cli("deploy", ["--bundle", str(bundle_path), "--dry_run", "true"]) == 0
    assert "[dev ${workspace.current_user.short_name}] cmle-pipeline-dev" in capsys.readouterr().out


def test_missing_credentials_say_what_to_set(bundle_path, tmp_cwd, monkeypatch, capsys):
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.setenv("DATABRICKS_TOKEN", "x")
    assert run_cli("deploy", ["--bundle", str(bundle_path)]) == 2
    assert "set DATABRICKS_HOST in the environment" in capsys.readouterr().err


def test_a_missing_wheel_or_config_file_is_reported(double, dbx_env, bundle_path, wheel, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        _deploy(dbx_env, bundle_path, tmp_path / "nope.whl")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(bundle_path, project / "databricks.yml")
    with pytest.raises(ConfigError, match=r"conf/databricks.dev.ini does not exist"):
        _deploy(dbx_env, project / "databricks.yml", wheel)
    assert double.jobs == {}


@pytest.mark.slow
def test_deploy_builds_the_wheel_with_the_bundles_artifact_command(double, dbx_env, bundle_path, tmp_path):
    """No --wheel: the artifact's build command runs (in a copy of the project) and its wheel is deployed."""
    project = tmp_path / "project"
    root = bundle_path.parent
    shutil.copytree(root / "cmle", project / "cmle", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "conf", project / "conf")
    for name in ("pyproject.toml", "databricks.yml", "README.md"):
        if (root / name).exists():
            shutil.copy(root / name, project / name)
    (project / "dist").mkdir()
    (project / "dist" / "cmle-0.0.1-py3-none-any.whl").write_bytes(b"stale")  # cleared like the CLI does
    _, d = _deploy(dbx_env, project / "databricks.yml", None)
    (built,) = (project / "dist").glob("*.whl")
    assert built.name == "cmle-0.1.0-py3-none-any.whl"
    assert double.files[d.wheel] == built.read_bytes()
    import zipfile

    names = zipfile.ZipFile(built).namelist()
    assert "cmle/stages/deploy.py" in names
    scripts = zipfile.ZipFile(built).read("cmle-0.1.0.dist-info/entry_points.txt").decode()
    assert all(f"cmle-{s} = cmle.cli:" in scripts for s in STAGE_ORDER)


def test_the_deployment_job_deploys_and_runs_beside_the_pipeline(double, dbx_env, bundle_path, wheel, tmp_cwd,
                                                                 capsys):
    _deploy(dbx_env, bundle_path, wheel)
    args = ["--bundle", str(bundle_path), "--wheel", str(wheel), "--job", "cmle_deployment", "--run_now",
            "--poll_seconds", "0.001"]
    assert run_cli("deploy", args) == 0
    outputs = json.loads(capsys.readouterr().out)
    assert outputs["action"] == "created" and outputs["job_name"] == "[dev ann_lee] cmle-deployment-dev"
    assert outputs["run"]["result_state"] == "SUCCESS" and len(double.jobs) == 2
    created = double.jobs[outputs["job_id"]]
    assert [t["task_key"] for t in created["tasks"]] == ["evaluation", "approval", "deployment"]
