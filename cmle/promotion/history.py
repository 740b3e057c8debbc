"""The promotion history as a table: time, version, decision, metrics, who approved, evidence."""

from __future__ import annotations

from typing import Any

COLUMNS = ("time", "version", "decision", "metrics", "approved by", "evidence")
MAX_CELL = 64


def decision(record: dict[str, Any]) -> str:
    """What happened, in a few words."""
    action = record.get("action", "promotion")
    if action == "approval":
        return str(record.get("decision", "")).lower()
    if action == "rollback":
        return f"rollback v{record.get('rolled_back')} -> v{record.get('version')}"
    status, mode = str(record.get("status", "")), record.get("mode", "")
    approval = (record.get("approval") or {}).get("state")
    if record.get("state") == "interrupted":
        return f"{status}, interrupted before the move"
    if record.get("promoted"):
        return "promoted" + (f" (replaced v{record['previous_champion']})" if record.get("previous_champion") else "")
    if mode == "dry_run":
        return f"dry run: {status}"
    if status == "passed" and approval == "pending":
        return "passed, awaiting approval"
    return {"failed": "refused", "insufficient_evidence": "not decided: too few positives"}.get(status, status)


def metrics_cell(record: dict[str, Any]) -> str:
    if record.get("action", "promotion") != "promotion":
        return ""
    parts = []
    auc, champ = record.get("challenger_auc"), record.get("champion_auc")
    if isinstance(auc, (int, float)):
        parts.append(f"ROC-AUC {auc:.4f}" + (f" vs {champ:.4f}" if isinstance(champ, (int, float)) else ""))
    failed = [c["metric"] for c in record.get("comparisons") or [] if not c.get("passed")]
    if failed:
        parts.append("worse: " + ", ".join(dict.fromkeys(failed)))
    elif record.get("comparisons"):
        parts.append(f"{len({c['metric'] for c in record['comparisons']})} metrics no worse")
    return "; ".join(parts)


def approved_by(record: dict[str, Any]) -> str:
    action = record.get("action", "promotion")
    if action in ("approval", "rollback"):
        return str(record.get("by", ""))
    approval = record.get("approval") or {}
    return str(approval.get("by", "")) if approval.get("state") in ("approved", "rejected") else ""


def evidence_cell(record: dict[str, Any]) -> str:
    action = record.get("action", "promotion")
    if action != "promotion":
        return str(record.get("reason", ""))
    parts = []
    ev = record.get("evaluation") or {}
    if ev:
        parts.append(f"holdout {ev.get('rows')} rows, {ev.get('positives')} positives")
    elif record.get("holdout_rows") is not None:
        parts.append(f"holdout {record.get('holdout_rows')} rows")
    realised = record.get("realised") or {}
    if realised.get("window"):
        parts.append(f"realised {realised['window']}")
    if record.get("override"):
        parts.append("leakage overridden")
    return "; ".join(parts)


def rows(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"time": str(r.get("time", ""))[:19].replace("T", " "), "version": f"v{r.get('version', '')}",
             "decision": decision(r), "metrics": metrics_cell(r), "approved by": approved_by(r),
             "evidence": evidence_cell(r)} for r in history]


def table(history: list[dict[str, Any]]) -> str:
    """A plain-text table, oldest first (times in UTC)."""
    body = [[_cut(row[c]) for c in COLUMNS] for row in rows(history)]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in body]
    if not body:
        out.append("(no promotion recorded yet)")
    return "\n".join(out)


def _cut(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"
