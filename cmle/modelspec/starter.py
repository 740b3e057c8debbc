"""A starter model spec from what ``explore`` found in a user's dataset.

The spec is written as commented YAML for the user to edit: the dataset and its identity,
the best candidate goal (with the base rates of the others as comments), the ``auto``
event types, and the custom numeric fields that are filled often enough to be features.
It is parsed back before it is returned, so what is written always validates.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pandas as pd

from cmle.modelspec.model import slug

NUMERIC_TYPES = ("number", "integer")
MIN_FILL = 0.01  # numeric fields filled on fewer rows are not proposed
MAX_NUMERIC = 6
# Fields that are identities, times or bookkeeping, never features.
_NOT_FEATURES = re.compile(r"(^|\.)(_id|timestamp|id|ID|version|_version|offset|sequence)$|identityMap|"
                           r"(^|\.)(lat|latitude|lon|longitude|zip|postalCode)$", re.IGNORECASE)


def _q(text: str) -> str:
    """A YAML scalar, quoted (JSON strings are valid YAML)."""
    return json.dumps(text)


def numeric_candidates(fields: pd.DataFrame, identity_field: str = "") -> list[str]:
    """Numeric fields worth aggregating: filled on at least 1 % of events, not ids or times,
    the custom (``_tenant``) and order-value-like ones first."""
    rows = fields[fields["type"].isin(NUMERIC_TYPES) & (fields["fill_rate"] >= MIN_FILL)]
    paths = [p for p in rows["field"] if p != identity_field and not _NOT_FEATURES.search(p)]
    # leaves of booleans-as-counters (xdm "value" measures such as commerce.purchases.value) say no more
    # than the event type itself: leave them out
    paths = [p for p in paths if not p.endswith(".value")]

    def rank(p: str) -> tuple:
        return (not p.startswith("_"), not re.search(r"price|value|amount|revenue|total|quantity", p, re.I), p)

    return sorted(paths, key=rank)[:MAX_NUMERIC]


def _portable(path: str, tenant: str) -> str:
    """``_cmle.orderValue`` as ``_{tenant}.orderValue``: the same spec reads the tenant's fields
    on the embedded platform and on AEP."""
    root = f"_{tenant}."
    return "_{tenant}." + path[len(root):] if tenant and path.startswith(root) else path


def starter_spec(*, name: str, dataset: str, identity: dict, goals: pd.DataFrame, fields: pd.DataFrame,
                 window_days: int, lookback_days: int, generated: dt.datetime | None = None,
                 top_event_types: int = 10, tenant: str = "") -> str:
    """The YAML text of a starter spec (see the module docstring); ``goals`` is
    :func:`cmle.explore.discover.candidate_goals`' table, best first."""
    from cmle.modelspec import parse_spec

    generated = generated or dt.datetime.now(dt.timezone.utc)
    spec_name = re.sub(r"_+", "_", slug(name).lower())[:40].strip("_") or "my_data"
    if not spec_name[0].isalpha():
        spec_name = f"m_{spec_name}"[:40]
    best = goals.iloc[0] if len(goals) else None
    churn = best is not None and best["outcome"] == "does_not_occur"
    lines = [
        f"# Starter model spec written by `cmle explore` on {generated:%Y-%m-%d %H:%M} UTC from dataset {dataset!r}.",
        "# Edit it (docs/model-spec.md lists every key), then point [Model] spec or --spec at this file.",
        "version: 1",
        f"name: {spec_name}",
        "# the registered model of this spec (its scores mean something else than other specs')",
        f"model_name: cmle_{spec_name}_model",
        "",
        "events:",
        f"  dataset: {_q(dataset)}",
        "  identity: {" + ", ".join(f"{k}: {_q(_portable(v, tenant) if k == 'field' else v)}"
                                   for k, v in identity.items()) + "}",
        "  timestamp: timestamp",
        "  event_type: eventType",
        "",
        "goal:",
    ]
    if len(goals):
        lines.append(f"  # candidate goals over the last {window_days} days (base rate among users active "
                     "before; first-time rate among those who never had it):")
        for _, g in goals.head(8).iterrows():
            first = "n/a" if g["first_time_rate"] != g["first_time_rate"] else f"{g['first_time_rate']:.1%}"
            lines.append(f"  #   {g['goal']:<40} {g['outcome']:<15} base rate {g['base_rate']:.1%}, "
                         f"first time {first}, {int(g['positives'])} of {int(g['users'])} users")
    if best is None or churn:
        lines += ["  any_event: true", "  outcome: does_not_occur"]
    else:
        lines += [f"  event_types: [{_q(best['goal'])}]", "  outcome: occurs"]
    lines += [f"  window_days: {window_days}", "", "eligibility:"]
    if churn or best is None:
        lines += [f"  # score people active in the last {lookback_days} days", f"  active_within_days: {lookback_days}"]
    else:
        repeat = best["base_rate"] > 1.5 * best["first_time_rate"] if best["first_time_rate"] == \
            best["first_time_rate"] else False
        lines += ["  # true: score only people who never reached the goal (first-time prediction)",
                  f"  exclude_goal_reached: {'false' if repeat else 'true'}"]
    lines += ["", "features:", f"  lookback_days: {lookback_days}", "  windows: [7, 14, 28]",
              "  # counts and recency of the event types with the most users before the snapshot",
              f"  auto: {{top: {top_event_types}}}"]
    numeric = numeric_candidates(fields, identity.get("field", ""))
    # When profiles that reached the goal are not scored, fields only the goal's events carry
    # are empty for everyone: keep to sums (0 when empty), which never make an all-NULL feature.
    aggregations = "[sum]" if "exclude_goal_reached: true" in "\n".join(lines) else "[sum, avg, max]"
    if numeric:
        lines.append("  numeric:")
        for path in numeric:
            lines.append(f"    - {{field: {_q(_portable(path, tenant))}, aggregations: {aggregations}}}")
    text = "\n".join(lines) + "\n"
    parse_spec(text, "<starter spec>")  # what is written validates
    return text


__all__ = ["numeric_candidates", "starter_spec"]
