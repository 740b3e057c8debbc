"""Dataset export through Flow Service to the landing zone: get-or-create of connections and
flow, ad-hoc run retried while "not ready", the run waited to its terminal status, the
files found in the AEP layout and read with fsspec."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from aep.helpers import ecid, profile_dataset, profiles_table
from cmle import ingestion, naming, storage
from cmle.errors import ConfigError, PlatformError
from cmle.platform.aep.flows import ExportService, landing_zone_location


@pytest.fixture
def feature_set(aep):
    people = profile_dataset(aep)
    ingestion.ingest_tables(aep, people.id, [profiles_table(12)], key="p", timeout_s=10)
    return aep.create_table_as("cmle_training_set_cmle", f"SELECT _cmle.userid AS userid, _cmle.age AS age "
                                                          f"FROM {people.table}", timeout_s=10)


def test_export_writes_the_aep_layout(aep, double, feature_set):
    res = aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    assert res.rows == 12 and res.files
    assert res.url.startswith(str(double.landing_zone / "cmle" / "egress" / feature_set.id / "exportTime="))
    table = storage.read_export(res.url)
    assert sorted(table.column("userid").to_pylist())[:2] == [ecid(0), ecid(1)]
    assert pq.ParquetFile(res.files[0]).metadata.row_group(0).column(0).compression == "GZIP"
    newest = storage.newest_export(str(double.landing_zone), "cmle/egress", feature_set.id)
    assert newest.url == res.url
    (flow,) = double.flows.values()
    assert flow["flowSpec"]["id"] == "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
    (target,) = double.target_connections.values()
    assert target["params"] == {"mode": "Server-to-server", "path": "cmle/egress", "compression": "GZIP",
                                "datasetFileType": "PARQUET"}
    (base,) = double.connections.values()
    assert base["connectionSpec"]["id"] == "10440537-2a7b-4583-ac39-ed38d4b848e8"


def test_export_again_reuses_the_flow_and_makes_a_new_folder(aep, double, feature_set):
    first = aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    second = aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    assert second.export_time > first.export_time
    assert (len(double.flows), len(double.connections), len(double.source_connections),
            len(double.target_connections)) == (1, 1, 1, 1)
    assert len(double.runs) == 2


def test_flow_follows_a_recreated_dataset(aep, double, feature_set):
    aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    again = aep.create_table_as("cmle_training_set_cmle", "SELECT 'x' AS userid, 1 AS age", timeout_s=10)
    assert again.id != feature_set.id
    res = aep.export_dataset(again.id, "cmle/egress", timeout_s=20)
    assert res.rows == 1
    assert len(double.flows) == 1 and len(double.source_connections) == 1
    (src,) = double.source_connections.values()
    assert src["params"]["datasets"][0]["dataSetId"] == again.id
    assert double.duplicates() == {}


def test_not_ready_flow_is_retried(aep, double, feature_set):
    double.faults.behave("not_ready", times=3)
    res = aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    assert res.rows == 12
    assert double.faults.injected["not_ready"] == 3
    assert len(double.runs) == 1


def test_run_that_never_finishes_fails_with_a_clear_error(aep, double, feature_set):
    double.faults.behave("hang_run")
    with pytest.raises(PlatformError, match="did not finish in time .* re-run the stage later"):
        aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=1.0)


def test_failed_run_reports_the_platform_error(aep, double, feature_set):
    double.faults.behave("fail_run")
    with pytest.raises(PlatformError, match="ended failed: EXPORT-500"):
        aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)


def test_landing_zone_credentials_locate_the_files(aep, double):
    import fsspec.config

    url = aep.configure_landing_zone()
    assert url == "abfs://dlz-destination@cmledoubledlz.dfs.core.windows.net"
    assert fsspec.config.conf["abfs"]["sas_token"] == double.dlz_sas_token
    from cmle import redact

    assert double.dlz_sas_token not in redact.scrub(f"url {double.dlz_sas_token}")


def test_aws_landing_zone_shape():
    lz = landing_zone_location({"dlzProvider": "Amazon S3", "dlzPath": {"bucketName": "b", "dlzFolder": "f/g"},
                                "credentials": {"awsAccessKeyId": "AKIA", "awsSecretAccessKey": "secret-key-123",
                                                "awsSessionToken": "session-token-123"}})
    assert (lz.url, lz.protocol) == ("s3://b/f/g", "s3")
    assert lz.options == {"key": "AKIA", "secret": "secret-key-123", "token": "session-token-123"}
    with pytest.raises(PlatformError, match="unrecognised landing-zone credentials"):
        landing_zone_location({"foo": 1})


def test_cloud_destinations_need_a_base_connection(aep):
    with pytest.raises(ConfigError, match="destination_connection_id"):
        ExportService(aep.client, aep.catalog, "cmle", destination="s3")
    svc = ExportService(aep.client, aep.catalog, "cmle", destination="s3", base_connection_id="abc",
                        storage_url="s3://my-bucket/exports")
    assert svc._target_params("cmle/egress", "parquet", "gzip")["bucketName"] == "my-bucket"
    assert svc._target_params("cmle/egress", "parquet", "gzip")["path"] == "exports/cmle/egress"


def _adhoc_calls(double) -> int:
    return sum(1 for _m, k, _s in double.calls if k == "POST /data/core/activation/disflowprovider/adhocrun")


def test_not_ready_is_waited_out_with_growing_pauses(aep, double, feature_set):
    """AEP answers "not ready, wait about 10 minutes" for a new dataflow; the adapter backs
    off instead of asking every poll interval (30 asks at a fixed 20 ms over 0.6 s)."""
    double.flow_ready_s = 0.6
    res = aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    assert res.rows == 12
    assert 2 <= _adhoc_calls(double) <= 8
    assert aep.exports.not_ready_waits == _adhoc_calls(double) - 1


def test_a_flow_that_stays_not_ready_ends_with_when_to_re_run(aep, double, feature_set):
    double.flow_ready_s = 60.0
    aep.exports.ready_wait_s = 0.5
    with pytest.raises(PlatformError, match="still not ready .* about 10 minutes .* re-run export"):
        aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=0.2)


def test_a_rebuilt_feature_set_keeps_its_dataset_and_its_ready_flow(aep, double, feature_set):
    """A featurize rebuild writes new rows into the same dataset, so the dataflow made for it
    stays valid and the "new dataflow, wait 10 minutes" does not come back."""
    double.flow_ready_s = 0.3
    aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=20)
    (flow_id,) = double.flows
    waits = aep.exports.not_ready_waits
    people = aep.find_dataset(naming.profiles_dataset("cmle"))
    rebuilt = aep.create_table_as("cmle_training_set_cmle", f"SELECT _cmle.userid AS userid, _cmle.age AS age "
                                                            f"FROM {people.table} WHERE _cmle.age < 25", timeout_s=10)
    assert rebuilt.id == feature_set.id
    double.flow_ready_s = 3600.0  # a new flow would now wait for an hour
    res = aep.export_dataset(rebuilt.id, "cmle/egress", timeout_s=20)
    assert res.rows == 5
    assert list(double.flows) == [flow_id] and aep.exports.not_ready_waits == waits


def test_a_new_flows_readiness_wait_fits_whatever_the_export_timeout(aep, double, feature_set):
    """AEP's "wait about 10 minutes" for a new dataflow has its own allowance: the export's
    default timeout_s (600 s, shared with the query stages) is left for the run itself."""
    from cmle.platform.aep.flows import FLOW_READY_S
    from cmle.stages.export import STAGE

    assert aep.exports.ready_wait_s >= FLOW_READY_S + 60
    (timeout,) = [p for p in STAGE.params if p.name == "timeout_s"]
    assert timeout.default <= FLOW_READY_S  # which is why the readiness wait cannot come out of it
    double.flow_ready_s = 0.5
    aep.exports.ready_wait_s = 5.0
    assert aep.export_dataset(feature_set.id, "cmle/egress", timeout_s=0.2).rows == 12
