"""Fault injection: 429 (with Retry-After), 500, 503, timeouts, dropped connections and late
answers at every call, a failing batch, a failing query, a flow run that never finishes, a
dropped Query Service session.

Each run goes through a small pipeline that uses every kind of call the adapter makes
(XDM set-up, batch ingestion, interactive query, CTAS, export, audience evaluation and
activation, labels, reading back). The pipeline must complete, or fail with a clear error
where the fault demands it and then complete on a re-run; afterwards the double must hold
no duplicate schema, dataset, batch, flow or segment. The tally is printed at the end.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from aep.conftest import aep_env
from aep.helpers import (SCORE_FIELDS, ecid, events_dataset, events_table, profile_dataset, profiles_table,
                         scores_table)
from cmle import ingestion, naming
from cmle.config import load_settings
from cmle.errors import BatchFailedError, PlatformError, QueryError
from cmle.platform.aep import AEPPlatform
from cmle.platform.base import PROFILE

FAST_TIMEOUT = "0.3"  # seconds per request in these runs; the double holds "timeout" answers 0.45 s
FAST_LOOKUP = "0.3"  # seconds a lost creation is looked up; "late" requests run 0.15 s late
TALLY: Counter = Counter()
INJECTED: Counter = Counter()


def tally_lines() -> list[str]:
    """The tally, printed at the end of the test session (see conftest.pytest_terminal_summary)."""
    if not (TALLY or INJECTED):
        return []
    return ["AEP fault-injection tally",
            f"  faults injected: {sum(INJECTED.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(INJECTED.items()))})",
            f"  pipeline runs completed: {TALLY['runs_completed']}",
            f"  runs failed with a clear error as the fault demanded: {TALLY['clear_failures']}",
            f"  adapter retries: {TALLY['retries']}; creations found after a lost answer: "
            f"{TALLY['found_after_failure']}; Query Service reconnects: {TALLY['reconnects']}",
            f"  early retries (before Retry-After): {TALLY['early_retries']}; duplicates found: {TALLY['duplicates']}"]


def _platform(double) -> AEPPlatform:
    double.hang_s = 0.45
    double.late_s = 0.15
    return AEPPlatform.from_settings(load_settings(env=aep_env(double, CMLE_PLATFORM_REQUEST_TIMEOUT=FAST_TIMEOUT,
                                                               CMLE_PLATFORM_CREATE_LOOKUP_S=FAST_LOOKUP)))


def _destination(double) -> None:
    """An activation dataflow set up once in the sandbox (as a user does in the UI)."""
    double.flows.setdefault("dest1", {
        "id": "dest1", "name": "Audience exports", "flowSpec": {"id": "cd2fc47e-e838-4f38-a581-8fff2f99b63a"},
        "sourceConnectionIds": [], "targetConnectionIds": [], "etag": '"e1"', "state": "enabled",
        "createdAt": int(time.time() * 1000), "updatedAt": 0,
        "transformations": [{"name": "GeneralTransform", "params": {"segmentSelectors": {"selectors": []},
                                                                     "profileSelectors": {"selectors": []}}}]})


def pipeline(aep: AEPPlatform, double) -> None:
    """Every kind of call the adapter makes, checked by its results."""
    people = profile_dataset(aep)
    events = events_dataset(aep)
    ingestion.ingest_tables(aep, people.id, [profiles_table(20)], key="people", timeout_s=30)
    ingestion.ingest_tables(aep, events.id, [events_table(10)], key="events", timeout_s=30)
    assert aep.query(f"SELECT COUNT(*) AS n FROM {events.table}")["n"][0] == 30
    training = aep.create_table_as(
        "cmle_training_set_cmle", f"SELECT _cmle.userid AS userid, _cmle.age AS age FROM {people.table}",
        timeout_s=30)
    assert aep.export_dataset(training.id, "cmle/egress", timeout_s=30).rows == 20
    fg = aep.get_or_create_field_group(naming.score_field_group("cmle"), SCORE_FIELDS, PROFILE)
    schema = aep.get_or_create_schema(naming.score_schema("cmle"), PROFILE, [fg], profile_enabled=True)
    scores = aep.get_or_create_dataset(naming.scores_dataset("cmle"), schema, profile_enabled=True)
    ingestion.ingest_tables(aep, scores.id, [scores_table({ecid(i): i / 20 for i in range(20)})],
                            key="scores", replace=True, timeout_s=30)
    audience = aep.get_or_create_audience(naming.audience("high", "cmle"), "_cmle.propensity >= 0.5")
    assert aep.evaluate_audiences([audience.id], timeout_s=30) == {audience.id: 10}
    _destination(double)
    act = aep.activate_audience(audience, "Audience exports", ["propensity"])
    assert act.status == "success" and act.members == 10, act.detail
    aep.set_labels(training.id, {"C1"})
    assert aep.get_labels(training.id) == {"C1"}
    assert aep.read_dataset(people.id).num_rows == 20
    assert len(aep.profile_attributes(["propensity", "age"])) == 20


def _account(aep: AEPPlatform, double) -> None:
    INJECTED.update(double.faults.injected)
    INJECTED.update({f"wire:{k}": v for k, v in double.wire_faults_used().items()})
    stats = aep.client.transport.stats
    TALLY["retries"] += stats["retries"]
    TALLY["found_after_failure"] += stats["creations_found_after_failure"]
    TALLY["reconnects"] += aep.queries.reconnects
    dups = double.duplicates()
    TALLY["duplicates"] += sum(len(v) for v in dups.values())
    TALLY["early_retries"] += len(double.early_retries)
    assert dups == {}, f"duplicates on the double: {dups}"


@pytest.mark.parametrize("kind", ["429", "500", "503", "timeout", "drop", "drop_before", "late"])
def test_fault_at_the_first_call_of_every_operation(double, tmp_cwd, kind):
    aep = _platform(double)
    double.faults.every_operation(kind)
    double.wire_fault("drop_interactive")
    try:
        pipeline(aep, double)
        TALLY["runs_completed"] += 1
        assert len(double.faults.seen_ops) >= 40  # every operation the pipeline uses got the fault
        assert aep.queries.reconnects >= 1
    finally:
        _account(aep, double)
        aep.close()


def test_random_faults_everywhere(double, tmp_cwd):
    aep = _platform(double)
    double.faults.random(0.2, seed=7)
    try:
        for _ in range(2):
            pipeline(aep, double)
            TALLY["runs_completed"] += 1
    finally:
        _account(aep, double)
        aep.close()


@pytest.mark.parametrize("behaviour,error,match", [
    ("fail_batch", BatchFailedError, "INGEST-1290-500"),
    ("fail_query", QueryError, "58000"),
    ("hang_run", PlatformError, "did not finish in time"),
    ("fail_job", PlatformError, "ended FAILED"),
])
def test_failing_steps_fail_clearly_then_rerun_completes(double, tmp_cwd, behaviour, error, match):
    aep = _platform(double)
    double.faults.random(0.1, seed=11)
    try:
        double.faults.behave(behaviour)
        if behaviour == "hang_run":
            # A run that never finishes: the export gives up at its deadline.
            people = profile_dataset(aep)
            ingestion.ingest_tables(aep, people.id, [profiles_table(20)], key="people", timeout_s=30)
            training = aep.create_table_as("cmle_training_set_cmle",
                                           f"SELECT _cmle.userid AS userid FROM {people.table}", timeout_s=30)
            with pytest.raises(error, match=match):
                aep.export_dataset(training.id, "cmle/egress", timeout_s=2.0)
        else:
            with pytest.raises(error, match=match):
                pipeline(aep, double)
        TALLY["clear_failures"] += 1
        pipeline(aep, double)
        TALLY["runs_completed"] += 1
    finally:
        _account(aep, double)
        aep.close()
