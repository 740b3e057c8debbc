"""The propensity model: search space, tuning, fitting, metrics, plots, scoring and the pyfunc.

This package is also shipped inside every logged model (``code_paths``), so the modules the
model needs at load time (:mod:`cmle.model.preprocess`, :mod:`cmle.model.scoring`,
:mod:`cmle.model.pyfunc`) import only numpy, pandas, scikit-learn and mlflow; keep this
``__init__`` free of imports.
"""
