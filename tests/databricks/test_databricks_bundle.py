"""databricks.yml: one task per stage in pipeline order, valid for the bundle schema, resolved per target."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from cmle.databricks import bundle
from cmle.errors import ConfigError
from cmle.stages import STAGE_ORDER

PROJECT = Path(__file__).resolve().parents[2]
BUNDLE = PROJECT / "databricks.yml"
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
RAW = yaml.safe_load(BUNDLE.read_text())
TARGETS = tuple(RAW["targets"])


def _job(target="dev", **kw) -> bundle.BundleJob:
    return bundle.resolve_job(BUNDLE, target, **kw)


def _wheel_tasks(settings) -> list[dict]:
    return [t for t in settings["tasks"] if "python_wheel_task" in t]


def test_one_wheel_task_per_stage_in_pipeline_order():
    settings = _job().settings
    tasks = _wheel_tasks(settings)
    assert [t["task_key"] for t in tasks] == list(STAGE_ORDER)
    for i, task in enumerate(tasks):
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == PYPROJECT["project"]["name"] == "cmle"
        assert wheel_task["entry_point"] == f"cmle-{task['task_key']}"
        assert task["environment_key"] in {e["environment_key"] for e in settings["environments"]}
        if i > 1:
            assert task.get("depends_on") == [{"task_key": STAGE_ORDER[i - 1]}], task["task_key"]


def test_synthetic_is_an_optional_task_decided_by_a_job_parameter():
    tasks = {t["task_key"]: t for t in _job().settings["tasks"]}
    assert tasks["use_synthetic"]["condition_task"] == {"op": "EQUAL_TO", "left": "{{job.parameters.synthetic}}",
                                                        "right": "true"}
    assert tasks["synthetic"]["depends_on"] == [{"task_key": "use_synthetic", "outcome": "true"}]
    # explore runs after synthetic, or without it when the condition left it out, never after a failure
    assert tasks["explore"]["depends_on"] == [{"task_key": "use_synthetic"}, {"task_key": "synthetic"}]
    assert tasks["explore"]["run_if"] == "NONE_FAILED"


def test_entry_points_are_the_packages_console_scripts_for_the_same_stage():
    from cmle import cli

    scripts = PYPROJECT["project"]["scripts"]
    for task in _wheel_tasks(_job().settings):
        entry = task["python_wheel_task"]["entry_point"]
        module, func = scripts[entry].split(":")
        assert module == "cmle.cli"
        assert getattr(cli, func).__name__ == task["task_key"]  # the script runs that stage


def test_job_parameters_reach_every_task_and_every_task_accepts_them():
    """Databricks pushes every job parameter down to every wheel task as --name=value."""
    from cmle.cli import JOB_ONLY_PARAMETERS, other_parameters
    from cmle.stages import get_stage

    settings = _job().settings
    params = {p["name"]: p["default"] for p in settings["parameters"]}
    assert list(params) == ["config", "spec", "synthetic"]
    assert params["spec"].endswith("/files/conf/models/synthetic.yaml") and params["synthetic"] == "true"
    for task in _wheel_tasks(settings):
        stage = get_stage(task["task_key"])
        accepted = {p.name for p in stage.params} | set(other_parameters(stage)) | {"config"}
        assert set(params) <= accepted, task["task_key"]
        for name in ("min_positives", "profiles", "spec"):  # what the issue sets per run
            assert name in accepted
        named = task["python_wheel_task"]["named_parameters"]
        assert named["config"] == "{{job.parameters.config}}"
        assert set(named) - {"config"} <= {p.name for p in stage.params}
    assert "synthetic" in JOB_ONLY_PARAMETERS


def test_environment_installs_the_wheel_and_pinned_hyperopt_on_python_311():
    (env,) = _job().settings["environments"]
    deps = env["spec"]["dependencies"]
    assert "./dist/*.whl" in deps
    pins = dict(d.split("==") for d in PYPROJECT["project"]["dependencies"])
    assert f"hyperopt=={pins['hyperopt']}" in deps  # DBR ML after 16.4 no longer bundles it
    for dep in deps:  # anything pinned here agrees with the package's pins
        if "==" in dep:
            name, version = dep.split("==")
            assert pins[name] == version
    # serverless environment 2 is Python 3.11; the package requires <3.12
    assert env["spec"]["environment_version"] == "2"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"


def test_artifact_builds_the_package_wheel():
    key, artifact = next(iter(RAW["artifacts"].items()))
    assert artifact["type"] == "whl" and artifact["path"] == "."
    assert "wheel" in artifact["build"]


@pytest.mark.parametrize("target", TARGETS)
def test_bundle_jobs_validate_with_databricks_bundles(target):
    """The offline check CI runs: databricks-bundles' strict dataclasses accept the job, raw and resolved."""
    for key, raw in RAW["resources"]["jobs"].items():
        assert Job.from_dict(raw).as_dict() == raw  # references left in, as the CLI reads it
    resolved = _job(target, user_name="ann.lee@example.com")
    assert Job.from_dict(resolved.settings).as_dict() == resolved.settings


def test_databricks_bundles_rejects_a_misspelt_field():
    raw = yaml.safe_load(BUNDLE.read_text())["resources"]["jobs"]["cmle_pipeline"]
    raw["tasks"][1]["python_wheel_task"]["entrypoint"] = raw["tasks"][1]["python_wheel_task"].pop("entry_point")
    with pytest.raises(ValueError, match="entrypoint"):
        Job.from_dict(raw)


def test_dev_target_is_a_paused_per_user_development_deployment():
    job = _job("dev", user_name="ann.lee@example.com")
    s = job.settings
    assert job.mode == "development"
    assert s["name"] == "[dev ann_lee] cmle-pipeline-dev"
    assert s["tags"] == {"project": "cmle", "target": "dev", "dev": "ann_lee"}
    assert s["schedule"]["pause_status"] == "PAUSED"
    assert job.workspace["file_path"] == "/Workspace/Users/ann.lee@example.com/.bundle/cmle/dev/files"
    # development mode: the artifact path holds the user (the Databricks CLI's check)
    assert job.workspace["artifact_path"] == "/Volumes/main/cmle_dev/artifacts/.bundle/cmle/dev/ann_lee"
    assert s["parameters"][0]["default"] == job.workspace["file_path"] + "/conf/databricks.dev.ini"


def test_development_paths_must_hold_the_user(tmp_path):
    """As the Databricks CLI: in mode development, root, file and artifact paths contain the user."""
    data = yaml.safe_load(BUNDLE.read_text())
    data["targets"]["dev"]["workspace"]["artifact_path"] = "/Volumes/main/cmle_dev/artifacts/shared"
    path = tmp_path / "databricks.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="workspace.artifact_path .* must contain the current user name"):
        bundle.resolve_job(path, "dev", user_name="ann.lee@example.com")
    with pytest.raises(ConfigError, match="artifact_path"):
        bundle.resolve_job(path, "dev")  # also without the user (a dry run)
    bundle.resolve_job(path, "prod", user_name="ann.lee@example.com")  # production mode has no such rule
    for ok in ("~/artifacts", "/Volumes/a/b/c/ann.lee@example.com", "/Volumes/a/b/c/${workspace.current_user.short_name}"):
        data["targets"]["dev"]["workspace"]["artifact_path"] = ok
        path.write_text(yaml.safe_dump(data))
        bundle.resolve_job(path, "dev", user_name="ann.lee@example.com")


def test_prod_target_is_shared_and_scheduled():
    job = _job("prod", user_name="ann.lee@example.com")
    s = job.settings
    assert s["name"] == "cmle-pipeline-prod"
    assert s["schedule"] == {"quartz_cron_expression": "0 0 5 ? * MON", "timezone_id": "UTC",
                             "pause_status": "UNPAUSED"}
    assert job.workspace["root_path"] == "/Workspace/Shared/.bundle/cmle/prod"
    assert job.workspace["artifact_path"] == "/Volumes/main/cmle/artifacts/.bundle/cmle/prod"
    assert s["max_concurrent_runs"] == 1


def test_default_target_is_dev_and_unknown_target_is_refused():
    assert bundle.resolve_job(BUNDLE).target == "dev"
    with pytest.raises(ConfigError, match="staging.*dev, prod"):
        bundle.resolve_job(BUNDLE, "staging")


def test_without_a_user_the_user_references_stay_visible():
    s = _job("dev").settings
    assert s["name"] == "[dev ${workspace.current_user.short_name}] cmle-pipeline-dev"
    assert "${workspace.current_user.userName}" in s["parameters"][0]["default"]


def test_variable_precedence_var_over_env_over_target_over_default():
    def schema(**kw):
        return _job("dev", user_name="u@x.org", **kw).workspace["artifact_path"].split("/")[3]

    assert schema(env={}) == "cmle_dev"  # target value over the default "cmle"
    assert schema(env={"BUNDLE_VAR_schema": "from_env"}) == "from_env"
    assert schema(env={"BUNDLE_VAR_schema": "from_env"}, variables={"schema": "from_var"}) == "from_var"
    assert bundle.resolve_job(BUNDLE, "prod", env={}, user_name="u@x.org").workspace["artifact_path"] \
        .split("/")[3] == "cmle"
    with pytest.raises(ConfigError, match="not declared"):
        _job("dev", variables={"catalgo": "x"})


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "databricks.yml"
    p.write_text(yaml.safe_dump(data))
    return p


def _minimal(**job_extra) -> dict:
    return {"bundle": {"name": "b"},
            "variables": {"n": {"default": 2}},
            "resources": {"jobs": {"j": {"name": "j-${bundle.target}", "max_concurrent_runs": "${var.n}",
                                         "tasks": [{"task_key": "a", "python_wheel_task": {
                                             "package_name": "p", "entry_point": "e"}}], **job_extra}}},
            "targets": {"t": {"default": True,
                              "resources": {"jobs": {"j": {"tasks": [{"task_key": "a", "max_retries": 3},
                                                                     {"task_key": "b", "depends_on": [
                                                                         {"task_key": "a"}]}]}}}}}}


def test_target_resources_merge_tasks_by_key_and_references_keep_their_type(tmp_path):
    s = bundle.resolve_job(_write(tmp_path, _minimal()), env={}).settings
    assert s["max_concurrent_runs"] == 2  # a whole-string reference keeps the number
    assert s["name"] == "j-t"
    assert s["tasks"] == [{"task_key": "a", "max_retries": 3,
                           "python_wheel_task": {"package_name": "p", "entry_point": "e"}},
                          {"task_key": "b", "depends_on": [{"task_key": "a"}]}]


def test_unknown_job_field_and_undefined_reference_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown job field\(s\) max_concurent_runs"):
        bundle.resolve_job(_write(tmp_path, _minimal(max_concurent_runs=1)), env={})
    with pytest.raises(ConfigError, match=r"\$\{var.nope\} is not defined"):
        bundle.resolve_job(_write(tmp_path, _minimal(description="${var.nope}")), env={})
    data = _minimal()
    data["variables"]["m"] = {"description": "no default"}
    with pytest.raises(ConfigError, match="variable m has no value.*BUNDLE_VAR_m"):
        bundle.resolve_job(_write(tmp_path, data), env={})


def test_missing_or_foreign_bundle_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        bundle.load_bundle(tmp_path / "nope.yml")
    (tmp_path / "x.yml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="no bundle.name"):
        bundle.load_bundle(tmp_path / "x.yml")


def test_local_wheel_dependencies_are_replaced_by_the_uploaded_path():
    s = bundle.with_wheel(_job().settings, "/Volumes/c/s/v/cmle.whl")
    assert s["environments"][0]["spec"]["dependencies"] == ["/Volumes/c/s/v/cmle.whl", "hyperopt==0.3.0"]
    assert bundle.is_local_path("./dist/*.whl") and bundle.is_local_path("x.whl")
    assert not any(map(bundle.is_local_path, ["/Volumes/a/b.whl", "dbfs:/a.whl", "hyperopt==0.3.0"]))


@pytest.mark.parametrize("target", TARGETS)
def test_each_targets_config_file_exists_and_loads_for_unity_catalog(target, tmp_cwd):
    """The file the job passes as --config is valid cmle config: databricks tracking, UC registry, 3-level name."""
    from cmle.config import load_settings
    from cmle.databricks.unity_catalog import check_settings, is_unity_catalog

    job = _job(target, user_name="u@x.org")
    remote, spec = bundle.workspace_files(job.settings, job.workspace["file_path"])
    local = PROJECT / remote[len(job.workspace["file_path"]) + 1:]
    assert local.is_file() and (PROJECT / spec[len(job.workspace["file_path"]) + 1:]).is_file()  # the model spec
    # the AEP identifiers are the user's to fill in; the secret comes from the scope or environment
    env = {"CMLE_PLATFORM_IMS_ORG_ID": "ORG@AdobeOrg", "CMLE_AUTHENTICATION_CLIENT_ID": "id",
           "CMLE_AUTHENTICATION_CLIENT_SECRET": "s3cr3t-value"}
    s = load_settings(local, env=env)
    assert (s.mlflow.tracking_uri, s.mlflow.registry_uri) == ("databricks", "databricks-uc")
    assert is_unity_catalog(s.mlflow.tracking_uri, s.mlflow.registry_uri)
    check_settings(s)
    assert s.cloud.model_name.split(".")[1] == job.workspace["artifact_path"].split("/")[3]  # same schema
    assert s.mlflow.experiment_name.startswith("/")  # Databricks experiments are workspace paths


# --- the deployment-job shape (governed promotion, issue 14) -------------------------------------
def test_the_first_job_is_the_pipeline_unless_one_is_named():
    assert bundle.resolve_job(BUNDLE, "dev").key == "cmle_pipeline"
    assert bundle.resolve_job(BUNDLE, "dev", job="cmle_deployment").key == "cmle_deployment"
    with pytest.raises(ConfigError, match="no job 'nope'"):
        bundle.resolve_job(BUNDLE, "dev", job="nope")


@pytest.mark.parametrize("target", TARGETS)
def test_the_deployment_job_is_evaluation_then_approval_then_deployment(target):
    from cmle.stages import get_stage

    job = bundle.resolve_job(BUNDLE, target, job="cmle_deployment", user_name="ann.lee@example.com")
    assert Job.from_dict(job.settings).as_dict() == job.settings  # valid for the bundle schema
    tasks = job.settings["tasks"]
    assert [t["task_key"] for t in tasks] == ["evaluation", "approval", "deployment"]
    assert [t.get("depends_on") for t in tasks] == [None, [{"task_key": "evaluation"}], [{"task_key": "approval"}]]
    wheel = {t["task_key"]: t["python_wheel_task"] for t in tasks}
    assert [wheel[k]["entry_point"] for k in ("evaluation", "approval", "deployment")] == [
        "cmle-promote", "cmle-approve", "cmle-promote"]
    evaluation, approval, deployment = (wheel[k]["named_parameters"] for k in ("evaluation", "approval",
                                                                                  "deployment"))
    assert evaluation["mode"] == deployment["mode"] == "approval"
    # the approval task waits on the tag named after itself, which a deployment job's Approve button sets
    assert approval["decision"] == "wait" and float(approval["wait_minutes"]) > 0
    assert evaluation["approval_tag"] == approval["approval_tag"] == deployment["approval_tag"] == "approval"
    for task in tasks:  # every named parameter is one the stage declares, with a valid value
        stage = get_stage(task["python_wheel_task"]["entry_point"].removeprefix("cmle-"))
        named = {k: v for k, v in task["python_wheel_task"]["named_parameters"].items() if k != "config"}
        assert stage.resolve(named)
    # the pipeline's config and spec, pushed down to every task: the model promoted is the one it trained
    pipeline = _job(target, user_name="ann.lee@example.com").settings["parameters"]
    assert job.settings["parameters"] == [p for p in pipeline if p["name"] in ("config", "spec")]
