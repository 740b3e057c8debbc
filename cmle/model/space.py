"""The hyperopt search space over model families, and the estimator each point builds.

Families: ``logreg`` (logistic regression on log-scaled, imputed, standardised numerics),
``rf`` (random forest), ``hgb`` (histogram gradient boosting, NaN and categories native).
Class imbalance is part of the space: every family chooses between no weighting and
``class_weight="balanced"`` (the forest also ``"balanced_subsample"``); the calibration
step after tuning puts the probabilities back on the true base rate.

Compared with the CMLE notebooks' space (reference §5.1): LR also searches its transform and
weighting, the forest is bounded so a trial stays fast (``max_samples``), and gradient
boosting is sklearn's histogram GBDT with early stopping instead of XGBoost.
"""

from __future__ import annotations

import math
from typing import Any

from hyperopt import hp
from hyperopt.pyll import scope

from cmle.errors import ParameterError
from cmle.model.preprocess import (HGB_MAX_BINS, FeatureSpec, hgb_categorical_mask, hgb_preprocessor,
                                   linear_preprocessor, tree_preprocessor)

FAMILIES = ("logreg", "rf", "hgb")
# Boosting rounds are capped; early stopping (on 10 % of the training rows) usually ends sooner.
HGB_MAX_ITER = 300
DEFAULT_FAMILIES = "logreg,rf,hgb"


def _log(lo: float, hi: float) -> tuple[float, float]:
    return math.log(lo), math.log(hi)


def _family_space(family: str) -> dict[str, Any]:
    """One family's sub-space; labels are prefixed so they are unique across families."""
    if family == "logreg":
        return {"family": "logreg",
                "C": hp.loguniform("logreg.C", *_log(1e-3, 10.0)),
                "transform": hp.choice("logreg.transform", ["log", "standard"]),
                "class_weight": hp.choice("logreg.class_weight", [None, "balanced"])}
    if family == "rf":
        return {"family": "rf",
                "n_estimators": scope.int(hp.quniform("rf.n_estimators", 50, 150, 25)),
                "max_depth": scope.int(hp.quniform("rf.max_depth", 4, 12, 1)),
                "min_samples_leaf": scope.int(hp.qloguniform("rf.min_samples_leaf", *_log(5, 200), 1)),
                "max_features": hp.choice("rf.max_features", ["sqrt", 0.2, 0.4]),
                "max_samples": hp.uniform("rf.max_samples", 0.1, 0.5),
                "class_weight": hp.choice("rf.class_weight", [None, "balanced", "balanced_subsample"])}
    if family == "hgb":
        return {"family": "hgb",
                "learning_rate": hp.loguniform("hgb.learning_rate", *_log(0.04, 0.3)),
                "max_leaf_nodes": scope.int(hp.qloguniform("hgb.max_leaf_nodes", *_log(4, 48), 1)),
                "min_samples_leaf": scope.int(hp.qloguniform("hgb.min_samples_leaf", *_log(20, 500), 1)),
                "l2_regularization": hp.loguniform("hgb.l2_regularization", *_log(1e-4, 10.0)),
                "max_features": hp.uniform("hgb.max_features", 0.3, 1.0),
                "class_weight": hp.choice("hgb.class_weight", [None, "balanced"])}
    raise ParameterError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")


def parse_families(value: str) -> tuple[str, ...]:
    """``"logreg,rf,hgb"`` → a tuple of known families (order kept, duplicates dropped)."""
    names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ParameterError(f"families = {value!r}: choose one or more of {', '.join(FAMILIES)}, comma separated")
    return tuple(dict.fromkeys(names))


def search_space(families: tuple[str, ...]):
    """A hyperopt space choosing a family, then that family's hyperparameters."""
    return hp.choice("family", [_family_space(f) for f in families])


def build_estimator(params: dict[str, Any], spec: FeatureSpec, seed: int, n_jobs: int = 1):
    """An unfitted sklearn pipeline (preprocessing + classifier) for one point of the space."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    family = params["family"]
    if family == "logreg":
        clf = LogisticRegression(C=float(params["C"]), class_weight=params["class_weight"], max_iter=2000,
                                 tol=1e-4)
        pre = linear_preprocessor(spec, params["transform"])
    elif family == "rf":
        clf = RandomForestClassifier(n_estimators=int(params["n_estimators"]), max_depth=int(params["max_depth"]),
                                     min_samples_leaf=int(params["min_samples_leaf"]),
                                     max_features=params["max_features"], max_samples=float(params["max_samples"]),
                                     class_weight=params["class_weight"], n_jobs=n_jobs, random_state=seed)
        pre = tree_preprocessor(spec)
    elif family == "hgb":
        clf = HistGradientBoostingClassifier(
            learning_rate=float(params["learning_rate"]), max_leaf_nodes=int(params["max_leaf_nodes"]),
            min_samples_leaf=int(params["min_samples_leaf"]), l2_regularization=float(params["l2_regularization"]),
            max_features=float(params["max_features"]), class_weight=params["class_weight"], max_iter=HGB_MAX_ITER,
            max_bins=HGB_MAX_BINS, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
            categorical_features=hgb_categorical_mask(spec), random_state=seed)
        pre = hgb_preprocessor(spec)
    else:
        raise ParameterError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")
    return Pipeline([("prep", pre), ("clf", clf)])


def loggable(params: dict[str, Any]) -> dict[str, str]:
    """A trial's parameters as MLflow params (stable string forms: ints stay ints)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, float) and not value.is_integer():
            out[key] = f"{value:.6g}"
        else:
            out[key] = str(value)
    return out
