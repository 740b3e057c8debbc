"""Deploy the bundle's job with databricks-sdk, for users without the Databricks CLI.

``deploy`` builds (or takes) the package wheel, uploads it to the target's artifact path (a
Unity Catalog volume or a workspace folder) under a content-addressed folder, uploads the
bundle files the job refers to (its config file), then creates the job, or resets the one
job that already has its name: re-deploying never makes a second job. ``run_and_follow``
starts a run with an idempotency token and follows it to a terminal state, printing each
task's state and run page URL; a failed task raises :class:`JobRunFailed` naming it.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, TextIO

from cmle import redact
from cmle.databricks.bundle import BundleJob, is_local_path, with_wheel, workspace_files
from cmle.errors import CmleError, ConfigError, PlatformError

HOST_ENV, TOKEN_ENV = "DATABRICKS_HOST", "DATABRICKS_TOKEN"
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
WAITING = ("PENDING", "QUEUED", "BLOCKED")  # not worth a line before a task starts
FAILED_RESULTS = ("FAILED", "TIMEDOUT", "CANCELED", "MAXIMUM_CONCURRENT_RUNS_REACHED")
MAX_TOKEN = 64  # the Jobs API limit for idempotency tokens


class JobRunFailed(PlatformError):
    """A run of the deployed job ended without success."""


@dataclass
class Deployment:
    job_id: int
    job_name: str
    action: str  # "created" or "reset"
    target: str
    wheel: str  # remote path of the uploaded wheel ("" if the job has no local wheel)
    files: list[str] = field(default_factory=list)  # workspace files uploaded
    run: dict[str, Any] = field(default_factory=dict)  # filled by run_and_follow

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def workspace_client(env: Mapping[str, str] | None = None):
    """A WorkspaceClient for ``DATABRICKS_HOST`` with the personal access token ``DATABRICKS_TOKEN``.

    The auth type is fixed to PAT so that stray profiles or other ``DATABRICKS_*`` settings
    cannot switch the authentication method.
    """
    from databricks.sdk import WorkspaceClient

    env = os.environ if env is None else env
    host, token = env.get(HOST_ENV, ""), env.get(TOKEN_ENV, "")
    missing = [name for name, value in ((HOST_ENV, host), (TOKEN_ENV, token)) if not value]
    if missing:
        raise ConfigError(f"set {' and '.join(missing)} in the environment to deploy (the workspace URL and a "
                          "personal access token); --dry_run true prints the job without them")
    redact.register(token)
    return WorkspaceClient(host=host, token=token, auth_type="pat")


# --- the wheel -----------------------------------------------------------------------------


def wheel_artifact(job: BundleJob) -> tuple[str, dict[str, Any]]:
    """The bundle's ``whl`` artifact as ``(key, definition)``; ConfigError if there is not exactly one."""
    wheels = [(k, a) for k, a in job.artifacts.items() if (a or {}).get("type") == "whl"]
    if len(wheels) != 1:
        raise ConfigError(f"the bundle needs exactly one artifact of type whl to build the package, found {len(wheels)}")
    return wheels[0]


def build_wheel(job: BundleJob) -> Path:
    """Run the artifact's build command (as ``databricks bundle deploy`` would) and return the one wheel built."""
    key, artifact = wheel_artifact(job)
    folder = (job.root / artifact.get("path", ".")).resolve()
    patterns = [f.get("source") for f in artifact.get("files") or [] if f.get("source")] or ["dist/*.whl"]
    for pattern in patterns:  # the CLI also clears old wheels, so exactly the new one is deployed
        for old in glob.glob(str(folder / pattern)):
            os.remove(old)
    command = shlex.split(artifact.get("build") or "python -m pip wheel --no-deps --wheel-dir dist .")
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable  # the interpreter running cmle, not whatever `python` is on PATH
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise CmleError(f"building the wheel (artifact {key}: {' '.join(command)}) failed:\n{tail}")
    built = sorted(p for pattern in patterns for p in glob.glob(str(folder / pattern)))
    if len(built) != 1:
        raise CmleError(f"the build of artifact {key} should leave one wheel matching {patterns}, found {len(built)}")
    return Path(built[0])


def remote_wheel_path(artifact_path: str, wheel: Path | str, digest: str | None = None) -> str:
    """Where the wheel goes: ``{artifact_path}/.internal/{content hash}/{wheel name}``.

    A new wheel gets a new path, so compute that cached an older wheel under the same name
    installs the new one; an unchanged wheel keeps its path (and the job its settings).
    """
    if digest is None:
        digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    return f"{artifact_path.rstrip('/')}/.internal/{digest[:16]}/{Path(wheel).name}"


def _is_volume(path: str) -> bool:
    return path.startswith("/Volumes/")


def upload_file(w, remote: str, data: bytes) -> None:
    """Put ``data`` at ``remote``: a Unity Catalog volume path (Files API) or a workspace path (import)."""
    parent = remote.rsplit("/", 1)[0]
    if _is_volume(remote):
        w.files.create_directory(parent)
        w.files.upload(remote, io.BytesIO(data), overwrite=True)
    else:
        from databricks.sdk.service.workspace import ImportFormat

        w.workspace.mkdirs(parent)
        w.workspace.upload(remote, io.BytesIO(data), format=ImportFormat.AUTO, overwrite=True)


def _local_wheel_dependencies(settings: Mapping[str, Any]) -> list[str]:
    deps = [d for e in settings.get("environments") or [] for d in (e.get("spec") or {}).get("dependencies") or []]
    deps += [lib["whl"] for t in settings.get("tasks") or [] for lib in t.get("libraries") or [] if "whl" in lib]
    return [d for d in deps if is_local_path(d)]


# --- files the job refers to ---------------------------------------------------------------


def referenced_files(job: BundleJob, settings: Mapping[str, Any]) -> dict[str, Path]:
    """``{workspace path: local file}`` for every bundle file the job settings refer to; ConfigError if one is missing."""
    file_path = job.workspace["file_path"]
    out = {}
    for remote in workspace_files(settings, file_path):
        local = job.root / remote[len(file_path.rstrip("/")) + 1:]
        if not local.is_file():
            raise ConfigError(f"the job refers to {remote}, but {local} does not exist in the project")
        out[remote] = local
    return out


# --- the job -------------------------------------------------------------------------------


def find_job(w, name: str) -> int | None:
    """The id of the one job called ``name``; None if there is none; PlatformError if several."""
    found = [j for j in w.jobs.list(name=name) if j.settings and j.settings.name == name]
    if len(found) > 1:
        ids = ", ".join(str(j.job_id) for j in found)
        raise PlatformError(f"{len(found)} Databricks jobs are named {name!r} (ids {ids}); delete all but one "
                            "and deploy again")
    return found[0].job_id if found else None


def create_or_reset(w, settings: Mapping[str, Any]) -> tuple[int, str]:
    """Create the job, or reset (fully replace) the one with the same name; returns ``(job_id, action)``."""
    from databricks.sdk.service.jobs import JobSettings

    js = JobSettings.from_dict(dict(settings))
    job_id = find_job(w, js.name)
    if job_id is None:
        return w.jobs.create(**{f.name: getattr(js, f.name) for f in fields(js)}).job_id, "created"
    w.jobs.reset(job_id=job_id, new_settings=js)
    return job_id, "reset"


def prepare(job: BundleJob, wheel: Path | None) -> tuple[dict[str, Any], str]:
    """The job settings with the wheel's remote path in place of local paths, and that path.

    Without a wheel (dry run) the path shows ``<sha256>`` where the content hash will go.
    """
    if not _local_wheel_dependencies(job.settings):
        return dict(job.settings), ""
    if wheel is None:
        from cmle import __version__

        remote = remote_wheel_path(job.workspace["artifact_path"], f"cmle-{__version__}-py3-none-any.whl", "<sha256>")
    else:
        remote = remote_wheel_path(job.workspace["artifact_path"], wheel)
    return with_wheel(job.settings, remote), remote


def deploy(w, job: BundleJob, wheel: Path | None = None, out: TextIO | None = None) -> Deployment:
    """Upload the wheel (built when ``wheel`` is None) and the job's files, then create or reset the job.

    Progress goes to ``out`` (default: stderr).
    """
    out = out or sys.stderr
    if _local_wheel_dependencies(job.settings) and wheel is None:
        print(f"building the wheel ({job.root})", file=out, flush=True)
        wheel = build_wheel(job)
    elif wheel is not None and not Path(wheel).is_file():
        raise ConfigError(f"wheel {wheel} does not exist; build it (python -m pip wheel --no-deps -w dist .) "
                          "or leave --wheel empty to build it")
    settings, remote = prepare(job, wheel)
    if remote:
        upload_file(w, remote, Path(wheel).read_bytes())
        print(f"uploaded {Path(wheel).name} to {remote}", file=out, flush=True)
    files = referenced_files(job, settings)
    for path, local in files.items():
        upload_file(w, path, local.read_bytes())
        print(f"uploaded {local.relative_to(job.root)} to {path}", file=out, flush=True)
    job_id, action = create_or_reset(w, settings)
    print(f"{action} job {job.name!r} (id {job_id})", file=out, flush=True)
    return Deployment(job_id=job_id, job_name=job.name, action=action, target=job.target, wheel=remote,
                      files=sorted(files))


# --- running it ----------------------------------------------------------------------------


def new_idempotency_token(job_id: int) -> str:
    """A fresh token for one run request (retries of that request then start no second run)."""
    return f"cmle-{job_id}-{uuid.uuid4().hex}"[:MAX_TOKEN]


def _state(obj) -> tuple[str, str, str]:
    st = obj.state
    if st is None:
        return "", "", ""
    return (st.life_cycle_state.value if st.life_cycle_state else "",
            st.result_state.value if st.result_state else "", st.state_message or "")


def _failure_detail(w, task) -> str:
    try:
        output = w.jobs.get_run_output(task.run_id)
    except Exception:  # noqa: BLE001 - the detail is a courtesy; the state already says it failed
        return ""
    return (output.error or "").strip()


def run_and_follow(w, job_id: int, idempotency_token: str = "", timeout_minutes: float = 120,
                   poll_seconds: float = 10.0, out: TextIO | None = None) -> dict[str, Any]:
    """Start a run of ``job_id`` and follow it to a terminal state, printing task states as they change.

    Returns ``{run_id, run_page_url, result_state, tasks: {task_key: result}}``. Raises
    :class:`JobRunFailed` naming the failed task(s), or CmleError when ``timeout_minutes``
    pass first (the run goes on).
    """
    out = out or sys.stderr
    token = idempotency_token or new_idempotency_token(job_id)
    if len(token) > MAX_TOKEN:
        raise ConfigError(f"idempotency_token is {len(token)} characters; the Jobs API allows at most {MAX_TOKEN}")
    run_id = w.jobs.run_now(job_id=job_id, idempotency_token=token).run_id
    deadline = time.monotonic() + timeout_minutes * 60
    seen: dict[str, tuple[str, str]] = {}
    announced = False
    while True:
        run = w.jobs.get_run(run_id)
        if not announced:
            print(f"run {run_id}: {run.run_page_url or ''}", file=out, flush=True)
            announced = True
        for task in run.tasks or []:
            life, result, _ = _state(task)
            before = seen.get(task.task_key)
            seen[task.task_key] = (life, result)
            if before != (life, result) and (before is not None or life not in WAITING):
                shown = f"{life} {result}".strip()
                print(f"  {task.task_key:<10} {shown:<26} {task.run_page_url or ''}", file=out, flush=True)
        life, result, message = _state(run)
        if life in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise CmleError(f"run {run_id} of job {job_id} is still {life} after {timeout_minutes} minutes; "
                            f"it goes on: follow it at {run.run_page_url}")
        time.sleep(poll_seconds)
    tasks = {t.task_key: _state(t)[1] or _state(t)[0] for t in run.tasks or []}
    summary = {"run_id": run_id, "run_page_url": run.run_page_url or "", "result_state": result or life,
               "tasks": tasks}
    if result == "SUCCESS" and life == "TERMINATED":
        print(f"run {run_id} succeeded", file=out, flush=True)
        return summary
    failed = [t for t in run.tasks or [] if _state(t)[1] in FAILED_RESULTS or _state(t)[0] == "INTERNAL_ERROR"]
    skipped = [t.task_key for t in run.tasks or [] if _state(t)[1] in ("UPSTREAM_FAILED", "UPSTREAM_CANCELED")]
    parts = []
    for t in failed:
        detail = _failure_detail(w, t)
        state = _state(t)[1] or _state(t)[0]
        parts.append(f"task {t.task_key} {state}" + (f": {detail}" if detail else "") +
                     (f" ({t.run_page_url})" if t.run_page_url else ""))
    if not parts:
        parts.append(f"the run ended {life} {result}: {message}".strip())
    if skipped:
        parts.append(f"not run because of it: {', '.join(skipped)}")
    raise JobRunFailed(f"Databricks job {job_id} run {run_id} failed: " + "; ".join(parts) +
                       f". Fix the cause and deploy/run again; run page: {run.run_page_url}")
