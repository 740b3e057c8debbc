"""Checks ``train`` runs on its training set and its model before registering: labels and leakage.

Labels (:func:`check_labels`, before anything is fitted; a failure is a
:class:`~cmle.errors.DataCheckError` that says what was found and what to do): every row
has a label; both classes are present; the label rate lies in a plausible band; no profile
was dropped or duplicated on the way from the feature set to training — the rows train
reads equal the rows featurize counted (rows in = rows out), one row per profile and
snapshot. These catch a label join that silently kept only the converters
(marketing-analytics-jumpstart#173) or fanned rows out.

Leakage (:func:`leakage_report`, after the holdout evaluation): a feature that alone
predicts the label too well (single-feature ROC-AUC above ``leakage_auc``, default 0.9:
no honest behavioural feature of a propensity problem gets there) and a holdout ROC-AUC
above ``max_holdout_auc`` (default 0.95, the level at which Salesforce Einstein warns of
leakage). A flagged model is still registered, with a tag naming what was found, and
``promote`` refuses it unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cmle.columns import ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN
from cmle.errors import DataCheckError, ParameterError
from cmle.model import fit
from cmle.model.preprocess import FeatureSpec

DEFAULT_MIN_LABEL_RATE = 0.001
DEFAULT_MAX_LABEL_RATE = 0.9
DEFAULT_LEAKAGE_AUC = 0.9
DEFAULT_MAX_HOLDOUT_AUC = 0.95
MAX_CHECK_ROWS = 50_000
LEAKAGE_TAG = "cmle.leakage"


def check_parameters(min_label_rate: float, max_label_rate: float, leakage_auc: float, max_holdout_auc: float) -> None:
    if not 0.0 <= min_label_rate < max_label_rate <= 1.0:
        raise ParameterError(f"train: min_label_rate = {min_label_rate} and max_label_rate = {max_label_rate} must "
                             "satisfy 0 <= min_label_rate < max_label_rate <= 1")
    for name, value in (("leakage_auc", leakage_auc), ("max_holdout_auc", max_holdout_auc)):
        if not 0.5 < value <= 1.0:
            raise ParameterError(f"train: {name} = {value} must be above 0.5 and at most 1.0 (1.0 turns the check off)")


@dataclass(frozen=True)
class LabelSummary:
    rows: int
    positives: int
    rate: float
    expected_rows: int | None

    def as_dict(self) -> dict:
        return {"rows": self.rows, "positives": self.positives, "label_rate": round(self.rate, 6),
                "expected_rows": self.expected_rows}


def check_labels(frame: pd.DataFrame, expected_rows: int | None = None,
                 min_rate: float = DEFAULT_MIN_LABEL_RATE, max_rate: float = DEFAULT_MAX_LABEL_RATE,
                 where: str = "the training set") -> LabelSummary:
    """The label checks; DataCheckError naming the first problem found (all of them in the message)."""
    problems: list[str] = []
    rows = len(frame)
    if LABEL_COLUMN not in frame.columns:
        raise DataCheckError(f"{where} has no {LABEL_COLUMN!r} column; train reads the training-set export (featurize "
                             "builds it), not the scoring set")
    raw = frame[LABEL_COLUMN]
    missing = int(raw.isna().sum())
    if missing:
        problems.append(f"{missing} of {rows} rows have no label: the label join found no outcome for them (a "
                        "profile without a conversion must get label 0, not NULL)")
    y = pd.to_numeric(raw, errors="coerce")
    other = int((~y.isin([0, 1]) & raw.notna()).sum())
    if other:
        first = raw[raw.notna() & ~y.isin([0, 1])].iloc[0]
        problems.append(f"{other} rows hold a label other than 0 or 1 (first: {first!r})")
    positives = int((y == 1).sum())
    negatives = int((y == 0).sum())
    labelled = positives + negatives
    rate = positives / labelled if labelled else float("nan")
    if expected_rows is not None and rows != expected_rows:
        lost = expected_rows - rows
        problems.append(f"rows in != rows out: featurize counted {expected_rows} rows and train read {rows} "
                        f"({'lost ' + str(lost) if lost > 0 else 'gained ' + str(-lost)}): profiles were "
                        f"{'dropped' if lost > 0 else 'duplicated'} between the feature set and training; re-run "
                        "featurize and export")
    keys = [c for c in (ID_COLUMN, SNAPSHOT_COLUMN) if c in frame.columns]
    if ID_COLUMN in keys:
        duplicated = int(frame.duplicated(keys).sum())
        if duplicated:
            problems.append(f"{duplicated} rows repeat a profile ({', '.join(keys)}): the label join fanned rows "
                            "out; each profile must appear once per snapshot")
    if labelled and positives == 0:
        problems.append(f"no positive label in {labelled} rows: nothing to learn; widen the outcome window or check "
                        "the goal")
    elif labelled and negatives == 0:
        problems.append(f"every one of {labelled} rows is positive: the label join kept only the profiles with an "
                        "outcome (the non-converters were dropped); the training set must hold every eligible profile")
    elif labelled and not min_rate <= rate <= max_rate:
        problems.append(f"label rate {rate:.4%} ({positives} of {labelled}) is outside the plausible band "
                        f"[{min_rate:g}, {max_rate:g}]: check the goal, the outcome window and the label join, or "
                        "set min_label_rate / max_label_rate if this rate is right for your goal")
    if problems:
        raise DataCheckError(f"train: label checks failed on {where}: " + "; ".join(problems))
    return LabelSummary(rows=rows, positives=positives, rate=rate, expected_rows=expected_rows)


def single_feature_auc(frame: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, seed: int = 0,
                       max_rows: int = MAX_CHECK_ROWS) -> pd.DataFrame:
    """Per feature: how well it alone ranks the label (ROC-AUC oriented to its better side, ≥ 0.5).

    Numeric: the raw value, missing values placed below or above every value, whichever
    ranks better. Categorical: each category's positive rate, learnt on one half of the rows
    and applied to the other (two folds), so a category seen once cannot look predictive.
    On at most ``max_rows`` rows (a seeded sample): an AUC near 1 shows on far fewer.
    """
    y = np.asarray(y, dtype="int64")
    rng = np.random.default_rng(seed)
    if len(frame) > max_rows:
        pick = np.sort(rng.choice(len(frame), max_rows, replace=False))
        frame, y = frame.iloc[pick], y[pick]
    rows = []
    for column in spec.numeric:
        x = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
        rows.append({"feature": column, "auc": _numeric_auc(y, x)})
    folds = rng.random(len(frame)) < 0.5
    base = float(y.mean()) if y.size else 0.0
    for column in spec.categorical:
        values = frame[column].astype("object").where(frame[column].notna(), "<missing>").astype(str).to_numpy()
        encoded = np.empty(len(values))
        for fold in (True, False):
            learn, apply = folds != fold, folds == fold
            rates = pd.Series(y[learn]).groupby(values[learn]).mean()
            encoded[apply] = pd.Series(values[apply]).map(rates).fillna(base).to_numpy()
        rows.append({"feature": column, "auc": _numeric_auc(y, encoded)})
    return pd.DataFrame(rows, columns=["feature", "auc"]).sort_values("auc", ascending=False,
                                                                     kind="stable").reset_index(drop=True)


def _numeric_auc(y: np.ndarray, x: np.ndarray) -> float:
    """The better of the oriented AUCs with missing values ranked below, or above, every value:
    one ranking of the finite values (Mann-Whitney U, ties averaged)."""
    from scipy.stats import rankdata

    finite = np.isfinite(x)
    positives, n = int(y.sum()), y.size
    negatives = n - positives
    if not positives or not negatives or not finite.any():
        return 0.5
    ranks = rankdata(x[finite])
    missing = n - int(finite.sum())
    pos_missing = int(y[~finite].sum())
    # rank sum of the positives: missing values first (ranks 1..m, tied), or last (ranks n-m+1..n)
    finite_part = float(ranks[y[finite] == 1].sum())
    low = finite_part + missing * (positives - pos_missing) + pos_missing * (missing + 1) / 2.0
    high = finite_part + pos_missing * (n - missing + 1 + n) / 2.0
    best = 0.5
    for rank_sum in (low, high):
        auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
        best = max(best, auc, 1.0 - auc)
    return float(best)


@dataclass(frozen=True)
class LeakageReport:
    """Features that alone predict the label too well, and a holdout AUC above the ceiling."""

    features: dict[str, float]  # feature -> single-feature AUC, above leakage_auc
    holdout_auc: float
    leakage_auc: float
    max_holdout_auc: float
    top: dict[str, float] = field(default_factory=dict)  # the strongest features, flagged or not

    @property
    def ceiling_reached(self) -> bool:
        return bool(np.isfinite(self.holdout_auc) and self.holdout_auc > self.max_holdout_auc)

    @property
    def flagged(self) -> bool:
        return bool(self.features) or self.ceiling_reached

    def summary(self) -> str:
        parts = []
        if self.features:
            parts.append("features that alone predict the label: " + ", ".join(
                f"{k} (ROC-AUC {v:.3f})" for k, v in self.features.items()) + f" > {self.leakage_auc}")
        if self.ceiling_reached:
            parts.append(f"holdout ROC-AUC {self.holdout_auc:.4f} above the ceiling {self.max_holdout_auc}")
        return "; ".join(parts)

    def tag_value(self) -> str:
        """The registry tag's value: JSON naming what was found (at most 5,000 characters)."""
        features = dict(list(self.features.items())[:40])
        return json.dumps({"summary": self.summary()[:2000], "features": {k: round(v, 4) for k, v in features.items()},
                           "holdout_roc_auc": round(float(self.holdout_auc), 4), "leakage_auc": self.leakage_auc,
                           "max_holdout_auc": self.max_holdout_auc}, sort_keys=True)


def leakage_report(frame: pd.DataFrame, spec: FeatureSpec, holdout_auc: float,
                   leakage_auc: float = DEFAULT_LEAKAGE_AUC, max_holdout_auc: float = DEFAULT_MAX_HOLDOUT_AUC,
                   seed: int = 0) -> tuple[LeakageReport, pd.DataFrame]:
    """The leakage findings on ``frame`` (rows the model learnt from), and every feature's AUC."""
    y = fit.labels(frame)
    table = single_feature_auc(frame, y, spec, seed)
    flagged = {r.feature: float(r.auc) for r in table.itertuples() if r.auc > leakage_auc}
    top = {r.feature: float(r.auc) for r in table.head(5).itertuples()}
    return LeakageReport(features=flagged, holdout_auc=float(holdout_auc), leakage_auc=leakage_auc,
                         max_holdout_auc=max_holdout_auc, top=top), table


def read_leakage(tags: dict[str, str] | None) -> dict | None:
    """The leakage finding recorded on a model version, or None."""
    value = (tags or {}).get(LEAKAGE_TAG)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return {"summary": value}
