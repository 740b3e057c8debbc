"""Run a stage function inside an MLflow run (nested when a parent run is active)."""

from __future__ import annotations

import logging
import time
from typing import Any

import mlflow

from cmle import __version__, failpoints, holder, locks, redact, storage_schemes, tracking
from cmle.config import Settings
from cmle.context import Context
from cmle.stages import get_stage

log = logging.getLogger(__name__)

HOLDER_TAG = holder.TAG  # on every stage run: the process running it


def end_abandoned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the runs still RUNNING whose process on this host is gone (a killed stage
    leaves its run RUNNING); runs of live processes or other hosts are left alone. Returns
    the run ids ended. Best effort: a failure here never stops the stage."""
    ended = []
    try:
        client = mlflow.MlflowClient()
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
        for r in running:
            if holder.is_alive(r.data.tags.get(HOLDER_TAG, "")) is False:
                client.set_terminated(r.info.run_id, status="KILLED")
                ended.append(r.info.run_id)
    except Exception as exc:  # noqa: BLE001 - bookkeeping of earlier runs only
        log.debug("could not end abandoned runs: %s", exc)
    if ended:
        log.info("marked %d run(s) of processes that are gone as KILLED: %s", len(ended), ", ".join(ended))
    return ended


def run_stage(name: str, settings: Settings, params: dict[str, Any] | None = None,
              ctx: Context | None = None) -> dict[str, Any]:
    """Resolve the stage's parameters, run it in an MLflow run, log and return its outputs.

    With an active run (``main``) the stage runs as a nested run and shares ``ctx``.
    """
    redact.install()
    stage = get_stage(name)
    values = stage.resolve(params)
    if not stage.tracked:  # deploy: runs on the user's machine, storage is the job's business
        return stage.func(ctx or Context(settings), **values) or {}
    storage_schemes.require_driver(settings.storage_url)  # before any work, not at the first export
    own_ctx = ctx is None
    ctx = ctx or Context(settings)
    if mlflow.active_run() is None:
        tracking.setup(settings)
    nested = mlflow.active_run() is not None
    started = time.perf_counter()
    try:
        # One run at a time per owner on this platform folder: a second one waits, then finds
        # the first one's results (re-entered, not re-taken, by main's nested stages).
        with locks.owner_lock(settings, f"cmle {name} (owner {settings.platform.owner!r})"), \
                mlflow.start_run(run_name=name, nested=nested) as run:
            mlflow.set_tags({"cmle.stage": name, "cmle.backend": settings.platform.backend,
                             "cmle.version": __version__, HOLDER_TAG: holder.this_process()})
            if not nested:
                end_abandoned_runs(run.info.experiment_id)
            tracking.log_params(values)
            if not nested:
                tracking.log_params(settings.public_dict(), prefix="config.")
            log.info("stage %s started (run %s)", name, run.info.run_id)
            outputs = stage.func(ctx, **values) or {}
            elapsed = time.perf_counter() - started
            mlflow.log_metric("stage_seconds", elapsed)
            tracking.log_dict(outputs, "outputs.json")
            log.info("stage %s finished in %.1f s", name, elapsed)
            failpoints.hit(f"stage.{name}.done")
            return outputs
    finally:
        if own_ctx:
            ctx.close()
