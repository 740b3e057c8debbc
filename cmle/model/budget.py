"""How the training adapts to the size of the data: tuning budget, selection and the final fit.

A pure function of the row and positive counts of the train and validation splits
(:func:`plan_training`), so the choice is testable and logged with the run:

* **small data** (train + validation at most :data:`CV_MAX_ROWS` rows): a single validation
  split holds too few positives to rank trials (about 120 at 20,000 profiles: the standard
  error of its ROC-AUC is ~0.025, as large as the differences between trials), and a model
  fitted on 60 % of so few rows varies a lot. So every trial is scored by stratified
  :data:`CV_FOLDS`-fold cross-validation over train + validation (every positive counts in
  selection), and the final model is the chosen point fitted on each fold and calibrated on
  the rows that fold left out, the fold models' probabilities averaged (bagging regularises
  it; every row is used for fitting and for calibration). The holdout is never part of it.
  Trials fit on every row (no tuning sample). Measured over 12 cells of 20,000 profiles
  (6 and 10 weeks, 6 seeds), ROC-AUC relative to the oracle on an independent 100,000-
  profile test set: mean 0.974 → 0.989, worst 0.940 → 0.961 (docs/model-quality.md).
* **larger data**: one validation split (hundreds of positives or more); trials fit on a
  stratified sample of :data:`TUNE_ROWS` training rows and the chosen point is refitted on
  the whole training split and calibrated on the validation split. A larger tuning sample
  was measured and not taken: 50,000 rows instead of 15,000 at 100,000 profiles (6, 10
  weeks) tripled the tuning time and moved the ratio to the oracle by less than its noise
  (±0.01); even at 16 weeks (1 % positives, ~150 in the sample) the ratio is 1.00-1.01.

``max_evals`` / ``max_tune_rows`` set by the user win; 0 (their default) follows the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmle.errors import ParameterError

AUTO = 0
DEFAULT_MAX_EVALS = 16
CV_FOLDS = 4
# Train + validation rows up to which selection and the fit use k folds: a k-fold trial then
# fits (k - 1) x 25,000 = 75,000 rows, five times a 15,000-row trial of larger data.
CV_MAX_ROWS = 25_000
TUNE_ROWS = 15_000  # rows of the tuning sample of larger data


@dataclass(frozen=True)
class TrainingPlan:
    """What the training does for data of this size."""

    max_evals: int
    tune_rows: int  # rows each trial fits on (a stratified sample of the training split); 0: all
    cv_folds: int  # > 1: trials scored and the final model fitted over k folds of train + validation
    reason: str  # one line: why, with the counts it was decided from

    def loggable(self) -> dict[str, str]:
        return {"max_evals": str(self.max_evals), "tune_rows": str(self.tune_rows) if self.tune_rows else "all",
                "cv_folds": str(self.cv_folds), "regime": "cross-validated" if self.cv_folds > 1 else "split"}


def plan_training(train_rows: int, train_positives: int, valid_rows: int, valid_positives: int,
                  max_evals: int = AUTO, max_tune_rows: int = AUTO) -> TrainingPlan:
    """The training plan for splits of these sizes (``max_evals`` / ``max_tune_rows``: the
    user's values, or :data:`AUTO` to follow the data)."""
    if max_evals < 0 or max_tune_rows < 0:
        raise ParameterError(f"train: max_evals = {max_evals} and max_tune_rows = {max_tune_rows} must be at "
                             "least 0 (0: follow the data size)")
    evals = max_evals or DEFAULT_MAX_EVALS
    rows, positives = train_rows + valid_rows, train_positives + valid_positives
    counts = (f"{rows:,} train + validation rows, {positives:,} positives ({valid_positives:,} in the validation "
              "split)")
    if rows <= CV_MAX_ROWS:
        # every row takes part in selection; a tuning sample would throw positives away
        return TrainingPlan(max_evals=evals, tune_rows=0, cv_folds=CV_FOLDS,
                            reason=f"{counts}: at most {CV_MAX_ROWS:,} rows, so trials are scored by {CV_FOLDS}-fold "
                                   f"cross-validation and the model is a {CV_FOLDS}-fold calibrated ensemble")
    if max_tune_rows:
        how = f"max_tune_rows = {max_tune_rows:,}"
    else:
        max_tune_rows, how = TUNE_ROWS, f"a stratified sample of {TUNE_ROWS:,}"
    tune = max_tune_rows if max_tune_rows < train_rows else 0
    return TrainingPlan(max_evals=evals, tune_rows=tune, cv_folds=0,
                        reason=f"{counts}: trials fit on {f'{tune:,} rows' if tune else 'every training row'} "
                               f"({how}) and are scored on the validation split")


__all__ = ["AUTO", "CV_FOLDS", "CV_MAX_ROWS", "DEFAULT_MAX_EVALS", "TUNE_ROWS", "TrainingPlan", "plan_training"]
