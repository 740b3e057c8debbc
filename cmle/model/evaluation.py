"""Holdout evaluation of a fitted model, and logging it to the active MLflow run.

:func:`evaluate` computes everything from the holdout labels and the model's outputs
(metrics, lift/gains by decile, calibration bins); :func:`log_evaluation` writes the
metrics (prefixed ``holdout_``), the tables (CSV) and the figures (PNG).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from cmle import tracking
from cmle.model import metrics, plots


@dataclass
class Evaluation:
    y: np.ndarray
    outputs: pd.DataFrame  # the model's output frame on the holdout
    metrics: dict[str, float]
    lift: pd.DataFrame
    calibration: pd.DataFrame

    @property
    def propensity(self) -> np.ndarray:
        return self.outputs["propensity"].to_numpy()


def evaluate(y, outputs: pd.DataFrame) -> Evaluation:
    """Metrics, lift table and calibration bins of the model outputs against the labels."""
    y = np.asarray(y, dtype="int64")
    p = outputs["propensity"].to_numpy()
    values = metrics.classification_metrics(y, p)
    buckets = outputs["bucket"].value_counts(normalize=True)
    for name in ("low", "medium", "high"):
        values[f"bucket_share_{name}"] = float(buckets.get(name, 0.0))
    return Evaluation(y=y, outputs=outputs.reset_index(drop=True), metrics=values, lift=metrics.lift_table(y, p),
                      calibration=metrics.calibration_table(y, p, strategy="quantile"))


def log_evaluation(evaluation: Evaluation, importance: pd.DataFrame | None = None,
                   oracle: np.ndarray | None = None, prefix: str = "holdout_") -> None:
    """Log metrics, tables and figures of ``evaluation`` to the active run."""
    mlflow.log_metrics({f"{prefix}{k}": v for k, v in evaluation.metrics.items() if np.isfinite(v)})
    tracking.log_table(evaluation.lift, "evaluation/lift_gains_by_decile.csv")
    tracking.log_table(evaluation.calibration, "evaluation/calibration_bins.csv")
    y, p = evaluation.y, evaluation.propensity
    tracking.log_figure(plots.roc_figure(y, p, oracle), "evaluation/roc_curve.png")
    tracking.log_figure(plots.pr_figure(y, p), "evaluation/precision_recall_curve.png")
    tracking.log_figure(plots.calibration_figure(evaluation.calibration, evaluation.metrics["ece"]),
                        "evaluation/calibration_curve.png")
    tracking.log_figure(plots.lift_gains_figure(evaluation.lift), "evaluation/lift_gains.png")
    tracking.log_figure(plots.score_distribution_figure(evaluation.outputs, y), "evaluation/score_distribution.png")
    if importance is not None:
        tracking.log_table(importance, "evaluation/feature_importance.csv")
        tracking.log_figure(plots.importance_figure(importance), "evaluation/feature_importance.png")
