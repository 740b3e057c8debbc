"""Influential factors: per profile, the features that pushed its propensity up the most.

:class:`Explainer` explains the model a pyfunc version serves, with the ``shap`` library, on
the *uncalibrated* margin of the fitted classifier: the log-odds of logistic regression and
gradient boosting, the averaged leaf probability of the random forest. Calibration (Platt
or isotonic) is a monotonic map of that margin, so what raises the margin raises the
calibrated propensity, and the ranking of factors is the same.

- logistic regression: ``shap.LinearExplainer`` against the model version's holdout rows
  (exact: coefficient × (value − holdout mean), per transformed column);
- random forest: ``shap.TreeExplainer``; gradient boosting: ``shap.TreeExplainer`` over
  :func:`cmle.explain.trees.hgb_trees` (its categorical splits made explicit);
  ``method="fast"`` (the default) uses the explainer's path attribution
  (``approximate=True``, Saabas: the change of the tree's expected value at each split on
  a profile's path goes to the split's feature; it adds up to the margin like SHAP values
  and costs O(depth) per tree), ``method="exact"`` Tree SHAP (path dependent; ~30-100x the
  cost on the synthetic data's models, see docs/factors.md).

Contributions of the columns the preprocessing derives from one feature (missing
indicators, one-hot columns, the derived categorical-split columns) are added back to that
feature, so every factor is one model input with its readable description from the
feature manifest. A factor is ``{feature, name, value, contribution}``: the column name,
its description, its value as text (``missing`` for NULL) and its contribution in margin
units; only positive contributions are factors, at most ``k`` per profile, largest first.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from cmle.errors import RegistryError
from cmle.model.preprocess import MISSING_CATEGORY, FeatureSpec
from cmle.scoring.schema import FACTORS_TYPE

log = logging.getLogger(__name__)

METHODS = ("fast", "exact")
FACTOR_TYPE = FACTORS_TYPE.value_type
BACKGROUND_ROWS = 1000
SAMPLE_ROWS = 2000  # rows kept for the beeswarm plot


def classifier_pipeline(estimator):
    """The fitted (preprocessing, classifier) pipeline inside a calibrated estimator."""
    inner = estimator
    calibrated = getattr(inner, "calibrated_classifiers_", None)
    if calibrated:
        inner = calibrated[0].estimator
    inner = getattr(inner, "estimator", inner) if not hasattr(inner, "named_steps") else inner
    if not hasattr(inner, "named_steps") or "prep" not in inner.named_steps or "clf" not in inner.named_steps:
        raise RegistryError(f"cannot explain a {type(estimator).__name__}: expected cmle's calibrated "
                            "(preprocessing, classifier) pipeline")
    return inner.named_steps["prep"], inner.named_steps["clf"]


def _step(transformer, kind):
    if isinstance(transformer, kind):
        return transformer
    for _, step in getattr(transformer, "steps", []):
        if isinstance(step, kind):
            return step
    return None


def column_groups(prep, spec: FeatureSpec) -> np.ndarray:
    """For every column of ``prep``'s output, the index (in ``spec.columns``) of the feature it comes from."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    index = {c: i for i, c in enumerate(spec.columns)}
    width = sum(s.stop - s.start for s in prep.output_indices_.values())
    groups = np.full(width, -1, dtype=np.int64)
    for name, trans, cols in prep.transformers_:
        sl = prep.output_indices_.get(name)
        if sl is None or sl.stop == sl.start or trans == "drop":
            continue
        idx = [index[c] for c in cols]
        ohe, imp = _step(trans, OneHotEncoder), _step(trans, SimpleImputer)
        if ohe is not None:
            infrequent = getattr(ohe, "infrequent_categories_", None) or [None] * len(idx)
            out = []
            for i, cats in enumerate(ohe.categories_):
                rare = 0 if infrequent[i] is None else len(infrequent[i])
                out += [idx[i]] * (len(cats) - rare + (1 if rare else 0))
        elif imp is not None:
            stats = np.asarray(imp.statistics_, dtype="float64")
            kept = [i for i in range(len(idx)) if imp.keep_empty_features or not np.isnan(stats[i])]
            out = [idx[i] for i in kept]
            if getattr(imp, "indicator_", None) is not None:
                out += [idx[i] for i in imp.indicator_.features_]
        else:
            out = idx
        if len(out) != sl.stop - sl.start:
            raise RegistryError(f"cannot map the {name!r} preprocessing columns back to their features "
                                f"({len(out)} vs {sl.stop - sl.start}); factors are not available for this model")
        groups[sl] = out
    return groups


def _text(values: np.ndarray) -> list[str]:
    """Readable numbers: whole numbers (and anything from 1000 on) without decimals, others to 4 significant digits."""
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("missing")
        elif (v == int(v) or abs(v) >= 1000) and abs(v) < 1e15:
            out.append(str(int(round(v))))
        else:
            out.append(f"{v:.4g}")
    return out


@dataclass
class Explainer:
    """Contributions and top factors for the model one pyfunc version serves (see the module)."""

    spec: FeatureSpec
    prep: object
    clf: object
    descriptions: dict[str, str] = field(default_factory=dict)
    method: str = "fast"
    background: pd.DataFrame | None = None  # prepared rows the linear baseline is the mean of
    _shap: object = field(default=None, init=False, repr=False)
    _groups: np.ndarray | None = field(default=None, init=False, repr=False)
    _trees: object = field(default=None, init=False, repr=False)

    @property
    def family(self) -> str:
        name = type(self.clf).__name__
        return {"LogisticRegression": "logreg", "RandomForestClassifier": "rf",
                "HistGradientBoostingClassifier": "hgb"}.get(name, name)

    def __getstate__(self):  # shipped to Spark tasks: the shap objects are rebuilt there
        state = dict(self.__dict__)
        state.update(_shap=None, _groups=None, _trees=None)
        return state

    def check(self) -> None:
        """Build the shap explainer now (RegistryError when the model cannot be explained)."""
        if self._shap is None:
            self._build()

    def _build(self) -> None:
        import shap

        groups = column_groups(self.prep, self.spec)
        if self.family == "logreg":
            bg = self.background
            if bg is None or not len(bg):
                raise RegistryError("a logistic regression is explained against its holdout rows, and this version "
                                    "has none (tag cmle.holdout_uri)")
            data = np.asarray(self.prep.transform(bg.head(BACKGROUND_ROWS)), dtype="float64")
            self._shap = shap.LinearExplainer(self.clf, shap.maskers.Independent(data, max_samples=BACKGROUND_ROWS))
        elif self.family == "hgb":
            from cmle.explain.trees import hgb_trees

            self._trees = hgb_trees(self.clf)
            self._shap = shap.TreeExplainer(self._trees.model)
            groups = groups[self._trees.source]
        elif self.family == "rf":
            self._shap = shap.TreeExplainer(self.clf)
        else:
            raise RegistryError(f"factors: cannot explain a {type(self.clf).__name__}")
        self._groups = groups

    def contributions(self, prepared: pd.DataFrame) -> np.ndarray:
        """``(rows, features)`` contributions to the margin, features in ``spec.columns`` order."""
        if self._shap is None:
            self._build()
        X = np.asarray(self.prep.transform(prepared), dtype="float64")
        if self.family == "logreg":
            values = self._shap.shap_values(X)
        else:
            if self._trees is not None:
                X = self._trees.augment(X)
            values = self._shap.shap_values(X, approximate=self.method == "fast", check_additivity=False)
        values = np.asarray(values, dtype="float64")
        if values.ndim == 3:  # per class: the positive one
            values = values[..., 1]
        out = np.zeros((X.shape[0], len(self.spec.columns)), dtype="float64")
        for j, g in enumerate(self._groups):
            out[:, g] += values[:, j]
        return out

    def factors(self, prepared: pd.DataFrame, k: int, contributions: np.ndarray | None = None) -> pa.Array:
        """The top ``k`` positive factors of each row as a ``list<struct>`` array."""
        c = self.contributions(prepared) if contributions is None else contributions
        n, p = c.shape
        k = min(k, p)
        top = np.argsort(-c, axis=1, kind="stable")[:, :k]
        vals = np.take_along_axis(c, top, axis=1)
        keep = vals > 0
        rows, ranks = np.nonzero(keep)
        feats = top[rows, ranks]
        columns = list(self.spec.columns)
        text = np.empty(len(feats), dtype=object)
        for j in np.unique(feats):
            at = feats == j
            col = prepared[columns[j]].to_numpy()[rows[at]]
            if columns[j] in self.spec.categorical:
                text[at] = ["missing" if v == MISSING_CATEGORY else str(v) for v in col]
            else:
                text[at] = _text(col.astype("float64"))
        names = np.array(columns, dtype=object)
        desc = np.array([self.descriptions.get(f) or f for f in columns], dtype=object)
        struct = pa.StructArray.from_arrays(
            [pa.array(names[feats], pa.string()), pa.array(desc[feats], pa.string()),
             pa.array(text, pa.string()), pa.array(vals[rows, ranks], pa.float64())], fields=list(FACTOR_TYPE))
        offsets = np.r_[0, np.cumsum(keep.sum(axis=1))].astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct, type=FACTORS_TYPE)


@dataclass
class GlobalView:
    """Mean absolute contribution per feature, and a sample of rows for a beeswarm plot,
    added chunk by chunk (bounded memory)."""

    features: tuple[str, ...]
    sample_rate: float = 1.0
    seed: int = 0
    rows: int = 0
    abs_sum: np.ndarray | None = None
    positive_top: np.ndarray | None = None  # how often each feature is a profile's first factor
    sample_c: list = field(default_factory=list)
    sample_x: list = field(default_factory=list)

    def add(self, contributions: np.ndarray, prepared: pd.DataFrame, spec: FeatureSpec) -> None:
        n = len(contributions)
        if not n:
            return
        self.abs_sum = np.abs(contributions).sum(axis=0) + (0 if self.abs_sum is None else self.abs_sum)
        first = np.argmax(contributions, axis=1)[contributions.max(axis=1) > 0]
        counts = np.bincount(first, minlength=len(self.features))
        self.positive_top = counts + (0 if self.positive_top is None else self.positive_top)
        rng = np.random.default_rng([self.seed, self.rows])
        pick = np.flatnonzero(rng.random(n) < self.sample_rate)[:SAMPLE_ROWS]
        if len(pick):
            x = np.column_stack([prepared[c].to_numpy(dtype="float64") if c in spec.numeric
                                 else np.full(len(prepared), np.nan) for c in self.features])
            self.sample_c.append(contributions[pick])
            self.sample_x.append(x[pick])
        self.rows += n

    def merge(self, other: "GlobalView") -> None:
        if other.abs_sum is None:
            return
        self.abs_sum = other.abs_sum + (0 if self.abs_sum is None else self.abs_sum)
        self.positive_top = other.positive_top + (0 if self.positive_top is None else self.positive_top)
        self.sample_c += other.sample_c
        self.sample_x += other.sample_x
        self.rows += other.rows

    def table(self, descriptions: dict[str, str]) -> pd.DataFrame:
        mean = self.abs_sum / max(self.rows, 1) if self.abs_sum is not None else np.zeros(len(self.features))
        top = self.positive_top if self.positive_top is not None else np.zeros(len(self.features))
        out = pd.DataFrame({"feature": list(self.features), "name": [descriptions.get(f) or f for f in self.features],
                            "mean_abs_contribution": mean, "first_factor_profiles": top.astype("int64")})
        return out.sort_values("mean_abs_contribution", ascending=False, kind="stable").reset_index(drop=True)

    def beeswarm(self, descriptions: dict[str, str], title: str, max_display: int = 15):
        """shap's beeswarm plot of the sampled rows (colour: the feature's value; grey: categorical or missing)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import shap

        c = np.vstack(self.sample_c)[:SAMPLE_ROWS] if self.sample_c else np.zeros((0, len(self.features)))
        x = np.vstack(self.sample_x)[:SAMPLE_ROWS] if self.sample_x else np.zeros((0, len(self.features)))
        labels = [f if len(descriptions.get(f) or "") > 60 or not descriptions.get(f) else descriptions[f]
                  for f in self.features]
        fig = plt.figure(figsize=(9, 6))
        if len(c):
            shap.plots.beeswarm(shap.Explanation(values=c, data=x, feature_names=labels), max_display=max_display,
                                show=False, plot_size=None)
        fig = plt.gcf()
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig


def is_explainable(model) -> bool:
    """Whether a loaded pyfunc is a cmle propensity model (a fitted pipeline and its feature spec)."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a PythonModel-based pyfunc
        return False
    return getattr(python_model, "estimator", None) is not None and getattr(python_model, "spec", None) is not None


def for_version(model, ref, method: str = "fast") -> Explainer:
    """The explainer of a loaded pyfunc ``model`` of the registered version ``ref``
    (:class:`cmle.scoring.model_ref.ModelRef`): feature descriptions from the training run's
    feature manifest, the linear baseline from the version's holdout rows."""
    from cmle import tracking

    if method not in METHODS:
        raise RegistryError(f"factors method {method!r} is not one of {', '.join(METHODS)}")
    python_model = model.unwrap_python_model()
    estimator, spec = getattr(python_model, "estimator", None), getattr(python_model, "spec", None)
    if estimator is None or spec is None:
        raise RegistryError(f"{ref.uri} is not a cmle propensity model; it cannot be explained (score with factors=0)")
    prep, clf = classifier_pipeline(estimator)
    explainer = Explainer(spec=spec, prep=prep, clf=clf, descriptions=tracking.feature_descriptions(ref.run_id),
                          method=method)
    if explainer.family == "logreg":
        explainer.background = _holdout(ref, spec)
    return explainer


def _holdout(ref, spec: FeatureSpec) -> pd.DataFrame | None:
    import mlflow

    from cmle.registry import Registry

    try:
        uri = (Registry.current().version(ref.name, ref.version).tags or {}).get("cmle.holdout_uri")
        if not uri:
            return None
        frame = pd.read_parquet(mlflow.artifacts.download_artifacts(uri))
    except Exception as exc:  # noqa: BLE001 - without it the caller says what is missing
        log.warning("factors: the holdout of %s is not readable (%s)", ref.uri, exc)
        return None
    frame = frame.sample(n=min(len(frame), BACKGROUND_ROWS), random_state=0) if len(frame) else frame
    return spec.prepare(frame)
