"""Splitting a training set and fitting the final, calibrated model.

The split is stratified on the label and seeded: train (fit), validation (model selection
and calibration) and holdout (evaluated once, at the end). The final model is the chosen
point refitted on the training split and calibrated on the validation split, so the
calibrator never sees rows the classifier was fitted on and the holdout stays untouched;
on small data, an ensemble over folds of train + validation, each fold model calibrated on
the rows it did not see (:mod:`cmle.model.budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cmle.columns import ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN
from cmle.errors import DataCheckError, ParameterError
from cmle.model import space
from cmle.model.holdout import in_holdout
from cmle.model.preprocess import FeatureSpec

CALIBRATIONS = ("sigmoid", "isotonic", "none")
MIN_CLASS_ROWS = 10  # per class, so that every split holds both classes


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train_rows": len(self.train), "valid_rows": len(self.valid), "holdout_rows": len(self.holdout)}


def labels(frame: pd.DataFrame) -> np.ndarray:
    """The 0/1 label column as int64; DataCheckError when missing or not binary."""
    if LABEL_COLUMN not in frame.columns:
        raise DataCheckError(f"the training set has no {LABEL_COLUMN!r} column; train reads the training-set "
                             "export (featurize builds it), not the scoring set")
    y = pd.to_numeric(frame[LABEL_COLUMN], errors="coerce")
    bad = ~y.isin([0, 1])
    if bad.any():
        raise DataCheckError(f"label must be 0 or 1; {int(bad.sum())} row(s) hold other values "
                             f"(first: {frame[LABEL_COLUMN][bad].iloc[0]!r})")
    return y.to_numpy(dtype="int64")


def check_fractions(holdout_fraction: float, validation_fraction: float) -> None:
    for name, value in (("holdout_fraction", holdout_fraction), ("validation_fraction", validation_fraction)):
        if not 0.0 < value < 0.5:
            raise ParameterError(f"{name} = {value}: must be between 0 and 0.5")
    if holdout_fraction + validation_fraction > 0.7:
        raise ParameterError(f"holdout_fraction + validation_fraction = {holdout_fraction + validation_fraction:.2f} "
                             "leaves too little to train on; keep the sum at most 0.7")


def split(frame: pd.DataFrame, holdout_fraction: float, validation_fraction: float, seed: int,
          salt: str | None = None) -> Split:
    """Train / validation / holdout split of the rows.

    With ``salt`` the holdout is every profile whose hash bucket is below
    ``holdout_fraction`` (:mod:`cmle.model.holdout`: the same profiles for every version
    trained with that salt); without, a stratified seeded sample of the rows. Train and
    validation are a stratified, seeded split of the rest. The rows are put in
    (userid, snapshot) order first: a parallel query engine exports them in any order, and
    the same seed must give the same split of the same data.
    """
    from sklearn.model_selection import train_test_split

    check_fractions(holdout_fraction, validation_fraction)
    keys = [c for c in (ID_COLUMN, SNAPSHOT_COLUMN) if c in frame.columns]
    if keys:
        frame = frame.sort_values(keys, kind="stable")
    y = labels(frame)
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    if min(positives, negatives) < MIN_CLASS_ROWS:
        raise DataCheckError(f"the training set has {positives} positive and {negatives} negative rows; at least "
                             f"{MIN_CLASS_ROWS} of each are needed to split and evaluate (Customer AI asks for 500 "
                             "of each): widen the outcome window or use more profiles")
    if salt is not None:
        held = in_holdout(frame[ID_COLUMN].to_numpy(), salt, holdout_fraction)
        rest, holdout = frame[~held], frame[held]
        _check_holdout_classes(labels(holdout), holdout_fraction)
    else:
        rest, holdout = train_test_split(frame, test_size=holdout_fraction, stratify=y, random_state=seed)
    y_rest = labels(rest)
    train, valid = train_test_split(rest, test_size=validation_fraction / (1.0 - holdout_fraction),
                                    stratify=y_rest, random_state=seed + 1)
    return Split(train=train, valid=valid, holdout=holdout)


def _check_holdout_classes(y: np.ndarray, holdout_fraction: float) -> None:
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    if min(positives, negatives) == 0:
        raise DataCheckError(f"the holdout (the profiles whose hash falls below holdout_fraction = {holdout_fraction}) "
                             f"holds {positives} positive and {negatives} negative rows; both classes are needed to "
                             "evaluate: use more profiles or a larger holdout_fraction")


def limited_threads(threads: int):
    """A context limiting OpenMP, BLAS and the like to ``threads`` threads.

    threadpoolctl only reaches thread pools of libraries already loaded, and scikit-learn
    loads its OpenMP runtime with the estimators' compiled modules: import them first, or the
    first training of a process runs unlimited (measured here: the same gradient-boosting
    trials took 14-22 s instead of ~1 s on a busy 2-core machine).
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def sample_rows(X: pd.DataFrame, y: np.ndarray, max_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """At most ``max_rows`` rows, stratified on the label (all rows when ``max_rows`` is 0)."""
    from sklearn.model_selection import train_test_split

    if max_rows <= 0 or len(X) <= max_rows:
        return X, y
    X_part, _, y_part, _ = train_test_split(X, y, train_size=max_rows, stratify=y, random_state=seed)
    return X_part, y_part


def pooled(train: tuple[pd.DataFrame, np.ndarray], valid: tuple[pd.DataFrame, np.ndarray]
           ) -> tuple[pd.DataFrame, np.ndarray]:
    """Train and validation rows as one set (small data: cross-validation over both)."""
    return pd.concat([train[0], valid[0]]), np.concatenate([train[1], valid[1]])


def cv_splits(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded ``(fit rows, held-out rows)`` positions: the same folds for
    tuning and for the final ensemble."""
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def fit_calibrated(params: dict, spec: FeatureSpec, train: tuple[pd.DataFrame, np.ndarray],
                   valid: tuple[pd.DataFrame, np.ndarray], seed: int, calibration: str = "sigmoid",
                   n_jobs: int = 1, cv_folds: int = 0):
    """Fit the chosen point on ``train``; calibrate it on ``valid`` (sigmoid = Platt, isotonic, none).

    With ``cv_folds`` > 1 (small data, :mod:`cmle.model.budget`) and a calibration: the point
    is fitted on each fold of :func:`cv_splits` over train + valid, calibrated on the rows
    that fold left out, and the fold models' probabilities are averaged (scikit-learn's
    ``CalibratedClassifierCV(ensemble=True)``).

    Returns an estimator with ``predict_proba`` over prepared feature frames.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    if calibration not in CALIBRATIONS:
        raise ParameterError(f"calibration = {calibration!r}: choose one of {', '.join(CALIBRATIONS)}")
    estimator = space.build_estimator(params, spec, seed=seed, n_jobs=n_jobs)
    if cv_folds > 1 and calibration != "none":
        X, y = pooled(train, valid)
        return CalibratedClassifierCV(estimator, method=calibration, cv=cv_splits(y, cv_folds, seed),
                                      ensemble=True).fit(X, y)
    estimator.fit(*train)
    if calibration == "none":
        return estimator
    return CalibratedClassifierCV(FrozenEstimator(estimator), method=calibration).fit(*valid)


def feature_importance(estimator, X: pd.DataFrame, y: np.ndarray, seed: int, max_rows: int = 1000,
                       repeats: int = 2) -> pd.DataFrame:
    """Permutation importance: the drop in ROC-AUC when one input column is shuffled.

    Computed on at most ``max_rows`` rows: every positive up to half of them, negatives for
    the rest (ROC-AUC does not depend on the class ratio, and rare positives would make the
    drops noisy). Every (column, repeat) copy of the rows is stacked into one frame and
    scored in a single ``predict_proba`` call, which is what keeps it fast: per-call
    pipeline overhead dominates many small calls.
    """
    from cmle.model.metrics import roc_auc

    rng = np.random.default_rng(seed)
    if len(X) > max_rows:
        positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        n_pos = min(len(positives), max_rows // 2)
        pick = np.sort(np.concatenate([rng.choice(positives, n_pos, replace=False),
                                       rng.choice(negatives, min(len(negatives), max_rows - n_pos), replace=False)]))
        X, y = X.iloc[pick], y[pick]
    X = X.reset_index(drop=True)
    base = roc_auc(y, estimator.predict_proba(X)[:, 1])
    columns, n = list(X.columns), len(X)
    blocks = len(columns) * repeats  # block b shuffles column b // repeats
    stacked = {}
    for i, column in enumerate(columns):
        values = X[column].to_numpy()
        tiled = np.tile(values, blocks)
        for r in range(repeats):
            b = i * repeats + r
            tiled[b * n:(b + 1) * n] = values[rng.permutation(n)]
        stacked[column] = tiled
    p = estimator.predict_proba(pd.DataFrame(stacked))[:, 1].reshape(len(columns), repeats, n)
    drops = np.array([[base - roc_auc(y, p[i, r]) for r in range(repeats)] for i in range(len(columns))])
    return (pd.DataFrame({"feature": columns, "importance": drops.mean(axis=1), "std": drops.std(axis=1)})
            .sort_values("importance", ascending=False, kind="stable").reset_index(drop=True))
