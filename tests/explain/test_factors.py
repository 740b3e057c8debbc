"""Influential factors where the answer is known, and the explainers' exactness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shap

from cmle.explain.factors import Explainer, GlobalView, classifier_pipeline, column_groups
from cmle.explain.trees import hgb_trees
from cmle.model import fit
from cmle.model.preprocess import FeatureSpec
from cmle.scoring.schema import FACTORS_TYPE

PARAMS = {
    "logreg": {"family": "logreg", "C": 1.0, "transform": "standard", "class_weight": None},
    "rf": {"family": "rf", "n_estimators": 30, "max_depth": 6, "min_samples_leaf": 5, "max_features": 0.4,
           "max_samples": 0.5, "class_weight": None},
    "hgb": {"family": "hgb", "learning_rate": 0.2, "max_leaf_nodes": 8, "min_samples_leaf": 20,
            "l2_regularization": 0.1, "max_features": 1.0, "class_weight": None},
}


def data(n: int, seed: int, decider: str = "signal") -> tuple[pd.DataFrame, np.ndarray]:
    """Rows where ``decider`` alone decides the label (signal > 1, or tier = gold)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"signal": rng.exponential(1.0, n), "noise_a": rng.normal(size=n),
                          "noise_b": rng.poisson(2.0, n).astype(float),
                          "tier": rng.choice(["none", "bronze", "silver", "gold"], n, p=[.4, .3, .2, .1])})
    frame.loc[rng.random(n) < 0.05, "noise_a"] = np.nan
    y = (frame["signal"] > 1.0) if decider == "signal" else (frame["tier"] == "gold")
    return frame, y.to_numpy(dtype="int64")


def explainer(family: str, decider: str = "signal", method: str = "fast") -> tuple[Explainer, pd.DataFrame, np.ndarray]:
    spec = FeatureSpec(numeric=("signal", "noise_a", "noise_b"), categorical=("tier",))
    frame, y = data(3000, 1, decider)
    X = spec.prepare(frame)
    est = fit.fit_calibrated(PARAMS[family], spec, (X.iloc[:2000], y[:2000]), (X.iloc[2000:], y[2000:]), seed=0)
    prep, clf = classifier_pipeline(est)
    ex = Explainer(spec=spec, prep=prep, clf=clf, method=method, background=X.iloc[:500],
                   descriptions={"signal": "Emails opened in the last 28 days"})
    test, y_test = data(800, 2, decider)
    return ex, spec.prepare(test), y_test


@pytest.mark.parametrize("family", ["logreg", "rf", "hgb"])
def test_the_feature_that_decides_the_label_is_every_positives_first_factor(family):
    ex, X, y = explainer(family)
    factors = ex.factors(X, 3).to_pylist()
    firsts = [f[0]["feature"] for f, label in zip(factors, y) if label == 1]
    assert len(firsts) > 100 and set(firsts) == {"signal"}
    one = next(f for f, label in zip(factors, y) if label == 1)[0]
    assert one["name"] == "Emails opened in the last 28 days" and one["contribution"] > 0
    assert float(one["value"]) > 1.0


def test_a_categorical_that_decides_the_label_is_first_through_hgb_native_categories():
    ex, X, y = explainer("hgb", decider="tier")
    factors = ex.factors(X, 2).to_pylist()
    firsts = [(f[0]["feature"], f[0]["value"]) for f, label in zip(factors, y) if label == 1]
    assert firsts and set(firsts) == {("tier", "gold")}


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_tree_contributions_add_up_to_the_uncalibrated_margin(method):
    ex, X, _ = explainer("hgb", method=method)
    X = X.copy()
    X.loc[X.index[:5], "tier"] = "platinum"  # unknown to the model: routed as missing
    c = ex.contributions(X)
    margin = ex.clf.decision_function(ex.prep.transform(X))
    assert np.allclose(c.sum(axis=1) + ex._shap.expected_value, margin, atol=1e-8)


def test_hgb_categorical_splits_are_explained_exactly():
    rng = np.random.default_rng(0)
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.column_stack([rng.normal(size=4000), rng.integers(0, 5, 4000).astype(float)])
    X[rng.random(4000) < 0.05, 1] = np.nan
    y = ((X[:, 1] == 2) | (X[:, 0] > 1)).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=20, categorical_features=[False, True]).fit(X, y)
    trees = hgb_trees(clf)
    assert trees.derived  # categorical splits became derived columns
    values = shap.TreeExplainer(trees.model).shap_values(trees.augment(X[:500]))
    assert np.allclose(values.sum(axis=1) + shap.TreeExplainer(trees.model).expected_value,
                       clf.decision_function(X[:500]), atol=1e-9)
    # shap's own reading of the model ignores the categorical splits
    own = shap.TreeExplainer(clf).shap_values(X[:500])
    assert not np.allclose(np.asarray(own).sum(axis=1) + shap.TreeExplainer(clf).expected_value,
                           clf.decision_function(X[:500]), atol=1e-3)


def test_factors_are_positive_at_most_k_and_typed_like_the_score_files():
    ex, X, y = explainer("logreg")
    arr = ex.factors(X, 2)
    assert arr.type == FACTORS_TYPE and len(arr) == len(X)
    rows = arr.to_pylist()
    assert all(len(r) <= 2 for r in rows) and any(len(r) < 2 for r in rows)  # only positive contributions
    assert all(f["contribution"] > 0 for r in rows for f in r)
    assert all(r[0]["contribution"] >= r[1]["contribution"] for r in rows if len(r) == 2)
    groups = column_groups(ex.prep, ex.spec)  # every transformed column maps to a feature
    assert set(groups) == {0, 1, 2, 3}
    assert pa.array(rows, FACTORS_TYPE).equals(arr)


def test_global_view_ranks_the_deciding_feature_first():
    ex, X, y = explainer("rf")
    view = GlobalView(features=ex.spec.columns, sample_rate=0.5)
    for lo in range(0, len(X), 300):  # chunk by chunk
        part = X.iloc[lo:lo + 300]
        view.add(ex.contributions(part), part, ex.spec)
    table = view.table(ex.descriptions)
    assert table["feature"].iloc[0] == "signal" and view.rows == len(X)
    assert table["first_factor_profiles"].sum() <= len(X)
    fig = view.beeswarm(ex.descriptions, "test")
    assert fig.axes
