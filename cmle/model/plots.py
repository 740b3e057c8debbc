"""Evaluation figures (matplotlib ``Figure`` objects; no pyplot state, no display needed).

Each function takes data already computed by :mod:`cmle.model.metrics` or the model and
returns a figure for :func:`cmle.tracking.log_figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cmle.model import metrics


def _figure(width: float = 6.0, height: float = 4.5):
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def roc_figure(y, p, oracle=None) -> Figure:
    """ROC curve of the model (and of the oracle's latent propensity when given)."""
    from sklearn.metrics import roc_curve

    fig, ax = _figure()
    for name, scores in (("model", p), ("oracle", oracle)):
        if scores is None:
            continue
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.roc_auc(y, scores):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (holdout)")
    ax.legend(loc="lower right")
    return fig


def pr_figure(y, p) -> Figure:
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure()
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"model (AP {metrics.pr_auc(y, p):.3f})")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (holdout)", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return fig


def calibration_figure(table: pd.DataFrame, ece: float) -> Figure:
    """Observed rate against mean predicted probability per bin, with the bin sizes."""
    fig, ax = _figure()
    top = float(max(table["mean_predicted"].max(), table["observed_rate"].max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=f"model (ECE {ece:.4f})")
    for _, row in table.iterrows():
        ax.annotate(f"{int(row['rows'])}", (row["mean_predicted"], row["observed_rate"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -9))
    ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate",
           title="Calibration (holdout, equal-count bins)", xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    return fig


def lift_gains_figure(lift: pd.DataFrame) -> Figure:
    """Lift per decile (bars) and cumulative gains (line) — Customer AI's evaluation view."""
    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    ax_lift, ax_gain = fig.subplots(1, 2)
    ax_lift.bar(lift["decile"], lift["lift"], color="tab:blue")
    ax_lift.axhline(1.0, linestyle="--", color="grey", linewidth=1)
    ax_lift.set(xlabel="decile (1 = highest propensity)", ylabel="lift", title="Lift by decile", xticks=lift["decile"])
    share = np.concatenate([[0.0], lift["rows"].cumsum() / lift["rows"].sum()])
    gains = np.concatenate([[0.0], lift["gain"]])
    ax_gain.plot(share * 100, gains * 100, marker="o", label="model")
    ax_gain.plot([0, 100], [0, 100], linestyle="--", color="grey", linewidth=1, label="random")
    ax_gain.set(xlabel="% of profiles targeted (by propensity)", ylabel="% of conversions captured",
                title="Cumulative gains", xlim=(0, 100), ylim=(0, 100))
    ax_gain.legend(loc="lower right")
    return fig


def score_distribution_figure(outputs: pd.DataFrame, y) -> Figure:
    """Score histogram by outcome, and the profile count per bucket."""
    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    ax_hist, ax_bucket = fig.subplots(1, 2)
    y = np.asarray(y)
    bins = np.arange(0, 102, 2)
    ax_hist.hist(outputs["score"][y == 0], bins=bins, alpha=0.6, label="did not convert", density=True,
                histtype="stepfilled")
    ax_hist.hist(outputs["score"][y == 1], bins=bins, alpha=0.6, label="converted", density=True,
                histtype="stepfilled")
    for edge in (25, 75):
        ax_hist.axvline(edge, color="grey", linestyle=":", linewidth=1)
    ax_hist.set(xlabel="score (0-100)", ylabel="density", title="Score distribution (holdout)")
    ax_hist.legend()
    counts = outputs["bucket"].value_counts().reindex(["low", "medium", "high"], fill_value=0)
    rates = [float(y[(outputs["bucket"] == b).to_numpy()].mean()) if counts[b] else 0.0 for b in counts.index]
    bars = ax_bucket.bar(counts.index, counts.values, color=["tab:grey", "tab:orange", "tab:green"])
    for bar, rate in zip(bars, rates):
        ax_bucket.annotate(f"{rate:.1%} conv.", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                           ha="center", va="bottom", fontsize=8)
    ax_bucket.set(xlabel="bucket", ylabel="profiles", title="Profiles per bucket")
    return fig


def importance_figure(importance: pd.DataFrame, top: int = 20) -> Figure:
    """Permutation importance (drop in ROC-AUC) of the ``top`` most important features."""
    shown = importance.head(top).iloc[::-1]
    fig, ax = _figure(7.0, max(3.0, 0.3 * len(shown) + 1.0))
    ax.barh(shown["feature"], shown["importance"], xerr=shown["std"], color="tab:blue")
    ax.set(xlabel="drop in ROC-AUC when shuffled", title="Permutation feature importance (validation)")
    return fig


def trials_figure(trials: pd.DataFrame, metric: str) -> Figure:
    """Validation score per trial, coloured by family (the notebooks' trial plot)."""
    fig, ax = _figure()
    column = f"val_{metric}"
    for family, rows in trials[trials["status"] == "ok"].groupby("family"):
        ax.scatter(rows["trial"], rows[column], label=family)
    ax.set(xlabel="trial", ylabel=f"validation {metric}", title="Hyperparameter search")
    ax.legend()
    return fig
