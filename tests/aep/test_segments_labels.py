"""Audiences (segment definitions from PQL, evaluation jobs, activation to a configured
destination dataflow) and data usage labels."""

from __future__ import annotations

import pytest

from aep.helpers import SCORE_FIELDS, ecid, scores_table
from cmle import ingestion, naming
from cmle.errors import PlatformError
from cmle.platform.base import PROFILE

RULE = "_cmle.propensity >= 0.5 and _cmle.propensity <= 0.95"


@pytest.fixture
def scored(aep):
    fg = aep.get_or_create_field_group(naming.score_field_group("cmle"), SCORE_FIELDS, PROFILE)
    schema = aep.get_or_create_schema(naming.score_schema("cmle"), PROFILE, [fg], profile_enabled=True)
    ds = aep.get_or_create_dataset(naming.scores_dataset("cmle"), schema, profile_enabled=True)
    scores = {ecid(i): i / 10 for i in range(10)}  # 0.0 .. 0.9
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


def _destination_flow(double) -> None:
    from aep.test_faults import _destination

    _destination(double)


def test_unchanged_audiences_reuse_their_evaluation_job(aep, double, scored):
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    first = aep.evaluate_audiences([a.id], timeout_s=10)
    assert aep.evaluate_audiences([a.id], timeout_s=10) == first == {a.id: 5}
    assert len(double.jobs) == 1  # nothing changed: the job is reused, not created again
    # New scores (a new Profile batch, the old one reverted): a new job.
    ingestion.ingest_tables(aep, scored.id, [scores_table({ecid(i): 0.9 for i in range(10)})], key="s2",
                            replace=True, timeout_s=10)
    assert aep.evaluate_audiences([a.id], timeout_s=10) == {a.id: 10}
    assert len(double.jobs) == 2
    # A changed rule: a new job.
    aep.get_or_create_audience(naming.audience("high", "cmle"), "_cmle.propensity >= 0.95")
    assert aep.evaluate_audiences([a.id], timeout_s=10) == {a.id: 0}
    assert len(double.jobs) == 3
    assert aep.audiences.jobs_reused == 1


def test_definitions_are_listed_by_following_the_apis_paging(aep, double):
    import threading

    for i in range(3):
        aep.get_or_create_audience(naming.audience(f"r{i}", "cmle"), "_cmle.propensity >= 0.5")
    for i in range(102):  # more than one page of 100 in all (others' audiences, made in the UI)
        double.segments[f"seg{i:03d}"] = {
            "id": f"seg{i:03d}", "name": f"other {i}", "creationTime": 2 * 10**12 + i, "updateTime": 0,
            "expression": {"type": "PQL", "format": "pql/text", "value": "_cmle.propensity >= 0.1"},
            "schema": {"name": "_xdm.context.profile"}, "profileInstanceId": "ups"}
    result: list = []
    worker = threading.Thread(target=lambda: result.append(aep.audiences.list_definitions()), daemon=True)
    worker.start()
    worker.join(timeout=20)  # adding 100 to `start` (a created-time offset) never ended
    assert result, "listing the segment definitions did not end"
    (listed,) = result
    assert len(listed) == 105 and len({s["id"] for s in listed}) == 105
    aep.audiences.page_size = 7
    assert {s["id"] for s in aep.audiences.list_definitions()} == {s["id"] for s in listed}


def test_activation_requests_follow_the_destination_specs(aep, double, scored):
    """The dataflow PATCH that maps an audience and the ad-hoc activation run are held to
    destinations.yaml (patchFlowById) and ad-hoc-activation.yaml, not just to one of the
    specs that share the path."""
    import json

    import jsonschema

    from aep.double.specs import spec_dir
    from cmle.platform.aep.segments import segment_selector_ops

    _destination_flow(double)
    a = aep.get_or_create_audience(naming.audience("high", "cmle"), RULE)
    assert aep.activate_audience(a, "Audience exports", ["propensity"]).status == "success"
    keys = [k for _m, k, status in double.calls if status < 400]
    assert "PATCH /data/foundation/flowservice/flows/{id}" in keys  # the destinations.yaml operation
    assert "POST /data/core/activation/disflowprovider/adhocrun" in keys

    import yaml

    dest = yaml.safe_load((spec_dir() / "destinations.yaml").read_text())
    schemas = dest["components"]["schemas"]
    item = json.loads(json.dumps(schemas["PatchFlowItem"]))
    item["properties"]["value"]["anyOf"] = item["properties"]["value"].pop("oneOf")  # three selectors overlap
    patch = {"type": "array", "items": item, "components": {"schemas": schemas}}
    ops = segment_selector_ops(a, "cmle", {"transformations": [{"params": {}}]}, ["propensity"])
    jsonschema.validate(ops, patch)
    segment = ops[0]["value"]["value"]
    assert ops[0]["op"] == "add" and segment["exportMode"] == "DAILY_FULL_EXPORT"
    assert segment["schedule"]["triggerType"] == "SCHEDULED" and segment["schedule"]["startTime"].endswith(":00")
    adhoc = yaml.safe_load((spec_dir() / "ad-hoc-activation.yaml").read_text())
    v2 = dict(adhoc["components"]["schemas"]["adhocActivationRequestV2"], components=adhoc["components"])
    jsonschema.validate({"activationInfo": {"dest1": [a.id]}}, v2)


def test_the_double_refuses_an_activation_patch_in_another_shape(aep, double):
    import requests

    _destination_flow(double)
    token = aep.client.transport.tokens.token()
    headers = {**aep.client.transport.headers, "Authorization": f"Bearer {token}", "If-Match": '"e1"',
               "Content-Type": "application/json"}
    upper = [{"op": "ADD", "path": "/transformations/0/params/segmentSelectors/selectors/-",
              "value": {"type": "PLATFORM_SEGMENT", "value": {"id": "s1", "exportMode": "DAILY_FULL_EXPORT"}}}]
    resp = requests.patch(aep.client.url("flow", "/flows/dest1"), json=upper, headers=headers, timeout=5)
    assert resp.status_code == 400 and "destinations.yaml" in resp.text
    double.violations.clear()  # refused on purpose
