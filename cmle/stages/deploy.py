"""Stage ``deploy``: create or update the Databricks job from ``databricks.yml``, optionally run it.

Not an MLflow run. The workspace and its token come from ``DATABRICKS_HOST`` and
``DATABRICKS_TOKEN`` (never parameters, so they never reach a log or a run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cmle.context import Context
from cmle.databricks import bundle as bundle_mod
from cmle.databricks import deploy as dep
from cmle.errors import ParameterError, PlatformError
from cmle.stages import Param, Stage

DEFAULT_JOB = ""  # the bundle's first job: cmle_pipeline in cmle's bundle


def parse_vars(text: str) -> dict[str, str]:
    """``"a=1,b=x"`` as ``{"a": "1", "b": "x"}`` (bundle variable overrides, like the CLI's ``--var``)."""
    out = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"deploy: parameter var: {item!r} is not name=value")
        out[name.strip()] = value.strip()
    return out


def dry_run_job(bundle: str, target: str, variables: dict[str, str], wheel: Path | None,
                job_key: str = DEFAULT_JOB) -> dict[str, Any]:
    """Print the job definition the deploy would send; call nothing."""
    job = bundle_mod.resolve_job(bundle, target or None, job=job_key or None, variables=variables)
    settings, remote = dep.prepare(job, wheel)
    dep.referenced_files(job, settings)  # the files the job needs must exist before a real deploy
    print(json.dumps(settings, indent=2, sort_keys=True), flush=True)
    print(f"dry run: job {job.name!r} (target {job.target}) not deployed", file=sys.stderr, flush=True)
    return {"dry_run": True, "target": job.target, "job_name": job.name, "wheel": remote,
            "tasks": [t["task_key"] for t in settings.get("tasks") or []]}


def deploy_job(bundle: str, target: str, variables: dict[str, str], wheel: Path | None, run_now: bool,
               idempotency_token: str, timeout_minutes: float, poll_seconds: float,
               job_key: str = DEFAULT_JOB) -> dict[str, Any]:
    """Deploy the job to the workspace of ``DATABRICKS_HOST``; with ``run_now``, run and follow it."""
    from databricks.sdk.errors import DatabricksError

    # a broken bundle fails before any call
    bundle_mod.resolve_job(bundle, target or None, job=job_key or None, variables=variables)
    w = dep.workspace_client()
    try:
        user = w.current_user.me().user_name
        job = bundle_mod.resolve_job(bundle, target or None, job=job_key or None, variables=variables,
                                     user_name=user)
        deployment = dep.deploy(w, job, wheel)
        if run_now:
            deployment.run = dep.run_and_follow(w, deployment.job_id, idempotency_token, timeout_minutes,
                                                poll_seconds)
    except DatabricksError as exc:
        raise PlatformError(f"the Databricks workspace {w.config.host} refused a request: {exc} "
                            f"({getattr(exc, 'error_code', '') or type(exc).__name__}); check the token's "
                            "permissions and that the target's catalog, schema and volume exist") from None
    return deployment.as_dict()


def run(ctx: Context, target: str, run_now: bool, dry_run: bool, wheel: str, bundle: str, var: str,
        idempotency_token: str, timeout_minutes: float, poll_seconds: float,
        job: str = DEFAULT_JOB) -> dict[str, Any]:
    """Deploy (or with ``dry_run`` print) the bundle's job for ``target``; with ``run_now``, run and follow it."""
    variables = parse_vars(var)
    wheel_path = Path(wheel) if wheel else None
    if dry_run:
        return dry_run_job(bundle, target, variables, wheel_path, job)
    return deploy_job(bundle, target, variables, wheel_path, run_now, idempotency_token, timeout_minutes,
                      poll_seconds, job)


STAGE = Stage(
    name="deploy",
    func=run,
    params=(
        Param("target", str, "", "bundle target (dev, prod); empty: the bundle's default target"),
        Param("run_now", bool, False, "start a run after deploying and follow it to the end"),
        Param("dry_run", bool, False, "print the job definition; call nothing in the workspace"),
        Param("wheel", str, "", "the package wheel to deploy; empty: build it with the bundle's artifact command"),
        Param("bundle", str, bundle_mod.DEFAULT_BUNDLE, "the bundle file"),
        Param("var", str, "", "bundle variable overrides, name=value,name=value"),
        Param("idempotency_token", str, "", "token of the run request (at most 64 characters); empty: a new one"),
        Param("timeout_minutes", float, 120.0, "how long --run_now follows the run", min=0.0),
        Param("poll_seconds", float, 10.0, "seconds between run status checks", min=0.0),
        Param("job", str, DEFAULT_JOB, "the bundle's job to deploy; empty: its first, cmle_pipeline (every stage); "
              "cmle_deployment: the deployment-job shape (evaluation, approval, deployment)"),
    ),
    help="Create or update the Databricks job defined in databricks.yml (databricks-sdk, no CLI needed); "
         "optionally run it. Needs DATABRICKS_HOST and DATABRICKS_TOKEN.",
    tracked=False,
)
