"""A fitted scikit-learn histogram gradient boosting classifier as a tree ensemble that
``shap.TreeExplainer`` explains exactly, categorical splits included.

shap reads ``HistGradientBoostingClassifier`` itself but ignores its native categorical
splits (a split that sends a *set* of categories left is read as a numeric threshold), so
its attributions do not add up to the model's output when the model has categorical
features. Here every categorical split becomes a split on a derived 0/1 column ("is the
category in the left set": 0 = left, 1 = right, NaN = the missing direction, as scikit-learn
routes missing and unknown categories), and :meth:`HGBTrees.augment` appends those columns
to the model's input. The explainer attributes to the derived columns; the caller adds
them back to their categorical feature (:attr:`HGBTrees.source`), as it adds one-hot
columns back to theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _bit(bitsets: np.ndarray, row: int, values: np.ndarray) -> np.ndarray:
    """Whether each (integer, 0-255) value is in bitset ``row`` (8 × 32-bit words)."""
    words = bitsets[row].astype(np.uint64)
    return ((words[values // 32] >> (values % 32).astype(np.uint64)) & 1).astype(bool)


@dataclass
class HGBTrees:
    """The ensemble as shap's dict model, and how to build its input."""

    model: dict  # shap.TreeExplainer(model)
    n_inputs: int  # columns of the classifier's input
    derived: list[tuple[int, np.ndarray]]  # (categorical tree column, left-set bitset) per derived column
    known: np.ndarray  # known-categories bitsets
    f_idx_map: np.ndarray
    preprocessor: object = None  # the classifier's own column reordering and category encoding, if any
    order: np.ndarray | None = None  # tree column -> classifier input column

    @property
    def source(self) -> np.ndarray:
        """For every column of :meth:`augment`'s output, the classifier input column it stands for."""
        order = np.arange(self.n_inputs) if self.order is None else self.order
        return np.r_[order, order[np.array([f for f, _ in self.derived], dtype=np.int64)]].astype(np.int64)

    def augment(self, X: np.ndarray) -> np.ndarray:
        """The trees' input for the classifier input ``X``: after the classifier's own
        preprocessing, with one derived column per distinct categorical split."""
        if self.preprocessor is not None:
            X = np.asarray(self.preprocessor.transform(X), dtype=np.float64)
        if not self.derived:
            return X
        extra = np.empty((X.shape[0], len(self.derived)), dtype=np.float64)
        for j, (f, left) in enumerate(self.derived):
            x = X[:, f]
            valid = np.isfinite(x) & (x >= 0) & (x < 256)
            codes = np.where(valid, x, 0).astype(np.int64)
            in_left = _bit(left[None, :], 0, codes)
            known = _bit(self.known, int(self.f_idx_map[f]), codes)
            extra[:, j] = np.where(~valid | (~in_left & ~known), np.nan, np.where(in_left, 0.0, 1.0))
        return np.hstack([X, extra])


def hgb_trees(clf) -> HGBTrees:
    """:class:`HGBTrees` of a fitted binary ``HistGradientBoostingClassifier`` (raw output: log-odds)."""
    known, f_idx_map = clf._bin_mapper.make_known_categories_bitsets()
    n_inputs = int(clf.n_features_in_)
    derived: dict[tuple[int, bytes], int] = {}
    derived_list: list[tuple[int, np.ndarray]] = []
    trees = []
    for iteration in clf._predictors:
        if len(iteration) != 1:
            raise ValueError("only binary classifiers are explained")
        pred = iteration[0]
        nodes = pred.nodes
        features = np.where(nodes["is_leaf"] == 1, -2, nodes["feature_idx"].astype(np.int64))
        thresholds = nodes["num_threshold"].astype(np.float64).copy()
        for i in np.flatnonzero((nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 1)):
            bitset = np.asarray(pred.raw_left_cat_bitsets[nodes["bitset_idx"][i]], dtype=np.uint32)
            key = (int(nodes["feature_idx"][i]), bitset.tobytes())
            if key not in derived:
                derived[key] = n_inputs + len(derived_list)
                derived_list.append((key[0], bitset))
            features[i] = derived[key]
            thresholds[i] = 0.5  # 0 (in the left set) goes left
        leaf = nodes["is_leaf"] == 1
        left = np.where(leaf, -1, nodes["left"].astype(np.int64))  # int64 first: -1 is no uint32
        right = np.where(leaf, -1, nodes["right"].astype(np.int64))
        trees.append({
            "children_left": left, "children_right": right,
            "children_default": np.where(leaf, -1, np.where(nodes["missing_go_to_left"] == 1, left, right)),
            "features": features, "thresholds": thresholds,
            "values": nodes["value"].astype(np.float64).reshape(-1, 1),
            "node_sample_weight": nodes["count"].astype(np.float64),
        })
    base = np.asarray(clf._baseline_prediction, dtype=np.float64).ravel()[0]
    model = {"trees": trees, "base_offset": float(base), "tree_output": "raw_value", "objective": "binary_crossentropy",
             "input_dtype": np.float64, "internal_dtype": np.float64}
    pre = getattr(clf, "_preprocessor", None)  # with categorical features: categoricals first, re-encoded
    order = None
    if pre is not None:
        by_slice = sorted(((pre.output_indices_[name], cols) for name, _, cols in pre.transformers_
                           if name in pre.output_indices_), key=lambda item: item[0].start)
        order = np.concatenate([np.flatnonzero(cols) if np.asarray(cols).dtype == bool else np.asarray(cols, int)
                                for _, cols in by_slice]).astype(np.int64)
    return HGBTrees(model=model, n_inputs=n_inputs, derived=derived_list, known=np.asarray(known), f_idx_map=f_idx_map,
                    preprocessor=pre, order=order)
