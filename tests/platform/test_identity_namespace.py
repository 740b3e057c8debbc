"""The scores schema's primary identity is in the model spec's namespace (ECID, CRMID, ...);
a schema of that title in another namespace is a clear error (AEP: tests/aep/test_identity_namespace.py)."""

from __future__ import annotations

import pytest

from cmle.errors import PlatformError
from cmle.stages.ingest import scores_dataset


def test_local_scores_schema_declares_the_spec_namespace(platform):
    ds = scores_dataset(platform, "ann", namespace="CRMID")
    assert scores_dataset(platform, "ann", namespace="CRMID") == ds  # get-or-create
    (schema,) = [r for r in platform.list_resources() if r.kind == "schema"]
    assert platform._resource("schema", schema.id)["namespace"] == "CRMID"
    with pytest.raises(PlatformError, match="namespace CRMID, not ECID"):
        scores_dataset(platform, "ann", namespace="ECID")
