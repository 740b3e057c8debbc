"""Stage ``approve`` (not an MLflow run): approve or reject a challenger that passed the gate in ``mode=approval``,
or wait for someone to (the approval task of the Databricks deployment job).

``approve`` and ``reject`` record who and why in the promotion history and set the version's
tags; ``promote`` run again then moves the champion (or records the rejection). ``wait``
polls the version's tags for up to ``wait_minutes`` and fails unless it was approved, so a
job's deployment task runs only after approval (a repaired run checks again).
"""

from __future__ import annotations

import logging

from cmle import modelspec
from cmle.context import Context
from cmle.errors import BusyError, RegistryError
from cmle.promotion import approval
from cmle.registry import Registry
from cmle.stages import SPEC_PARAM, Param, Stage

log = logging.getLogger(__name__)

DECISIONS = ("approve", "reject", "wait")


def approve(ctx: Context, decision: str = "approve", version: str = "", by: str = "", reason: str = "",
            approval_tag: str = approval.DEFAULT_APPROVAL_TAG, wait_minutes: float = 0.0,
            poll_seconds: float = 30.0, spec: str = "", registry: Registry | None = None) -> dict:
    approval_tag = approval.check_tag_name(approval_tag)
    registry = registry or Registry.configured(ctx.settings)
    name = modelspec.model_name(ctx.settings, modelspec.spec_for(ctx.settings, spec))
    target = approval.pending_version(registry, name, version.strip())
    if decision == "wait":
        found = approval.wait_for(registry, name, target, approval_tag, wait_minutes, poll_seconds)
        if found.state == approval.APPROVED:
            log.info("approve: v%s of %s is approved by %s (%s)", target, name, found.by, found.via)
            return {"model_name": name, "version": target, "status": approval.APPROVED, **found.as_record()}
        if found.state == approval.REJECTED:
            raise RegistryError(f"v{target} of {name} was rejected by {found.by} ({found.via}): "
                                f"{found.reason or 'no reason given'}; it will not be deployed")
        raise BusyError(f"v{target} of {name} still awaits approval after {wait_minutes:g} min: approve it with "
                        f"`cmle approve --reason ...` or set the tag {approval_tag}=approved on the version in the "
                        "MLflow / Databricks UI, then run this again (on Databricks: repair the run)")
    wanted = approval.APPROVED if decision == "approve" else approval.REJECTED
    current = approval.state_of(registry.version(name, target).tags, approval_tag)
    if current.state == "none":
        raise RegistryError(f"v{target} of {name} is not awaiting approval: only a challenger that passed the gate "
                            "with `cmle promote --mode approval` is (see `cmle history`)")
    if current.state == wanted and current.via == "cmle approve":
        log.info("approve: v%s of %s was already %s by %s; nothing recorded again", target, name, wanted, current.by)
        return {"model_name": name, "version": target, "status": wanted, **current.as_record()}
    record = approval.record_decision(registry, name, target, wanted, by.strip(), reason, approval_tag)
    log.info("approve: v%s of %s %s by %s: %s. Run `cmle promote --mode approval` to %s", target, name, wanted,
             record["by"], record["reason"], "move the champion" if wanted == approval.APPROVED
             else "record the rejection")
    return {"model_name": name, "version": target, "status": wanted, "by": record["by"], "reason": record["reason"],
            "via": record["via"]}


STAGE = Stage(
    name="approve",
    func=approve,
    params=(
        Param("decision", str, "approve", "approve or reject the version awaiting approval; wait: until someone "
              "does (the approval task of a deployment job)", choices=DECISIONS),
        Param("version", str, "", "the model version; empty: the newest version awaiting approval"),
        Param("by", str, "", "who decides (recorded); default: the user running this"),
        Param("reason", str, "", "why (recorded; required to approve or reject)"),
        Param("approval_tag", str, approval.DEFAULT_APPROVAL_TAG, "the version tag a person sets by hand to approve "
              "(approved/true/yes) or reject (rejected/false/no)"),
        Param("wait_minutes", float, 0.0, "with decision wait: how long to wait for a decision", min=0.0),
        Param("poll_seconds", float, 30.0, "with decision wait: seconds between checks", min=0.0),
        SPEC_PARAM,
    ),
    help="Approve or reject (who and why are recorded) a challenger that passed the gate in promote mode "
         "approval, or wait for a decision; `cmle promote --mode approval` then completes the move.",
    tracked=False,  # the record is on the model version; waiting must not hold the owner's run lock
)
