"""Reading what Data Distiller's statements return: ``SHOW MODELS``, ``model_evaluate`` and
``model_predict`` result sets, as Query Service hands them to a PostgreSQL client."""

from __future__ import annotations

import math
import re

import pandas as pd

from cmle.errors import QueryError

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|NaN|[-+]?Infinity", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _column(frame: pd.DataFrame, *names: str) -> str | None:
    wanted = {_norm(n) for n in names}
    return next((c for c in frame.columns if _norm(c) in wanted), None)


def model_versions(frame: pd.DataFrame) -> dict[str, int]:
    """``{model name: its latest version}`` from a ``SHOW MODELS`` result (columns
    ``model-name`` and ``version``, as the Models page shows them)."""
    if frame is None or frame.empty:
        return {}
    name_col, version_col = _column(frame, "model-name", "model_name", "name"), _column(frame, "version")
    if name_col is None or version_col is None:
        raise QueryError(f"SHOW MODELS returned the columns {list(frame.columns)}, without model-name and version")
    out: dict[str, int] = {}
    for name, version in zip(frame[name_col], frame[version_col]):
        try:
            v = int(float(version))
        except (TypeError, ValueError):
            continue
        out[str(name)] = max(out.get(str(name), 0), v)
    return out


def evaluation(frame: pd.DataFrame) -> dict[str, float]:
    """The metrics of a ``model_evaluate`` result (one row: ``auc_roc``, ``accuracy``,
    ``precision``, ``recall`` for a logistic regression), as floats."""
    if frame is None or len(frame) != 1:
        raise QueryError(f"model_evaluate returned {0 if frame is None else len(frame)} rows; expected one row of "
                         "metrics")
    row = frame.iloc[0]
    out = {}
    for col in frame.columns:
        try:
            value = float(row[col])
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[_norm(col) if _norm(col) != "aucroc" else "auc_roc"] = value
    if not out:
        raise QueryError(f"model_evaluate returned no numeric metric: {row.to_dict()}")
    return out


def positive_probability(value) -> float:
    """P(label = 1) from one ``probability`` value of ``model_predict``: a Spark ML vector of
    the class probabilities, which a client receives as an array, a JSON object with
    ``values``, or text such as ``[0.83,0.17]``; its second element is the positive class's."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        value = value.get("values", [])
    if isinstance(value, (list, tuple)):
        numbers = [float(v) for v in value]
    elif isinstance(value, (int, float)):
        return float(value)
    else:
        numbers = [float(m) for m in _NUMBER.findall(str(value))]
        if str(value).lstrip().startswith("{") and "values" in str(value) and len(numbers) > 2:
            numbers = numbers[-2:]  # {"type":1,"values":[p0,p1]}: the type code comes first
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) == 2:
        return numbers[1]
    return math.nan


def predictions(frame: pd.DataFrame, key: str) -> pd.Series:
    """P(label = 1) per row key of a ``model_predict`` result with its hidden ``probability``
    field; an empty series when the result has no probability (the session did not switch
    the hidden fields on)."""
    key_col, prob_col = _column(frame, key), _column(frame, "probability")
    if key_col is None or prob_col is None:
        return pd.Series(dtype="float64")
    return pd.Series([positive_probability(v) for v in frame[prob_col]], index=frame[key_col].astype(str),
                     dtype="float64")
