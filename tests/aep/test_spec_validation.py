"""The double holds every request to Adobe's OpenAPI specs: a request that does not validate
is refused and recorded (and the fixtures fail any test that sent one). Also the
adapter's creating POSTs are never blindly retried."""

from __future__ import annotations

import json

import pytest

from aep.double.specs import SpecViolation
from aep.helpers import profile_dataset
from cmle.platform.aep import AEPError

H = {"Authorization": "Bearer t", "x-api-key": "k", "x-gw-ims-org-id": "o@AdobeOrg", "x-sandbox-name": "dev",
     "Content-Type": "application/json", "Accept": "application/json"}


@pytest.fixture
def specs():
    from aep.double.server import spec_registry

    return spec_registry()


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("path,method,headers,body,problem", [
    ("/data/foundation/import/batches", "POST", H, {"datasetId": "d", "inputFormat": {"format": "parquet"}},
     "is not one of ['JSON', 'Parquet', 'CSV']"),
    ("/data/foundation/import/batches", "POST", H, {"inputFormat": {"format": "Parquet"}}, "'datasetId' is a required"),
    ("/data/foundation/schemaregistry/tenant/schemas", "POST", H,
     {"type": "object", "title": "t", "allOf": [{"$ref": "x"}]}, "'description' is a required property"),
    ("/data/foundation/schemaregistry/stats", "GET", {k: v for k, v in H.items() if k != "x-api-key"}, None,
     "Missing required header parameter: x-api-key"),
    ("/data/foundation/catalog/dataSets/x", "POST", H, {}, "method not in the spec"),
    ("/data/foundation/nowhere", "GET", H, None, "no operation in the AEP specs"),
    ("/data/core/activation/disflowprovider/adhocrun", "POST", H, {"activationInfo": {"destinations": []}},
     "adhocrun"),
])
def test_invalid_requests_are_refused(specs, path, method, headers, body, problem):
    with pytest.raises(SpecViolation) as err:
        specs.validate(path, method, headers, "", _body(body) if body is not None else None)
    assert problem in str(err.value)


def test_valid_requests_pass_swagger_and_openapi_specs(specs):
    op, params = specs.validate("/data/foundation/schemaregistry/tenant/schemas/https%3A%2F%2Fns.adobe.com%2Fx",
                                "GET", H, "", None)
    assert op.spec == "schema-registry.yaml" and op.operation_id == "retrieveSchema"
    assert list(params.values()) == ["tenant", "https%3A%2F%2Fns.adobe.com%2Fx"]
    op, _ = specs.validate("/data/foundation/flowservice/sourceConnections", "POST", H, "",
                           _body({"name": "n", "data": {"format": "parquet"},
                                  "connectionSpec": {"id": "x", "version": "1.0"}}))
    assert op.spec in ("destinations.yaml", "flow-service.yaml")


def test_the_double_refuses_and_records_a_violation(aep, double):
    with pytest.raises(AEPError, match="does not match the AEP API spec"):
        aep.client.transport.request("POST", aep.client.url("ingestion", "/batches"), safe=False,
                                     json={"datasetId": "d", "inputFormat": {"format": "parquet"}})
    assert len(double.violations) == 1
    double.violations.clear()  # this test sent it on purpose


def test_creating_post_is_looked_up_not_repeated(aep, double):
    aep.tenant_id
    double.faults.add("timeout", method="POST", path="/tenant/schemas")  # processed, answer lost
    double.faults.add("503", method="POST", path="/tenant/fieldgroups")  # refused, not processed
    profile_dataset(aep)
    posts = [c for c in double.calls if c[0] == "POST" and c[1].endswith(("/tenant/schemas", "/tenant/fieldgroups"))]
    assert [c[1].rsplit("/", 1)[-1] for c in posts].count("schemas") == 1  # found after the lost answer
    assert [c[1].rsplit("/", 1)[-1] for c in posts].count("fieldgroups") == 2  # 503 then a retry
    assert len(double.schemas) == 1 and len(double.fieldgroups) == 1
    assert aep.client.transport.stats["creations_found_after_failure"] == 1
