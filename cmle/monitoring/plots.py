"""Figures of the monitor stage: drift per feature, expected against actual."""

from __future__ import annotations

import numpy as np
import pandas as pd


def drift_figure(drift: pd.DataFrame, warn: float, alert: float, top: int = 25):
    """Horizontal bars of PSI per variable (the score first, then the largest), with the thresholds."""
    from matplotlib.figure import Figure

    table = drift.sort_values("psi", ascending=False, kind="stable")
    score = table[table["variable"] == "score"]
    rest = table[table["variable"] != "score"].head(top - len(score))
    shown = pd.concat([score, rest]).iloc[::-1]
    colors = ["#d9534f" if lv == "alert" else "#f0ad4e" if lv == "warn" else "#5cb85c" for lv in shown["level"]]
    fig = Figure(figsize=(8, max(3.0, 0.28 * len(shown) + 1.2)))
    ax = fig.add_subplot()
    ax.barh(shown["variable"], shown["psi"].fillna(0.0), color=colors)
    for x, style in ((warn, "--"), (alert, "-")):
        ax.axvline(x, color="#555555", linestyle=style, linewidth=1)
    ax.set_xlabel(f"population stability index (warn {warn:g}, alert {alert:g})")
    ax.set_title("Drift of the scoring set against the training reference")
    fig.tight_layout()
    return fig


def expected_actual_figure(table: pd.DataFrame, title: str):
    """Expected (mean propensity) against actual conversion per decile, with 95 % intervals."""
    from matplotlib.figure import Figure

    deciles = table[table["group"] == "decile"].copy()
    fig = Figure(figsize=(6.5, 5))
    ax = fig.add_subplot()
    if len(deciles):
        x = deciles["expected_rate"].to_numpy(dtype="float64")
        y = deciles["actual_rate"].to_numpy(dtype="float64")
        err = np.vstack([y - deciles["ci_low"].to_numpy(dtype="float64"),
                         deciles["ci_high"].to_numpy(dtype="float64") - y])
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", color="#4c8bd6", capsize=3, label="decile")
        for xi, yi, d in zip(x, y, deciles["value"]):
            ax.annotate(str(d), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        hi = float(np.nanmax(np.r_[x, deciles["ci_high"].to_numpy(dtype="float64"), 0.01])) * 1.05
        ax.plot([0, hi], [0, hi], color="#999999", linestyle="--", linewidth=1, label="expected = actual")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    ax.set_xlabel("expected conversion (mean propensity)")
    ax.set_ylabel("actual conversion in the outcome window")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
