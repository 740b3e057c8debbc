"""Figures of the exploration (matplotlib, Agg canvas; no pyplot state, so safe in any process).

Each function takes a result table of :mod:`cmle.explore` and returns a Figure;
:func:`cmle.tracking.log_figure` saves it as PNG.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever backend pyplot was given
    return fig


def _height(n_rows: int) -> float:
    return max(3.0, 0.4 * n_rows + 1.5)


def event_mix_figure(mix: pd.DataFrame) -> Figure:
    """Events and distinct users per event type, side by side (most frequent at the top)."""
    data = mix.sort_values("events")
    fig = _figure(12, _height(len(data)))
    ax_events, ax_users = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(data))
    ax_events.barh(y, data["events"], color="tab:blue")
    ax_events.set_yticks(y, data["event_type"])
    ax_events.set_xlabel("events")
    ax_events.set_title("Events per type")
    ax_users.barh(y, data["users"], color="tab:orange")
    ax_users.set_xlabel("distinct users")
    ax_users.set_title("Users with the event type")
    for ax in (ax_events, ax_users):
        ax.grid(axis="x", alpha=0.3)
    return fig


def funnel_figure(funnel: pd.DataFrame) -> Figure:
    """The email funnel: users reaching each step in order (dark) over users with the
    step's event at all (light), labelled with the conversion from the previous step."""
    data = funnel.sort_values("step")
    fig = _figure(10, _height(len(data)))
    ax = fig.subplots()
    y = -np.arange(len(data))  # first step at the top
    ax.barh(y, data["users"], color="tab:blue", alpha=0.3, label="users with the event")
    ax.barh(y, data["users_in_order"], color="tab:blue", label="users reaching the step in order")
    ax.set_yticks(y, data["event_type"])
    top = max(float(data["users"].max()), 1.0)
    for yi, users, rate in zip(y, data["users_in_order"], data["conversion_from_previous"]):
        text = f"{int(users):,}" + ("" if pd.isna(rate) else f"  ({rate:.1%} of previous)")
        ax.text(float(users) + top * 0.01, yi, text, va="center")
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("distinct users")
    ax.set_title("Email funnel")
    ax.legend(loc="lower right")
    return fig


def cooccurrence_figure(matrix: pd.DataFrame) -> Figure:
    """Heatmap of P(later type | first type): rows = first type, columns = later type."""
    n = len(matrix)
    size = max(5.0, 0.6 * n + 3.0)
    fig = _figure(size + 1.5, size)
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(np.arange(matrix.shape[1]), matrix.columns, rotation=60, ha="right")
    ax.set_yticks(np.arange(n), matrix.index)
    if n <= 20:  # numbers stay legible up to about this many types
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v < 0.6 else "black")
    ax.set_xlabel("later event type")
    ax.set_ylabel("first event type")
    ax.set_title("P(later type | first type)")
    fig.colorbar(image, ax=ax, label="share of users")
    return fig


def correlation_figure(correlation: pd.DataFrame) -> Figure:
    """Pearson correlation of per-user event counts with conversion, one bar per type
    (types without variance, whose correlation is undefined, are left out)."""
    data = correlation.dropna(subset=["correlation"]).sort_values("correlation")
    fig = _figure(10, _height(len(data)))
    ax = fig.subplots()
    y = np.arange(len(data))
    colors = ["tab:green" if v >= 0 else "tab:red" for v in data["correlation"]]
    ax.barh(y, data["correlation"], color=colors)
    ax.set_yticks(y, data["event_type"])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("Pearson correlation with conversion")
    ax.set_title("Per-user event counts vs conversion")
    ax.grid(axis="x", alpha=0.3)
    return fig
