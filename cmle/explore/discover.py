"""Discovery on a user's events dataset: which fields are filled, which identities it holds,
and which goals could be predicted with what base rate.

Like the rest of the exploration, each function is one aggregate query through the
platform's query engine (Query Service's 50,000-row cap is never near).
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import pandas as pd

from cmle.errors import ParameterError, QueryError
from cmle.explore.queries import Columns, _identifier, event_literal
from cmle.modelspec.paths import IDENTITY_MAP, FieldPath, PathError
from cmle.platform.base import Platform

log = logging.getLogger(__name__)

MAX_FIELDS = 400  # fields whose fill rate one query computes
MAX_GOAL_TYPES = 25  # event types whose base rate as a goal one query computes
# Words of event types that look like a business outcome, most outcome-like first: candidate
# goals are ranked by the first word their name holds.
GOAL_WORDS = ("purchase", "order", "subscri", "formfilled", "signup", "sign_up", "register", "conversion",
              "applica", "booking", "lead", "checkout", "download", "install")


def goal_rank(event_type: str) -> int:
    """How outcome-like an event type's name is (0 best; len(GOAL_WORDS) for none)."""
    name = event_type.lower()
    return next((i for i, w in enumerate(GOAL_WORDS) if w in name), len(GOAL_WORDS))


def _fill_expr(path: str, kind: str) -> str | None:
    """SQL counting the rows where ``path`` holds a value (an array: a non-empty one)."""
    top = path.split("[]")[0]
    try:
        fp = FieldPath.parse(top)
    except PathError:
        return None
    if "[]" in path or kind == "array":
        return f"COUNT(CASE WHEN size({fp.sql()}) > 0 THEN 1 END)"
    return f"COUNT({fp.sql()})"


def filled_fields(platform: Platform, table: str, fields: dict[str, str], timeout_s: float = 600.0) -> pd.DataFrame:
    """Per field: its type, rows where it holds a value, and that share of all rows.

    Fields inside an array (``productListItems[].SKU``) are counted as the array being
    non-empty; fields whose names are not plain XDM names are left out.
    """
    exprs, kept = [], []
    for path, kind in fields.items():
        expr = _fill_expr(path, kind)
        if expr is not None and len(kept) < MAX_FIELDS:
            exprs.append(f"{expr} AS f{len(kept)}")
            kept.append((path, kind))
    if not kept:
        return pd.DataFrame(columns=["field", "type", "filled_rows", "fill_rate"])
    sql = f"SELECT COUNT(*) AS n, {', '.join(exprs)} FROM {_identifier(table, 'table')}"
    row = platform.query(sql, timeout_s=timeout_s, max_rows=1).iloc[0]
    n = int(row["n"])
    out = pd.DataFrame({"field": [p for p, _ in kept], "type": [k for _, k in kept],
                        "filled_rows": [int(row[f"f{i}"] or 0) for i in range(len(kept))]})
    out["fill_rate"] = out["filled_rows"] / n if n else 0.0
    return out.sort_values(["fill_rate", "field"], ascending=[False, True]).reset_index(drop=True)


def identity_namespaces(platform: Platform, table: str, timeout_s: float = 600.0) -> pd.DataFrame:
    """The ``identityMap`` namespaces of the dataset: namespace, rows that carry it; most first."""
    sql = (f"SELECT ns AS namespace, COUNT(*) AS events FROM (SELECT explode(map_keys(`{IDENTITY_MAP}`)) AS ns "
           f"FROM {_identifier(table, 'table')}) n GROUP BY ns ORDER BY events DESC, namespace")
    try:
        return platform.query(sql, timeout_s=timeout_s, max_rows=1000)
    except QueryError as exc:
        log.warning("explore: could not list identityMap namespaces: %s", str(exc).splitlines()[0])
        return pd.DataFrame(columns=["namespace", "events"])


def guess_identity(fields: dict[str, str], namespaces: pd.DataFrame, tenant: str) -> dict:
    """The identity a starter spec proposes: ECID (or the most common namespace) of
    ``identityMap``, else a custom ``userid``-like field; ParameterError when none is found."""
    if IDENTITY_MAP in fields and len(namespaces):
        names = list(namespaces["namespace"].astype(str))
        return {"namespace": "ECID" if "ECID" in names else names[0]}
    root = f"_{tenant}."
    for name in ("userid", "userId", "ecid", "ECID", "crmId", "customerId", "personID"):
        if root + name in fields:
            return {"field": root + name, "namespace": "ECID" if name.lower() == "ecid" or name == "userid" else "CRMID"}
    raise ParameterError("explore: cannot tell which field identifies the person in this dataset (no identityMap "
                         "and no usual id field); pass identity=<field path> or identity=<identityMap namespace>")


def parse_identity(text: str) -> dict:
    """The ``identity`` parameter: a field path (``_{tenant}.crmId``), or an identityMap namespace
    (``ECID``, also written ``identityMap[ECID]``)."""
    text = text.strip()
    m = re.fullmatch(rf"{IDENTITY_MAP}\[([A-Za-z][A-Za-z0-9_\-]*)\]", text)
    if m:
        return {"namespace": m.group(1)}
    if "." in text or text.startswith("_"):
        return {"field": text}
    return {"namespace": text}


def candidate_goals(platform: Platform, table: str, cols: Columns, event_types: list[str], end: dt.datetime,
                    window_days: int, timeout_s: float = 600.0) -> pd.DataFrame:
    """What each event type would be as a goal over the last ``window_days`` of the data.

    T0 = ``end`` - window: among users with an event before T0 (``users``), the share with
    the type in (T0, end] (``base_rate``), and the share of those who never had it before
    T0 that had it then (``first_time_rate``); plus a churn row (no event at all in the
    window). Ranked: outcome-like names (purchase, order, signup, ...) first, then base
    rates nearest 10 %.
    """
    from cmle.features.render import ts_literal

    types = [t for t in event_types if t][:MAX_GOAL_TYPES]
    t0 = end - dt.timedelta(days=window_days)
    t0_lit, end_lit = ts_literal(t0), ts_literal(end)
    after = f"{cols.ts} > {t0_lit} AND {cols.ts} <= {end_lit}"
    per_user = [f"MAX(CASE WHEN {cols.ts} <= {t0_lit} THEN 1 ELSE 0 END) AS before",
                f"MAX(CASE WHEN {after} THEN 1 ELSE 0 END) AS any_after"]
    totals = ["COUNT(*) AS users", "SUM(any_after) AS active_after"]
    for i, ty in enumerate(types):
        lit = event_literal(ty)
        per_user += [f"MAX(CASE WHEN {cols.event_type} = {lit} AND {after} THEN 1 ELSE 0 END) AS g{i}",
                     f"MAX(CASE WHEN {cols.event_type} = {lit} AND {cols.ts} <= {t0_lit} THEN 1 ELSE 0 END) AS h{i}"]
        totals += [f"SUM(g{i}) AS g{i}", f"SUM(CASE WHEN h{i} = 0 THEN 1 ELSE 0 END) AS new{i}",
                   f"SUM(CASE WHEN h{i} = 0 THEN g{i} ELSE 0 END) AS newg{i}"]
    sql = (f"WITH per_user AS (\n  SELECT {cols.user} AS userid,\n    " + ",\n    ".join(per_user) +
           f"\n  FROM {_identifier(table, 'table')}\n  WHERE {cols.user} IS NOT NULL AND {cols.ts} <= {end_lit}\n"
           f"  GROUP BY {cols.user}\n)\nSELECT " + ", ".join(totals) + "\nFROM per_user\nWHERE before = 1")
    row = platform.query(sql, timeout_s=timeout_s, max_rows=1).iloc[0]
    users = int(row["users"] or 0)

    def rate(a, b) -> float:
        return float(a or 0) / float(b) if b else float("nan")

    rows = [{"goal": ty, "outcome": "occurs", "window_days": window_days, "users": users,
             "positives": int(row[f"g{i}"] or 0), "base_rate": rate(row[f"g{i}"], users),
             "first_time_users": int(row[f"new{i}"] or 0), "first_time_rate": rate(row[f"newg{i}"], row[f"new{i}"])}
            for i, ty in enumerate(types)]
    churned = users - int(row["active_after"] or 0)
    rows.append({"goal": "(any event)", "outcome": "does_not_occur", "window_days": window_days, "users": users,
                 "positives": churned, "base_rate": rate(churned, users), "first_time_users": users,
                 "first_time_rate": rate(churned, users)})
    out = pd.DataFrame(rows)
    out["outcome_like"] = out["goal"].map(lambda g: goal_rank(g) < len(GOAL_WORDS))
    out["usable"] = (out["positives"] >= 20) & (out["base_rate"] > 0.002) & (out["base_rate"] < 0.8)
    closeness = (out["base_rate"].fillna(0) - 0.1).abs()
    order = pd.DataFrame({"u": ~out["usable"], "o": out["goal"].map(goal_rank), "c": closeness}).sort_values(
        ["u", "o", "c"], kind="stable").index
    return out.loc[order].reset_index(drop=True)


__all__ = ["candidate_goals", "filled_fields", "guess_identity", "identity_namespaces", "parse_identity"]
