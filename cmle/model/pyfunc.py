"""The registered propensity model, logged *from code* (``python_model=<this file>``).

MLflow runs this file when the model loads; :func:`mlflow.models.set_model` names the
model object. The fitted, calibrated estimator and the metadata (feature spec, reference
distribution) are artifacts; :mod:`cmle.model.preprocess` and :mod:`cmle.model.scoring`
travel with the model as ``code_paths``, so loading needs only the pinned pip
requirements, not the cmle package.

Input: a DataFrame with the training set's feature columns (extra columns are ignored).
Output, one row per input row in input order: ``propensity`` (double), ``score``
(int 0–100), ``percentile`` (int 1–100), ``decile`` (int 1–10, 1 = highest), ``bucket``
(low / medium / high). See :mod:`cmle.model.scoring` for the definitions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from cmle.model import scoring
from cmle.model.preprocess import FeatureSpec

ESTIMATOR_ARTIFACT = "estimator"  # joblib file of the calibrated sklearn estimator
METADATA_ARTIFACT = "metadata"  # JSON: {"features": FeatureSpec, "reference": Reference, "model": {...}}


class PropensityModel(PythonModel):
    """Propensity and Customer AI outputs from feature rows."""

    def __init__(self, estimator=None, spec: FeatureSpec | None = None,
                 reference: scoring.Reference | None = None):
        self.estimator = estimator
        self.spec = spec
        self.reference = reference

    def load_context(self, context) -> None:
        import joblib

        self.estimator = joblib.load(context.artifacts[ESTIMATOR_ARTIFACT])
        meta = json.loads(Path(context.artifacts[METADATA_ARTIFACT]).read_text(encoding="utf-8"))
        self.spec = FeatureSpec.from_dict(meta["features"])
        self.reference = scoring.Reference.from_dict(meta["reference"])

    def propensity(self, model_input: pd.DataFrame):
        """Calibrated P(convert) per row (raises ModelInputError for bad input)."""
        features = self.spec.prepare(model_input)
        if len(features) == 0:
            return np.empty(0, dtype="float64")
        return self.estimator.predict_proba(features)[:, 1]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return scoring.outputs(self.propensity(model_input), self.reference)


set_model(PropensityModel())
