"""The training reference that drift is measured against: per feature (and for the score)
bin edges and the share of training rows in each bin, never the rows themselves.

``train`` builds it from the training set (features) and the holdout propensities (the
score) and stores it with the model version (:data:`REFERENCE_ARTIFACT`, the version tag
:data:`REFERENCE_TAG`); ``monitor`` counts a scoring set into the same bins, chunk by chunk
(:class:`Counts`), and compares the shares with :func:`cmle.monitoring.psi.psi`.

Numeric: up to ``bins`` quantile bins of the non-missing values (edges are the distinct
deciles, so a count that is mostly 0 gets few bins), plus one bin for missing values.
Categorical: the most frequent categories, one bin for the rest (and for categories never
seen in training), missing values being the category ``__missing__`` as the model sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = "numeric", "categorical"
DEFAULT_BINS = 10
MAX_CATEGORIES = 20
OTHER = "__other__"
SCORE = "score"  # the name of the score's (propensity's) reference
REFERENCE_ARTIFACT = "monitor/reference.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Binned:
    """One variable's bins and the reference share of each (the missing bin last)."""

    name: str
    kind: str
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()  # numeric: bin i holds edges[i-1] < x <= edges[i]
    categories: tuple[str, ...] = ()  # categorical: one bin each, then OTHER

    @property
    def labels(self) -> list[str]:
        if self.kind == CATEGORICAL:
            return [*self.categories, OTHER]
        e = [f"{v:.6g}" for v in self.edges]
        if not e:
            return ["all", "missing"]
        return [f"<= {e[0]}", *(f"({lo}, {hi}]" for lo, hi in zip(e, e[1:])), f"> {e[-1]}", "missing"]

    def counts(self, values) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        if self.kind == CATEGORICAL:
            col = pd.Series(values, dtype="object").astype(str)
            index = {c: i for i, c in enumerate(self.categories)}
            codes = col.map(index).fillna(len(self.categories)).to_numpy(dtype="int64")
            return np.bincount(codes, minlength=len(self.categories) + 1)
        x = np.asarray(values, dtype="float64")
        missing = ~np.isfinite(x)
        codes = np.searchsorted(np.asarray(self.edges, dtype="float64"), x[~missing], side="left")
        out = np.bincount(codes, minlength=len(self.edges) + 2)
        out[-1] += int(missing.sum())
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "shares": list(self.shares), "edges": list(self.edges),
                "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: dict) -> "Binned":
        return cls(name=d["name"], kind=d["kind"], shares=tuple(float(s) for s in d["shares"]),
                   edges=tuple(float(e) for e in d.get("edges") or ()),
                   categories=tuple(str(c) for c in d.get("categories") or ()))


def numeric_bins(name: str, values, bins: int = DEFAULT_BINS) -> Binned:
    x = np.asarray(values, dtype="float64")
    finite = x[np.isfinite(x)]
    edges: tuple[float, ...] = ()
    if finite.size:
        inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
        edges = tuple(float(e) for e in np.unique(inner))
    ref = Binned(name, NUMERIC, (), edges)
    counts = ref.counts(x)
    return Binned(name, NUMERIC, tuple(counts / max(counts.sum(), 1)), edges)


def categorical_bins(name: str, values, max_categories: int = MAX_CATEGORIES) -> Binned:
    col = pd.Series(values, dtype="object").astype(str)
    top = tuple(col.value_counts(sort=True).index[:max_categories])
    ref = Binned(name, CATEGORICAL, (), categories=top)
    counts = ref.counts(col)
    return Binned(name, CATEGORICAL, tuple(counts / max(counts.sum(), 1)), categories=top)


@dataclass(frozen=True)
class DriftReference:
    """The reference of every feature (model input order) and of the score."""

    features: tuple[Binned, ...]
    score: Binned
    rows: int

    def feature(self, name: str) -> Binned:
        return next(f for f in self.features if f.name == name)

    def to_dict(self) -> dict:
        return {"format": FORMAT_VERSION, "rows": self.rows, "features": [f.to_dict() for f in self.features],
                "score": self.score.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "DriftReference":
        return cls(features=tuple(Binned.from_dict(f) for f in d["features"]), score=Binned.from_dict(d["score"]),
                   rows=int(d.get("rows", 0)))


def build(prepared: pd.DataFrame, categorical: tuple[str, ...], propensities, bins: int = DEFAULT_BINS) -> DriftReference:
    """The reference of a prepared feature frame (``FeatureSpec.prepare``: numeric float64 with
    NaN, categoricals as strings) and of the reference propensities (the holdout's)."""
    features = tuple(categorical_bins(c, prepared[c]) if c in categorical else numeric_bins(c, prepared[c], bins)
                     for c in prepared.columns)
    return DriftReference(features=features, score=numeric_bins(SCORE, propensities, bins), rows=len(prepared))


@dataclass
class Counts:
    """Bin counts of a scoring set, added chunk by chunk (bounded memory)."""

    reference: DriftReference
    features: dict[str, np.ndarray] = field(default_factory=dict)
    score: np.ndarray | None = None
    rows: int = 0

    def add_features(self, prepared: pd.DataFrame) -> None:
        for ref in self.reference.features:
            if ref.name in prepared.columns:
                c = ref.counts(prepared[ref.name])
                self.features[ref.name] = self.features.get(ref.name, 0) + c
        self.rows += len(prepared)

    def add_scores(self, propensities) -> None:
        c = self.reference.score.counts(propensities)
        self.score = c if self.score is None else self.score + c
