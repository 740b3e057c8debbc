"""The reach curve figure: profiles reached against the propensity threshold, audiences marked."""

from __future__ import annotations

import pandas as pd

from cmle.audiences.rules import BandRule, Rule


def reach_figure(curve: pd.DataFrame, rules: list[Rule], counts: dict[str, int], scores: pd.DataFrame):
    """Reach curve (``rules.reach_curve``) with each audience placed on it.

    Bands are shaded; top-percent and bucket audiences are drawn as a point at the lowest
    propensity among their members and their size.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot(curve["threshold"], curve["reached"], color="#333333", label="propensity ≥ threshold")
    for i, rule in enumerate(rules):
        color = f"C{i}"
        label = f"{rule.name}: {counts.get(rule.name, 0):,}"
        if isinstance(rule, BandRule):
            ax.axvspan(rule.lower or 0.0, 1.0 if rule.upper is None else rule.upper, color=color, alpha=0.15,
                       label=label)
            continue
        members = scores.loc[rule.mask(scores), "propensity"]
        if len(members):
            ax.scatter([members.min()], [counts.get(rule.name, len(members))], color=color, zorder=3, label=label)
    ax.set_xlabel("propensity threshold")
    ax.set_ylabel("profiles reached")
    ax.set_xlim(0, 1)
    ax.set_title(f"Reach of {int(curve['reached'].iloc[0]) if len(curve) else 0:,} scored profiles")
    ax.legend(title="audience: qualified", fontsize="small")
    fig.tight_layout()
    return fig
