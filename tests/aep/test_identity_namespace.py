"""On AEP the scores schema's identity descriptor carries the model spec's namespace; a schema of
that title in another namespace is a clear error."""

from __future__ import annotations

import pytest

from cmle import naming
from cmle.errors import PlatformError
from cmle.platform.base import PROFILE


def test_aep_descriptor_carries_the_spec_namespace(aep, double):
    fg = aep.get_or_create_field_group(naming.score_field_group("ann"), {"userid": "string"}, PROFILE)
    schema = aep.get_or_create_schema(naming.score_schema("ann"), PROFILE, [fg], identity_namespace="CRMID")
    (desc,) = [d for d in double.descriptors.values() if d["xdm:sourceSchema"] == schema]
    assert desc["xdm:namespace"] == "CRMID" and desc["xdm:isPrimary"]
    assert aep.get_or_create_schema(naming.score_schema("ann"), PROFILE, [fg], identity_namespace="CRMID") == schema
    with pytest.raises(PlatformError, match="namespace CRMID, not ECID"):
        aep.get_or_create_schema(naming.score_schema("ann"), PROFILE, [fg])
