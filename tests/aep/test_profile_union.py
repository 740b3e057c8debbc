"""The profile union on AEP: a dataset on the XDM Individual Profile union schema filled by a
Segmentation export job (fields the spec reads, the merge policy), polled to completion,
reused while fresh, its older exports reverted. Every request validates against Adobe's
specs (segmentation.yaml, profile.yaml, catalog.yaml: the double fixture checks it)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
import requests

from aep.helpers import ecid, profile_dataset, profiles_table
from cmle import ingestion, naming
from cmle.errors import NotFoundError, PlatformError
from cmle.platform.union import UNION_SCHEMA

FIELDS = ["_cmle.age", "_cmle.region"]


@pytest.fixture
def profiles(aep):
    ds = profile_dataset(aep)
    ingestion.ingest_tables(aep, ds.id, [profiles_table(4)], key="p1", timeout_s=10)
    newer = profiles_table(2, start=2).to_pylist()
    for row in newer:
        row["_cmle"]["age"] = 99  # a newer age for users 2 and 3
    ingestion.ingest_tables(aep, ds.id, [pa.Table.from_pylist(newer, profiles_table(1).schema)], key="p2",
                            timeout_s=10)
    return ds


def _exports(double) -> list[dict]:
    return sorted(double.export_jobs.values(), key=lambda j: j["id"])


def test_union_is_exported_into_an_owner_dataset_on_the_union_schema(aep, double, profiles):
    name = naming.profile_union_dataset("cmle", "k1")
    ds = aep.profile_union(name, FIELDS, timeout_s=10)
    assert ds.name == name and ds.schema_id == UNION_SCHEMA and not ds.profile_enabled
    assert double.datasets[ds.id]["tags"]["cmle/owner"] == ["cmle"]  # cleanup finds it as ours
    [job] = _exports(double)
    assert job["status"] == "SUCCEEDED" and job["fields"] == "identityMap,_cmle.age,_cmle.region"
    assert job["mergePolicy"]["id"] == "timestampOrdered-none-mp"  # the sandbox's default
    assert job["destination"]["datasetId"] == ds.id and job["schema"] == {"name": "_xdm.context.profile"}
    got = aep.query(f"SELECT identityMap['ECID'][0].id AS u, _cmle.age AS age, _cmle.region AS region "
                    f"FROM {ds.table} ORDER BY u")
    assert got["u"].tolist() == [ecid(i) for i in range(4)]
    assert got["age"].tolist() == [20, 21, 99, 99]  # newest value wins
    assert got["region"].tolist() == ["north", "south", "north", "south"]
    polls = [p for p in double.request_paths if p.startswith("/data/core/ups/export/jobs/")]
    assert polls  # the job was polled to its end
    [res] = [r for r in aep.list_resources() if r.kind == "dataset" and r.id == ds.id]
    assert res.owner == "cmle"
    aep.delete_resource(res)  # cleanup deletes it (and never AEP's union schema)
    assert ds.id not in double.datasets


def test_rerun_reuses_a_fresh_export_and_a_stale_one_is_replaced(aep, double, profiles):
    name = naming.profile_union_dataset("cmle", "k1")
    ds = aep.profile_union(name, FIELDS, timeout_s=10)
    assert aep.profile_union(name, FIELDS, fresh_after=time.time() - 60, timeout_s=10) == ds
    assert len(double.export_jobs) == 1 and aep.profile_exports.exports_reused == 1
    # events newer than the export: exported again, the older export's batch reverted
    aep.profile_union(name, FIELDS, fresh_after=time.time() + 1, timeout_s=10)
    assert len(double.export_jobs) == 2
    live = [b for b in aep.list_batches(ds.id) if b.status == "success"]
    assert [b.id for b in live] == [_exports(double)[-1]["destination"]["batchId"]]
    assert len(aep.query(f"SELECT * FROM {ds.table}")) == 4  # one export, no profile twice


def test_merge_policy_is_checked_and_named_in_the_job(aep, double, profiles):
    double.merge_policies["mp-crm"] = {"id": "mp-crm", "name": "CRM first", "version": 1, "default": False,
                                       "schema": {"name": "_xdm.context.profile"}, "identityGraph": {"type": "none"},
                                       "attributeMerge": {"type": "timestampOrdered"}}
    aep.profile_union(naming.profile_union_dataset("cmle", "k2"), FIELDS, merge_policy="mp-crm", timeout_s=10)
    assert _exports(double)[-1]["mergePolicy"]["id"] == "mp-crm"
    with pytest.raises(NotFoundError, match="merge policy 'nope' does not exist"):
        aep.profile_union(naming.profile_union_dataset("cmle", "k3"), FIELDS, merge_policy="nope", timeout_s=10)


def test_failed_export_job_raises(aep, double, profiles):
    double.faults.behave("fail_job")
    with pytest.raises(PlatformError, match="profile export job .* failed"):
        aep.profile_union(naming.profile_union_dataset("cmle", "k1"), FIELDS, timeout_s=10)


def test_double_refuses_an_export_into_a_dataset_not_on_the_union_schema(aep, double, profiles):
    token = double.issue_token()[0]
    r = requests.post(f"{double.url}/data/core/ups/export/jobs", timeout=5,
                      json={"destination": {"datasetId": profiles.id}, "schema": {"name": "_xdm.context.profile"}},
                      headers={"Authorization": f"Bearer {token}", "x-api-key": double.client_id,
                               "x-gw-ims-org-id": double.org_id, "x-sandbox-name": double.sandbox,
                               "Content-Type": "application/json"})
    assert r.status_code == 400 and "union schema" in r.text


def test_featurize_with_a_union_spec_on_aep_equals_featurize_with_the_profiles_dataset(double, tmp_cwd):
    from aep.conftest import aep_env
    from cmle.config import load_settings
    from cmle.modelspec import packaged_spec_text
    from cmle.runner import run_stage

    spec = tmp_cwd / "union.yaml"
    spec.write_text(packaged_spec_text().replace(
        'profiles:\n  identity: {field: "_{tenant}.userid", namespace: ECID}\n', "profiles:\n  union: true\n"))
    settings = load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / 'mlflow.db'}",
                                         CMLE_PLATFORM_LOCAL_ROOT=str(tmp_cwd / "local")))
    run_stage("synthetic", settings, {"profiles": 300, "weeks": 6, "seed": 3})
    params = {"min_positives": 3, "min_negatives": 3, "framing": "pit"}
    keys = ("training_rows", "training_positives", "training_features", "scoring_rows", "snapshot_ts")
    by_dataset = run_stage("featurize", settings, params)
    by_union = run_stage("featurize", settings, {**params, "spec": str(spec), "rebuild": True})
    assert {k: by_union[k] for k in keys} == {k: by_dataset[k] for k in keys}
    assert len(double.export_jobs) == 1
    run_stage("featurize", settings, {**params, "spec": str(spec), "rebuild": True})
    assert len(double.export_jobs) == 1  # the export is newer than the events: reused
