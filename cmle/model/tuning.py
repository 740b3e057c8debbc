"""Hyperparameter search: TPE over the family space, scored on the validation split only.

One nested MLflow run per trial holds the trial's family, hyperparameters, validation
metrics and fit time. MLflow autologging stays off (it writes estimator params into the
trial runs, logs a model per fit and multiplies the time; see reference mlflow.md §6).
The holdout never reaches this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, tpe
from hyperopt.exceptions import AllTrialsFailed

from cmle.errors import DataCheckError, ParameterError
from cmle.model import fit, metrics, space
from cmle.model.preprocess import FeatureSpec

log = logging.getLogger(__name__)


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    status: str
    score: float = float("nan")  # the selection metric on validation
    seconds: float = 0.0
    run_id: str | None = None
    error: str = ""


@dataclass
class TuningResult:
    metric: str
    best: Trial
    trials: list[Trial] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per trial: number, family, status, score, seconds, run id, parameters."""
        return pd.DataFrame([{"trial": t.number, "family": t.params.get("family"), "status": t.status,
                              f"val_{self.metric}": t.score, "seconds": round(t.seconds, 3),
                              "run_id": t.run_id, "params": space.loggable(t.params), "error": t.error}
                             for t in self.trials])


def startup_trials(max_evals: int) -> int:
    """Random trials before TPE starts modelling: half the budget, between 3 and 10."""
    return max(3, min(10, max_evals // 2))


def tune(train: tuple[pd.DataFrame, np.ndarray], valid: tuple[pd.DataFrame, np.ndarray], spec: FeatureSpec,
         families: tuple[str, ...], max_evals: int, seed: int, metric: str = "roc_auc",
         n_jobs: int = 1, log_runs: bool = True, cv_folds: int = 0) -> TuningResult:
    """Search ``max_evals`` points with TPE (``rstate=np.random.default_rng(seed)``).

    Each trial fits on ``train`` and is scored on ``valid`` with ``metric``; with
    ``cv_folds`` > 1 it is scored instead by the mean ``metric`` over the folds of
    :func:`cmle.model.fit.cv_splits` on train + valid (small data: see
    :mod:`cmle.model.budget`). With ``log_runs`` each trial is a nested MLflow run under
    the active run.
    """
    if metric not in metrics.SELECTION_METRICS:
        raise ParameterError(f"metric = {metric!r}: choose one of {', '.join(metrics.SELECTION_METRICS)}")
    if max_evals < 1:
        raise ParameterError(f"max_evals = {max_evals}: at least one evaluation is needed")
    if cv_folds > 1:
        X_all, y_all = fit.pooled(train, valid)
        folds = [((X_all.iloc[a], y_all[a]), (X_all.iloc[b], y_all[b]))
                 for a, b in fit.cv_splits(y_all, cv_folds, seed)]
    else:
        folds = [(train, valid)]
    sign = metrics.SELECTION_METRICS[metric]
    done: list[Trial] = []

    def score(params: dict[str, Any]) -> tuple[float, float]:
        """The selection metric and ROC-AUC, averaged over the folds."""
        values = []
        for (X_fit, y_fit), (X_score, y_score) in folds:
            estimator = space.build_estimator(params, spec, seed=seed, n_jobs=n_jobs).fit(X_fit, y_fit)
            p = estimator.predict_proba(X_score)[:, 1]
            values.append((metrics.selection_score(metric, y_score, p), metrics.roc_auc(y_score, p)))
        return tuple(float(np.mean(v)) for v in zip(*values))

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        trial = Trial(number=len(done), params=dict(params), status="ok")
        done.append(trial)
        started = time.perf_counter()
        run = mlflow.start_run(run_name=f"trial-{trial.number:03d}-{params['family']}", nested=True) \
            if log_runs else None
        try:
            if run is not None:
                trial.run_id = run.info.run_id
                mlflow.set_tags({"cmle.trial": str(trial.number), "cmle.family": params["family"]})
                mlflow.log_params(space.loggable(params))
            trial.score, roc_auc = score(params)
            trial.seconds = time.perf_counter() - started
            if run is not None:
                mlflow.log_metrics({f"val_{metric}": trial.score, "val_roc_auc": roc_auc,
                                    "fit_seconds": trial.seconds})
            if not np.isfinite(trial.score):
                raise ValueError(f"validation {metric} is not finite")
            return {"loss": sign * trial.score, "status": STATUS_OK}
        except Exception as exc:  # noqa: BLE001 - a failed point is recorded and skipped
            trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            log.warning("trial %d (%s) failed: %s", trial.number, params.get("family"), trial.error)
            if run is not None:
                mlflow.set_tag("cmle.trial_error", trial.error)
            return {"loss": np.inf, "status": STATUS_FAIL}
        finally:
            if run is not None:
                mlflow.end_run("FINISHED" if trial.status == "ok" else "FAILED")

    hp_space = space.search_space(families)
    logging.getLogger("hyperopt").setLevel(logging.WARNING)  # one INFO line per trial otherwise
    try:
        fmin(objective, hp_space, algo=partial(tpe.suggest, n_startup_jobs=startup_trials(max_evals)),
             max_evals=max_evals, trials=Trials(), rstate=np.random.default_rng(seed), show_progressbar=False)
    except AllTrialsFailed:
        pass  # reported below, with the first trial's reason
    ok = [t for t in done if t.status == "ok"]
    if not ok:
        raise DataCheckError(f"all {len(done)} tuning trials failed; first error: {done[0].error if done else '-'}. "
                             "Check the training set (both classes present, enough rows, not every feature "
                             "constant) and the families parameter")
    best = min(ok, key=lambda t: sign * t.score)
    # The objective received each evaluated point itself, so no space_eval is needed.
    return TuningResult(metric=metric, best=best, trials=done)
