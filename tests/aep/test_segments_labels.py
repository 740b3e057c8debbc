"""Audiences (segment definitions from PQL, evaluation jobs, activation to a configured
destination dataflow) and data usage labels."""

from __future__ import annotations

import pytest

from aep.helpers import SCORE_FIELDS, scores_table
from cmle import ingestion, naming
from cmle.errors import PlatformError
from cmle.platform.base import PROFILE

RULE = "_cmle.propensity >= 0.5 and _cmle.propensity <= 0.95"


@pytest.fixture
def scored(aep):
    fg = aep.get_or_create_field_group(naming.score_field_group("cmle"), SCORE_FIELDS, PROFILE)
    schema = aep.get_or_create_schema(naming.score_schema("cmle"), PROFILE, [fg], profile_enabled=True)
    ds = aep.get_or_create_dataset(naming.scores_dataset("cmle"), schema, profile_enabled=True)
    scores = {f"u{i:04d}": i / 10 for i in range(10)}  # 0.0 .. 0.9
    ingestion.ingest_tables(aep, ds.id, [scores_table(scores)], key="scores", timeout_s=10)
    return ds


def test_audience_get_or_create_and_update(aep, double):
    name = naming.audience("high", "cmle")
    a = aep.get_or_create_audience(name, RULE, "high propensity")
    assert aep.get_or_create_audience(name, RULE, "high propensity") == a
    assert len(double.segments) == 1
    seg = double.segments[a.id]
    assert seg["expression"] == {"type": "PQL", "format": "pql/text", "value": RULE}
    assert seg["schema"] == {"name": "_xdm.context.profile"}
    b = aep.get_or_create_audience(name, "_cmle.propensity >= 0.8", "top")
    assert b.id == a.id and double.segments[a.id]["expression"]["value"] == "_cmle.propensity >= 0.8"
    assert len(double.segments) == 1


def test_evaluation_counts_qualified_profiles(aep, scored):
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    low = aep.get_or_create_audience(naming.audience("low", "cmle"), "_cmle.propensity < 0.2")
    assert aep.evaluate_audiences([a.id, low.id], timeout_s=10) == {a.id: 5, low.id: 2}


def test_failed_evaluation_job_raises(aep, double, scored):
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    double.faults.behave("fail_job")
    with pytest.raises(PlatformError, match="ended FAILED"):
        aep.evaluate_audiences([a.id], timeout_s=10)


def test_activation_maps_the_audience_into_the_destination_flow(aep, double, scored):
    import time

    double.flows["dest1"] = {
        "id": "dest1", "name": "Audience exports", "flowSpec": {"id": "cd2fc47e-e838-4f38-a581-8fff2f99b63a"},
        "sourceConnectionIds": [], "targetConnectionIds": [], "etag": '"e1"', "state": "enabled",
        "createdAt": int(time.time() * 1000), "updatedAt": 0,
        "transformations": [{"name": "GeneralTransform", "params": {"segmentSelectors": {"selectors": []},
                                                                     "profileSelectors": {"selectors": []}}}]}
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    act = aep.activate_audience(a, "Audience exports", ["propensity"])
    assert act.status == "success" and act.members == 5, act.detail
    params = double.flows["dest1"]["transformations"][0]["params"]
    assert [s["value"]["id"] for s in params["segmentSelectors"]["selectors"]] == [a.id]
    assert {s["value"]["path"] for s in params["profileSelectors"]["selectors"]} == {"_cmle.userid", "_cmle.propensity"}
    assert (double.landing_zone / "activations" / "dest1" / f"{a.id}.parquet").exists()
    again = aep.activate_audience(a, "Audience exports", ["propensity"])
    assert again.status == "success"
    assert len(double.flows["dest1"]["transformations"][0]["params"]["segmentSelectors"]["selectors"]) == 1


def test_activation_without_destination_says_what_to_set_up(aep):
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    act = aep.activate_audience(a, "No such destination", [])
    assert act.status == "failed" and "set up a batch (file-based) destination" in act.detail


def test_labels_round_trip(aep, double, scored):
    assert aep.get_labels(scored.id) == set()
    aep.set_labels(scored.id, {"C9"})
    assert aep.get_labels(scored.id) == {"C9"}
    aep.set_labels(scored.id, {"C1", "C2"})
    assert aep.get_labels(scored.id) == {"C1", "C2"}
    body, _ = double.labels[scored.id]
    assert body["labels"] == ["C1", "C2"]


def test_field_labels_count_too(aep, double, scored):
    double.labels[scored.id] = ({"labels": [], "optionalLabels": [{"option": {"schemaPath": "/properties/x"},
                                                                   "labels": ["PSPD"]}]}, '"e"')
    assert aep.get_labels(scored.id) == {"PSPD"}
