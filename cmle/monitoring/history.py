"""The monitoring history kept in MLflow: one ``monitor`` run per window, and what other
stages read from it (whether retraining is due; a model version's realised evidence).

A *window* is the monitoring of one score run (tag :data:`WINDOW_TAG`, the score run's
``exportTime``); monitoring the same score run again replaces that window's values (the
newest run counts), it does not add a window.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mlflow

from cmle.registry import TAG_PREFIX

log = logging.getLogger(__name__)

STAGE_TAG = f"{TAG_PREFIX}stage"
MODEL_TAG = f"{TAG_PREFIX}model_name"
WINDOW_TAG = f"{TAG_PREFIX}monitor_window"
DUE_TAG = f"{TAG_PREFIX}retrain_due"
REALISED_CELLS_ARTIFACT = "monitor/realised_cells.csv"  # per score run: the cells of its realised outcomes
REALISED_TAG = f"{TAG_PREFIX}realised.v"  # + model version: JSON of the newest realised metrics of that version
MAX_RUNS = 1000


def _experiments(experiment_ids: list[str] | None) -> list[str]:
    if experiment_ids:
        return list(experiment_ids)
    active = mlflow.active_run()
    if active is not None:
        return [active.info.experiment_id]
    from mlflow.tracking import MlflowClient

    return [e.experiment_id for e in MlflowClient().search_experiments()]


def monitor_runs(model_name: str, experiment_ids: list[str] | None = None) -> list:
    """Finished monitor runs of ``model_name``, oldest first, one per window (the newest of it)."""
    runs = mlflow.search_runs(experiment_ids=_experiments(experiment_ids), output_format="list",
                              filter_string=f"tags.`{STAGE_TAG}` = 'monitor' and tags.`{MODEL_TAG}` = "
                                            f"'{model_name}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"], max_results=MAX_RUNS)
    by_window: dict[str, Any] = {}
    for r in runs:
        by_window[r.data.tags.get(WINDOW_TAG, r.info.run_id)] = r  # later runs replace earlier ones
    return sorted(by_window.values(), key=lambda r: r.info.start_time)


def metric_history(model_name: str, metric: str, experiment_ids: list[str] | None = None,
                   exclude_window: str = "") -> list[float | None]:
    """``metric`` of every window, oldest first (None where a window did not log it)."""
    return [r.data.metrics.get(metric) for r in monitor_runs(model_name, experiment_ids)
            if r.data.tags.get(WINDOW_TAG) != exclude_window or not exclude_window]


def retrain_due(model_name: str, experiment_ids: list[str] | None = None) -> bool | None:
    """Whether the newest monitoring window says retraining is due; None without any window."""
    runs = monitor_runs(model_name, experiment_ids)
    if not runs:
        return None
    return runs[-1].data.tags.get(DUE_TAG, "false") == "true"


def realised_evidence(model_name: str, version: str | int,
                      experiment_ids: list[str] | None = None) -> dict[str, Any] | None:
    """The newest realised-outcome metrics of one model version, from the monitoring history.

    Returns None when no monitoring run has evaluated a score run of that version whose
    outcome window has passed; otherwise a dict with ``model_name``, ``model_version``,
    ``realised_auc``, ``realised_ece``, ``profiles``, ``positives``, ``expected_rate``,
    ``actual_rate``, ``score_export_time`` (the score run), ``window_start`` and
    ``window_end`` (the outcome window, ISO 8601 UTC) and ``monitor_run_id``.
    """
    key = f"{REALISED_TAG}{version}"
    for r in reversed(monitor_runs(model_name, experiment_ids)):
        raw = r.data.tags.get(key)
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                log.warning("monitor run %s: tag %s is not JSON; skipped", r.info.run_id, key)
                continue
            return {"model_name": model_name, "model_version": str(version), **data,
                    "monitor_run_id": r.info.run_id}
    return None


def realised_outcomes(model_name: str, version: str | int, experiment_ids: list[str] | None = None) -> list:
    """Every realised window of ``version`` in the newest monitor run that recorded realised
    cells, oldest first, as :class:`~cmle.promotion.evidence.RealisedOutcomes` (one row per
    scored profile: the propensity rounded to the cell's 1e-4 and whether the goal occurred).
    A window is named ``{window_start}/{window_end}``: two versions that scored the same
    scoring set (champion in production, challenger in shadow) share it."""
    import numpy as np
    import pandas as pd

    from cmle.promotion.evidence import RealisedOutcomes

    for r in reversed(monitor_runs(model_name, experiment_ids)):
        try:
            path = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path=REALISED_CELLS_ARTIFACT)
        except Exception:  # noqa: BLE001 - a monitor run without ripe score runs has none
            continue
        cells = pd.read_csv(path, dtype={"model_version": str})
        mine = cells[cells["model_version"] == str(version)]
        out = []
        for (start, end), g in mine.groupby(["window_start", "window_end"], sort=True):
            n, k = g["profiles"].to_numpy("int64"), g["positives"].to_numpy("int64")
            y = np.concatenate([np.r_[np.ones(a, "int64"), np.zeros(b - a, "int64")] for a, b in zip(k, n)])
            p = np.repeat(g["p_bin"].to_numpy("float64"), n)
            out.append(RealisedOutcomes(version=str(version), window=f"{start}/{end}", y=y, propensity=p,
                                        source=f"monitor run {r.info.run_id}"))
        return out
    return []


class MonitoringEvidence:
    """The promotion gate's realised-evidence provider backed by the monitoring history."""

    def __init__(self, experiment_ids: list[str] | None = None):
        self.experiment_ids = experiment_ids

    def outcomes(self, model_name: str, version: str) -> list:
        return realised_outcomes(model_name, version, self.experiment_ids)


def evidence_provider(ctx=None) -> MonitoringEvidence:
    """Factory of :class:`MonitoringEvidence` (what :mod:`cmle.promotion.evidence` starts)."""
    return MonitoringEvidence()
