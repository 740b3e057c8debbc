"""Probability metrics computed here (``mlflow.evaluate`` cannot score a custom pyfunc's
probabilities): ROC-AUC, PR-AUC, log loss, Brier, expected calibration error, lift and
cumulative gains by decile, and the model-vs-oracle AUC comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ECE_BINS = 10

# Which way each selectable metric is better; tuning minimises ``sign * value``.
SELECTION_METRICS = {"roc_auc": -1.0, "pr_auc": -1.0, "log_loss": 1.0}


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype="int64").ravel()
    p = np.clip(np.asarray(p, dtype="float64").ravel(), 0.0, 1.0)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.size}) and probabilities ({p.size}) differ in length")
    return y, p


def _two_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def roc_auc(y, p) -> float:
    """ROC-AUC; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, p = _arrays(y, p)
    return float(roc_auc_score(y, p)) if _two_classes(y) else float("nan")


def pr_auc(y, p) -> float:
    """Average precision (area under the precision-recall curve); NaN with one class."""
    from sklearn.metrics import average_precision_score

    y, p = _arrays(y, p)
    return float(average_precision_score(y, p)) if _two_classes(y) else float("nan")


def log_loss(y, p) -> float:
    from sklearn.metrics import log_loss as _log_loss

    y, p = _arrays(y, p)
    return float(_log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))


def brier(y, p) -> float:
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2))


def calibration_table(y, p, n_bins: int = ECE_BINS, strategy: str = "uniform") -> pd.DataFrame:
    """Per bin: rows, mean predicted probability, observed rate.

    ``uniform``: equal-width bins on [0, 1] (the usual ECE); ``quantile``: equal-count bins.
    Empty bins are dropped.
    """
    y, p = _arrays(y, p)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        inner = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))[1:-1] if p.size else []
        edges = np.unique(np.concatenate([[0.0], inner, [1.0]]))
    else:
        raise ValueError(f"unknown binning strategy {strategy!r}")
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    frame = pd.DataFrame({"bin": idx, "y": y, "p": p})
    table = frame.groupby("bin").agg(rows=("y", "size"), mean_predicted=("p", "mean"),
                                     observed_rate=("y", "mean")).reset_index()
    table["lower"] = edges[table["bin"]]
    table["upper"] = edges[table["bin"] + 1]
    return table[["bin", "lower", "upper", "rows", "mean_predicted", "observed_rate"]]


def expected_calibration_error(y, p, n_bins: int = ECE_BINS, strategy: str = "uniform") -> float:
    """ECE = Σ_bins (rows / n) · |observed rate − mean predicted| (Guo et al. 2017; 10 equal-width bins)."""
    table = calibration_table(y, p, n_bins, strategy)
    n = table["rows"].sum()
    if n == 0:
        return float("nan")
    gap = (table["observed_rate"] - table["mean_predicted"]).abs()
    return float((table["rows"] / n * gap).sum())


def lift_table(y, p, groups: int = 10) -> pd.DataFrame:
    """Lift and cumulative gains by decile of predicted propensity (decile 1 = highest).

    Rows are sorted by descending probability (stable order for ties) and cut into
    ``groups`` groups of equal size. ``lift`` = group rate / overall rate; ``gain`` = share
    of all positives captured by the top deciles up to this one; ``cumulative_lift`` =
    rate of the top deciles / overall rate.
    """
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="stable")
    parts = np.array_split(order, groups)
    total_pos = max(int(y.sum()), 1)
    base = y.mean() if y.size else float("nan")
    rows, cum_rows, cum_pos = [], 0, 0
    for i, part in enumerate(parts, start=1):
        pos = int(y[part].sum())
        cum_rows += part.size
        cum_pos += pos
        rate = pos / part.size if part.size else float("nan")
        rows.append({"decile": i, "rows": int(part.size), "positives": pos,
                     "min_propensity": float(p[part].min()) if part.size else float("nan"),
                     "mean_propensity": float(p[part].mean()) if part.size else float("nan"),
                     "rate": rate, "lift": rate / base if base else float("nan"),
                     "gain": cum_pos / total_pos,
                     "cumulative_lift": (cum_pos / cum_rows) / base if base and cum_rows else float("nan")})
    return pd.DataFrame(rows)


def classification_metrics(y, p) -> dict[str, float]:
    """Every holdout metric as ``name -> value`` (NaN where undefined)."""
    y, p = _arrays(y, p)
    lift = lift_table(y, p)
    return {"roc_auc": roc_auc(y, p), "pr_auc": pr_auc(y, p), "log_loss": log_loss(y, p),
            "brier": brier(y, p), "ece": expected_calibration_error(y, p),
            "ece_quantile": expected_calibration_error(y, p, strategy="quantile"),
            "base_rate": float(y.mean()), "mean_propensity": float(p.mean()), "rows": float(y.size),
            "lift_decile_1": float(lift["lift"].iloc[0]), "gain_decile_1": float(lift["gain"].iloc[0]),
            "gain_decile_3": float(lift["gain"].iloc[min(2, len(lift) - 1)])}


def selection_score(metric: str, y, p) -> float:
    """The value of the tuning metric (roc_auc, pr_auc or log_loss)."""
    return {"roc_auc": roc_auc, "pr_auc": pr_auc, "log_loss": log_loss}[metric](y, p)


def oracle_comparison(y, p_model, p_oracle) -> dict[str, float]:
    """AUC of the model and of the oracle (latent propensity) on the same rows, and their ratio."""
    y, p_model = _arrays(y, p_model)
    _, p_oracle = _arrays(y, p_oracle)
    model_auc, oracle_auc = roc_auc(y, p_model), roc_auc(y, p_oracle)
    return {"model_auc": model_auc, "oracle_auc": oracle_auc,
            "auc_ratio": model_auc / oracle_auc if oracle_auc else float("nan"),
            "oracle_rows": float(y.size)}


# Activity columns a "trivial" model would rank by, most recent window first.
def _activity_column(columns) -> str | None:
    windows = sorted((int(c[len("events_"):-1]), c) for c in columns
                     if c.startswith("events_") and c.endswith("d") and c[len("events_"):-1].isdigit())
    if windows:
        return windows[0][1]
    return "events" if "events" in columns else None


def trivial_baselines(y, p_model, frame: pd.DataFrame) -> dict[str, float]:
    """The model against what needs no model, on the same rows.

    * ``base_rate``: every profile gets the training base rate (here the holdout's): its log
      loss and Brier score (ROC-AUC 0.5);
    * ``activity``: profiles ranked by their number of recent events (``events_{shortest
      window}d``, else ``events``), the usual rule of thumb: its ROC-AUC.

    Returns the baselines and the model's margins over them (``auc_margin`` = model ROC-AUC
    minus the best trivial ROC-AUC; ``log_loss_skill`` = 1 - model log loss / base-rate log loss).
    """
    y, p = _arrays(y, p_model)
    rate = float(y.mean()) if y.size else float("nan")
    base = np.full(y.shape, rate)
    out = {"baseline_rate": rate, "baseline_log_loss": log_loss(y, base), "baseline_brier": brier(y, base),
           "baseline_roc_auc": 0.5}
    col = _activity_column(frame.columns)
    if col is not None:
        activity = pd.to_numeric(frame[col], errors="coerce").fillna(0).to_numpy(dtype="float64")
        auc = roc_auc(y, activity)
        out["baseline_activity_roc_auc"] = auc
        out["baseline_roc_auc"] = max(0.5, auc, 1.0 - auc) if np.isfinite(auc) else 0.5
    model_auc, model_ll = roc_auc(y, p), log_loss(y, p)
    out["auc_margin"] = model_auc - out["baseline_roc_auc"]
    out["log_loss_skill"] = 1.0 - model_ll / out["baseline_log_loss"] if out["baseline_log_loss"] > 0 else float("nan")
    return out
