"""Logging the propensity model: artifacts, signature, pinned requirements, shipped code.

The model is logged from code (:mod:`cmle.model.pyfunc`), with an input example and a
signature holding inputs *and* outputs (Unity Catalog refuses a model without both), and
with explicit ``pip_requirements`` pinned to the versions installed here (requirement
inference costs seconds and a subprocess). The few ``cmle`` modules the model needs at
load time are shipped as ``code_paths``.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from cmle.model import pyfunc, scoring
from cmle.model.preprocess import FeatureSpec

# Distributions the loaded model imports (joblib and scipy come with scikit-learn).
REQUIRED_DISTRIBUTIONS = ("mlflow", "scikit-learn", "pandas", "numpy")
# The cmle modules the model imports or unpickles, relative to the package root.
RUNTIME_MODULES = ("__init__.py", "errors.py", "columns.py", "model/__init__.py", "model/preprocess.py",
                   "model/scoring.py")
MODEL_NAME = "model"  # the logged model's name (artifact path) within the run


def pip_requirements() -> list[str]:
    """``name==version`` for each required distribution, as installed."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIRED_DISTRIBUTIONS]


def signature(spec: FeatureSpec):
    """Inputs: numeric features as double, categoricals as string. Outputs: the five model outputs."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("double", c) for c in spec.numeric] + [ColSpec("string", c) for c in spec.categorical])
    outputs = Schema([ColSpec("double", "propensity"), ColSpec("long", "score"), ColSpec("long", "percentile"),
                      ColSpec("long", "decile"), ColSpec("string", "bucket")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(spec: FeatureSpec, frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """The first ``rows`` rows of ``frame`` in the signature's columns and types."""
    example = frame[list(spec.columns)].head(rows).copy()
    for c in spec.numeric:
        example[c] = example[c].astype("float64")
    for c in spec.categorical:
        example[c] = example[c].astype("object").where(example[c].notna(), None)
    return example.reset_index(drop=True)


def conform_input(frame: pd.DataFrame, input_schema) -> pd.DataFrame:
    """The signature's columns of ``frame``, with every ``double`` column cast to float64.

    MLflow refuses int64 data for a double column ("Can not safely convert int64 to
    float64"), and a count column read from Parquet is int64, or float64 in a batch where
    it holds NULLs. The signature declares every numeric feature double (MLflow's advice for
    integer columns that may be missing), so callers pass feature rows through this first.
    Columns the signature lacks are dropped (MLflow would ignore them with a warning);
    missing ones are left to the model's own error.
    """
    if input_schema is None:
        return frame
    names = [spec.name for spec in input_schema.inputs if getattr(spec, "name", None) in frame.columns]
    doubles = {spec.name for spec in input_schema.inputs if getattr(spec.type, "name", None) == "double"}
    out = frame[names]
    casts = {c: out[c].astype("float64") for c in names if c in doubles and out[c].dtype != "float64"
             and (pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c]))}
    return out.assign(**casts) if casts else out


def _runtime_code(into: Path) -> Path:
    """A minimal copy of the ``cmle`` package holding :data:`RUNTIME_MODULES`."""
    source = Path(pyfunc.__file__).resolve().parents[1]
    target = into / "cmle"
    for rel in RUNTIME_MODULES:
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dst)
    return target


def log_model(estimator, spec: FeatureSpec, reference: scoring.Reference, example: pd.DataFrame,
              info: dict, registered_model_name: str | None = None):
    """Log (and optionally register) the pyfunc in the active run; returns MLflow's ModelInfo.

    ``info`` (family, hyperparameters, lineage) is stored in the metadata artifact.
    """
    import joblib
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        estimator_file = tmp_path / "estimator.joblib"
        joblib.dump(estimator, estimator_file)
        metadata_file = tmp_path / "metadata.json"
        metadata_file.write_text(json.dumps({"features": spec.to_dict(), "reference": reference.to_dict(),
                                             "model": info}, indent=1, default=str), encoding="utf-8")
        code = _runtime_code(tmp_path / "code")
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(pyfunc.__file__).resolve()),
            artifacts={pyfunc.ESTIMATOR_ARTIFACT: str(estimator_file), pyfunc.METADATA_ARTIFACT: str(metadata_file)},
            code_paths=[str(code)],
            signature=signature(spec),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )
