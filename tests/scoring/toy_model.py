"""A tiny propensity model for tests, logged as code (MLflow "models from code").

MLflow executes this file when it loads the model, so it imports only numpy, pandas and
mlflow. Outputs follow the model contract row by row (no dependence on the batch):
propensity = sigmoid(0.4·visits − 0.05·days_since_last_visit + region effect − 2 + shift),
score = round(100·p), percentile = ceil(100·p) (at least 1), decile = 11 − ceil(pct/10),
bucket from the score (low < 25 ≤ medium < 75 ≤ high). ``shift`` comes from the model config,
so two registered versions can score differently.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

REGION_EFFECT = {"north": 0.5, "south": -0.5}


class ToyPropensity(PythonModel):
    def __init__(self):
        self.shift = 0.0

    def load_context(self, context):
        self.shift = float((context.model_config or {}).get("shift", 0.0))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        visits = pd.to_numeric(model_input["visits"], errors="coerce").fillna(0.0).to_numpy("float64")
        days = pd.to_numeric(model_input["days_since_last_visit"], errors="coerce").fillna(90.0).to_numpy("float64")
        region = model_input["region"] if "region" in model_input else pd.Series([None] * len(model_input))
        effect = region.map(REGION_EFFECT).fillna(0.0).to_numpy("float64")
        p = 1.0 / (1.0 + np.exp(-(0.4 * visits - 0.05 * days + effect - 2.0 + self.shift)))
        score = np.rint(100 * p).astype("int64")
        pct = np.clip(np.ceil(100 * p), 1, 100).astype("int64")
        bucket = np.where(score < 25, "low", np.where(score >= 75, "high", "medium"))
        return pd.DataFrame({"propensity": p, "score": score, "percentile": pct,
                             "decile": (11 - np.ceil(pct / 10)).astype("int64"), "bucket": bucket})


mlflow.models.set_model(ToyPropensity())
