"""Human approval of a challenger that passed the gate (``promote --mode approval``).

A passing challenger is marked pending (tag ``cmle.approval = pending`` on its version). It is
approved or rejected either with ``cmle approve`` (who and why are recorded in the promotion
history) or by hand in the MLflow or Databricks UI, by setting the tag ``approved`` (the
``approval_tag`` parameter) on the version: ``approved`` / ``true`` / ``yes`` approves,
``rejected`` / ``false`` / ``no`` rejects, in any case. Databricks deployment jobs work the
same way (their approval button sets a tag named after the approval task to ``Approved``).
``promote`` run again then completes the move, or records the rejection.

A rejection wins over an approval; the registry does not say who set a tag by hand, so such
an approval is recorded as made in the registry UI (set ``<approval_tag>_by`` and
``<approval_tag>_reason`` tags beside it to record who and why).
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cmle.errors import ParameterError, RegistryError
from cmle.registry import Registry

log = logging.getLogger(__name__)

APPROVAL_TAG = "cmle.approval"  # pending | approved | rejected, set by cmle
APPROVED_BY_TAG = "cmle.approval_by"
APPROVAL_REASON_TAG = "cmle.approval_reason"
DEFAULT_APPROVAL_TAG = "approved"  # the tag a person sets by hand
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
_YES = {"approved", "approve", "true", "yes", "y", "1"}
_NO = {"rejected", "reject", "false", "no", "n", "0"}


@dataclass(frozen=True)
class Approval:
    """Where a version stands: ``none`` (never asked), pending, approved or rejected."""

    state: str
    by: str = ""
    reason: str = ""
    via: str = ""

    def as_record(self) -> dict:
        return {"state": self.state, "by": self.by, "reason": self.reason, "via": self.via}


def check_tag_name(approval_tag: str) -> str:
    tag = (approval_tag or "").strip()
    if not tag or tag.startswith("cmle."):
        raise ParameterError(f"approval_tag = {approval_tag!r}: name the tag people set by hand, e.g. approved "
                             "(not a cmle.* tag)")
    return tag


def state_of(tags: dict[str, str] | None, approval_tag: str = DEFAULT_APPROVAL_TAG) -> Approval:
    """The approval state recorded in a version's tags."""
    tags = tags or {}
    ours = (tags.get(APPROVAL_TAG) or "").strip().lower()
    raw = tags.get(approval_tag)
    manual = (raw or "").strip().lower()
    by_cmle = Approval(ours, tags.get(APPROVED_BY_TAG, ""), tags.get(APPROVAL_REASON_TAG, ""), "cmle approve")
    by_hand = Approval(APPROVED if manual in _YES else REJECTED if manual in _NO else "",
                       tags.get(f"{approval_tag}_by", "") or "unknown (set in the registry UI)",
                       tags.get(f"{approval_tag}_reason", ""), f"registry tag {approval_tag}={raw}")
    if REJECTED in (ours, by_hand.state):  # a rejection wins
        return by_cmle if ours == REJECTED else by_hand
    if ours == APPROVED:
        return by_cmle
    if by_hand.state == APPROVED:
        return by_hand
    if raw is not None and manual and not by_hand.state:
        log.warning("tag %s=%r is neither an approval (approved, true, yes) nor a rejection (rejected, false, no); "
                    "ignored", approval_tag, raw)
    return Approval(PENDING if ours == PENDING else "none")


def current_user() -> str:
    """Who runs this: $USER (the OS user); pass ``--by`` to name someone else."""
    for key in ("USER", "USERNAME"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def awaiting(registry: Registry, name: str) -> list:
    """Versions of ``name`` marked pending approval (newest last)."""
    return [v for v in registry.versions(name) if (v.tags or {}).get(APPROVAL_TAG) == PENDING]


def mark_pending(registry: Registry, name: str, version: str, approval_tag: str = DEFAULT_APPROVAL_TAG) -> None:
    """Mark ``version`` pending; a new request clears the approval or rejection of an earlier one
    (made against another champion)."""
    for key in (approval_tag, f"{approval_tag}_by", f"{approval_tag}_reason", APPROVED_BY_TAG, APPROVAL_REASON_TAG):
        registry.delete_tag(name, version, key)
    registry.set_tags(name, version, {APPROVAL_TAG: PENDING})


def record_decision(registry: Registry, name: str, version: str, decision: str, by: str, reason: str,
                    approval_tag: str = DEFAULT_APPROVAL_TAG) -> dict:
    """Approve or reject a pending version: a history record, then the tags (ours and the hand-set one)."""
    if decision not in (APPROVED, REJECTED):
        raise ParameterError(f"decision {decision!r}: approve or reject")
    if not (reason or "").strip():
        raise ParameterError(f"approve: say why (--reason) you {'approve' if decision == APPROVED else 'reject'} "
                             f"v{version}; it is recorded with your name")
    record = {"action": "approval", "decision": decision, "version": str(version), "by": by or current_user(),
              "reason": reason.strip(), "via": "cmle approve",
              "time": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
    registry.record_promotion(name, version, record)
    registry.set_tags(name, version, {APPROVAL_TAG: decision, APPROVED_BY_TAG: record["by"],
                                      APPROVAL_REASON_TAG: record["reason"],
                                      approval_tag: "Approved" if decision == APPROVED else "Rejected"})
    return record


def wait_for(registry: Registry, name: str, version: str, approval_tag: str, wait_minutes: float,
             poll_seconds: float) -> Approval:
    """Poll the version's tags until it is approved or rejected, or ``wait_minutes`` pass;
    returns the last state seen."""
    deadline = time.monotonic() + max(0.0, wait_minutes) * 60.0
    while True:
        found = state_of(registry.version(name, version).tags, approval_tag)
        if found.state in (APPROVED, REJECTED) or time.monotonic() >= deadline:
            return found
        log.info("v%s of %s awaits approval (cmle approve, or tag %s=approved on the version); checking again in "
                 "%.0f s", version, name, approval_tag, poll_seconds)
        time.sleep(max(0.5, poll_seconds))


def pending_version(registry: Registry, name: str, version: str = "") -> str:
    """The version an approval concerns: ``version`` if given (it must be pending or decided),
    else the newest version awaiting approval."""
    if version:
        registry.version(name, version)  # a clear error if it does not exist
        return str(version)
    found = awaiting(registry, name)
    if not found:
        decisions = [r for r in registry.promotion_history(name) if r.get("action", "promotion") == "promotion"]
        last = (f"; the last decision: v{decisions[-1].get('version')} {decisions[-1].get('status')} "
                f"({str(decisions[-1].get('reason', ''))[:300]})") if decisions else ""
        raise RegistryError(f"no version of {name} awaits approval: only a challenger that passed the gate in "
                            f"`cmle promote --mode approval` does{last}. `cmle history` shows every decision")
    return str(found[-1].version)
