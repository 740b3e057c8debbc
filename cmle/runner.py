"""Run a stage function inside an MLflow run (nested when a parent run is active)."""

from __future__ import annotations

import logging
import time
from typing import Any

import mlflow

from cmle import __version__, failpoints, locks, redact, storage_schemes, tracking
from cmle.config import Settings
from cmle.context import Context
from cmle.stages import get_stage

log = logging.getLogger(__name__)


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
                             "cmle.version": __version__})
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
