"""Human approval (pending -> approved / rejected), rollback and the history table, on a real
sqlite registry through the command line as a user runs them."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from cmle.cli import run_cli
from cmle.errors import BusyError, RegistryError
from cmle.promotion.approval import APPROVAL_TAG
from cmle.registry import CHAMPION, Registry
from cmle.runner import run_stage
from cmle.stages.promote import ROLLED_BACK_TAG
from tests.model.fabricate import bank, empty_mlflow_db, store  # noqa: F401


@pytest.fixture
def name(settings):
    return settings.cloud.model_name


@pytest.fixture
def pending(store, settings, bank, name):
    """v1 champion; v2 passed the gate in approval mode and awaits approval."""
    bank.register(name, "weak")
    run_stage("promote", settings, {})
    bank.register(name, "strong")
    out = run_stage("promote", settings, {"mode": "approval"})
    assert out["status"] == "pending_approval" and not out["promoted"] and out["champion_version"] == "1"
    assert Registry.current().version(name, "2").tags[APPROVAL_TAG] == "pending"
    return "2"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = run_cli(argv[0], list(argv[1:]))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_approved_then_promote_completes_the_move(pending, settings, name, capsys):
    # promote again while pending: nothing moves, nothing new is recorded
    again = run_stage("promote", settings, {"mode": "approval"})
    assert again["status"] == "pending_approval" and again["champion_version"] == "1"
    assert len(Registry.current().promotion_history(name)) == 2
    code, out, err = _cli(capsys, "approve", "--by", "ann.lee", "--reason", "lift holds on the May campaign")
    assert code == 0, err
    assert json.loads(out)["status"] == "approved" and json.loads(out)["version"] == pending
    done = run_stage("promote", settings, {"mode": "approval"})
    assert done["status"] == "passed" and done["promoted"] and done["champion_version"] == pending
    registry = Registry.current()
    assert registry.version(name, pending).current_stage == "Production"
    last = registry.promotion_history(name)[-1]
    assert last["approval"] == {"state": "approved", "by": "ann.lee", "reason": "lift holds on the May campaign",
                                "via": "cmle approve"}
    assert last["previous_champion"] == "1" and last["comparisons"] and last["request"].startswith("cmle.promotion.")
    # the history table, readable without the MLflow UI
    code, out, _ = _cli(capsys, "history")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"promotion history of {name} (aliases: challenger -> v2, champion -> v2)")
    header = next(line for line in lines if line.startswith("time"))
    assert header.split() == ["time", "version", "decision", "metrics", "approved", "by", "evidence"]
    rows = lines[lines.index(header) + 2:]
    assert [r.split()[2] for r in rows] == ["v1", "v2", "v2", "v2"]
    assert "passed, awaiting approval" in rows[1] and "approved" in rows[2] and "ann.lee" in rows[2]
    assert "promoted (replaced v1)" in rows[3] and "ann.lee" in rows[3] and "holdout" in rows[3]


def test_rejected_nothing_moves_and_the_rejection_is_recorded(pending, settings, name, capsys):
    code, _, err = _cli(capsys, "approve", "--decision", "reject", "--reason", "ECE too high for the bids")
    assert code == 0, err
    out = run_stage("promote", settings, {"mode": "approval"})
    assert out["status"] == "rejected" and not out["promoted"] and out["champion_version"] == "1"
    assert "ECE too high for the bids" in out["reason"]
    history = Registry.current().promotion_history(name)
    assert [h.get("decision", h.get("status")) for h in history] == ["passed", "passed", "rejected", "rejected"]
    # once recorded, promote does not record it again
    assert run_stage("promote", settings, {"mode": "approval"})["status"] == "rejected"
    assert len(Registry.current().promotion_history(name)) == 4
    assert Registry.current().aliases(name)[CHAMPION] == "1"


def test_the_tag_set_by_hand_in_the_ui_approves(pending, settings, name):
    MlflowClient().set_model_version_tag(name, pending, "approved", "True")
    out = run_stage("promote", settings, {"mode": "approval"})
    assert out["promoted"] and out["champion_version"] == pending
    approval = Registry.current().promotion_history(name)[-1]["approval"]
    assert approval["via"] == "registry tag approved=True" and "registry UI" in approval["by"]


def test_the_approval_task_waits_for_the_tag(pending, settings, name):
    with pytest.raises(BusyError, match="still awaits approval after 0 min.*tag approval=approved"):
        run_stage("approve", settings, {"decision": "wait", "approval_tag": "approval"})
    # the Approve button of a Databricks deployment job sets <approval task name> = Approved
    MlflowClient().set_model_version_tag(name, pending, "approval", "Approved")
    out = run_stage("approve", settings, {"decision": "wait", "approval_tag": "approval", "wait_minutes": 1})
    assert out["status"] == "approved" and out["version"] == pending
    assert run_stage("promote", settings, {"mode": "approval", "approval_tag": "approval"})["promoted"]


def test_approve_needs_a_pending_version_and_a_reason(store, settings, bank, name, capsys):
    bank.register(name, "noise")
    run_stage("promote", settings, {"mode": "approval"})  # refused by the gate: nothing to approve
    with pytest.raises(RegistryError, match="no version .* awaits approval.*last decision: v1 failed"):
        run_stage("approve", settings, {"reason": "x"})
    code, _, err = _cli(capsys, "approve", "--version", "1", "--reason", "x")
    assert code == 2 and "v1 of" in err and "is not awaiting approval" in err


def test_rollback_returns_to_the_previous_champion_and_keeps_it(store, settings, bank, name, capsys):
    bank.register(name, "weak")
    run_stage("promote", settings, {})
    bank.register(name, "strong")
    assert run_stage("promote", settings, {})["champion_version"] == "2"
    code, out, err = _cli(capsys, "promote", "--rollback", "--by", "oncall", "--reason", "scores drifted in prod")
    assert code == 0, err
    result = json.loads(out)
    assert (result["status"], result["champion_version"], result["previous_champion"]) == ("rolled_back", "1", "2")
    registry = Registry.current()
    assert registry.aliases(name)[CHAMPION] == "1"
    assert registry.version(name, "1").current_stage == "Production"
    assert registry.version(name, "2").current_stage == "Archived"
    last = registry.promotion_history(name)[-1]
    assert (last["action"], last["version"], last["rolled_back"], last["by"], last["state"]) == (
        "rollback", "1", "2", "oncall", "done")
    assert json.loads(registry.version(name, "2").tags[ROLLED_BACK_TAG])["reason"] == "scores drifted in prod"
    # the rolled-back version is not promoted again by the next run
    again = run_stage("promote", settings, {})
    assert again["status"] == "failed" and "was rolled back" in again["reason"] and again["champion_version"] == "1"
    # v1 was the first champion: nothing earlier to go back to
    with pytest.raises(RegistryError, match="v1 was the first champion"):
        run_stage("promote", settings, {"rollback": True})
    code, out, _ = _cli(capsys, "history", "--last", "2")
    assert "rollback v2 -> v1" in out and "oncall" in out
