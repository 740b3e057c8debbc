"""XDM resources and datasets: get-or-create by title/name, never a duplicate; identity
descriptors, Profile enablement and the notebooks' ExperienceEvent field groups."""

from __future__ import annotations

import pytest

from aep.helpers import OWNER, PROFILE_FIELDS, events_dataset, profile_dataset
from cmle import naming
from cmle.errors import NotFoundError, PlatformError
from cmle.platform.aep.xdm import EE_STANDARD_FIELD_GROUPS
from cmle.platform.base import PROFILE


def test_get_or_create_twice_creates_once(aep, double):
    first = profile_dataset(aep)
    again = profile_dataset(aep)
    assert first == again
    assert (len(double.fieldgroups), len(double.schemas), len(double.descriptors), len(double.datasets)) == (1, 1, 1, 1)
    assert double.duplicates() == {}


def test_schema_has_primary_ecid_identity_and_profile_union(aep, double):
    ds = profile_dataset(aep)
    (desc,) = double.descriptors.values()
    assert desc["xdm:sourceSchema"] == ds.schema_id
    assert desc["xdm:sourceProperty"] == "/_cmle/userid"
    assert desc["xdm:namespace"] == "ECID" and desc["xdm:isPrimary"] is True
    assert "union" in double.schemas[ds.schema_id]["meta:immutableTags"]
    assert ds.profile_enabled and double.datasets[ds.id]["tags"]["unifiedProfile"] == ["enabled:true"]
    assert ds.table == double.datasets[ds.id]["tags"]["adobe/pqs/table"][0]


def test_event_schema_carries_the_standard_field_groups(aep, double):
    ds = events_dataset(aep)
    refs = [r["$ref"] for r in double.schemas[ds.schema_id]["allOf"]]
    assert refs[0] == "https://ns.adobe.com/xdm/context/experienceevent"
    assert set(EE_STANDARD_FIELD_GROUPS) <= set(refs)
    assert not ds.profile_enabled


def test_field_group_gains_new_fields(aep, double):
    fg = aep.get_or_create_field_group(naming.profile_field_group(OWNER), {"userid": "string"}, PROFILE)
    same = aep.get_or_create_field_group(naming.profile_field_group(OWNER), PROFILE_FIELDS, PROFILE)
    assert same == fg
    props = double.fieldgroups[fg]["definitions"]["customFields"]["properties"]["_cmle"]["properties"]
    assert set(props) == set(PROFILE_FIELDS)


def test_existing_dataset_is_enabled_for_profile(aep, double):
    fg = aep.get_or_create_field_group(naming.profile_field_group(OWNER), PROFILE_FIELDS, PROFILE)
    schema = aep.get_or_create_schema(naming.profile_schema(OWNER), PROFILE, [fg], profile_enabled=True)
    plain = aep.get_or_create_dataset("[CMLE] plain (cmle)", schema)
    assert not plain.profile_enabled
    assert aep.get_or_create_dataset("[CMLE] plain (cmle)", schema, profile_enabled=True).profile_enabled
    assert len(double.datasets) == 1


def test_dataset_on_another_schema_is_refused(aep):
    profile_dataset(aep)
    ev = events_dataset(aep)
    with pytest.raises(PlatformError, match="exists on another schema"):
        aep.get_or_create_dataset(naming.profiles_dataset(OWNER), ev.schema_id)


def test_profile_dataset_needs_a_profile_schema(aep):
    ev = events_dataset(aep)
    with pytest.raises(PlatformError, match="not enabled for Profile"):
        aep.get_or_create_dataset("[CMLE] x (cmle)", ev.schema_id, profile_enabled=True)


def test_find_and_get_dataset(aep):
    ds = profile_dataset(aep)
    assert aep.find_dataset(ds.name) == ds
    assert aep.get_dataset(ds.id) == ds
    assert aep.find_dataset("[CMLE] none (cmle)") is None
    with pytest.raises(NotFoundError):
        aep.get_dataset("nope")


def test_unknown_xdm_type_is_refused_before_any_call(aep, double):
    with pytest.raises(PlatformError, match="unsupported XDM types"):
        aep.get_or_create_field_group("[CMLE] bad (cmle)", {"x": "varchar"}, PROFILE)
    assert not double.fieldgroups


def test_profile_is_enabled_by_the_documented_patch(aep, double):
    """Adobe enables a schema for Profile with a PATCH adding ``/meta:immutableTags``; a PUT of
    the whole schema with the tag does not enable it (the double keeps the tags, as AEP does)."""
    ds = profile_dataset(aep)
    assert "union" in double.schemas[ds.schema_id]["meta:immutableTags"]
    sent = [(m, k) for m, k, _status in double.calls if "/tenant/schemas/{SCHEMA_ID}" in k and m in ("PUT", "PATCH")]
    assert sent == [("PATCH", "PATCH /data/foundation/schemaregistry/tenant/schemas/{SCHEMA_ID}")]
    assert any("meta:immutableTags" in w for w in double.specs.waived)  # the spec types value as a string


def test_the_double_ignores_immutable_tags_in_a_put(aep, double):
    from urllib.parse import quote

    fg = aep.get_or_create_field_group(naming.profile_field_group(OWNER), PROFILE_FIELDS, PROFILE)
    schema_id = aep.get_or_create_schema(naming.profile_schema(OWNER), PROFILE, [fg])  # with its identity
    body = {k: double.schemas[schema_id][k] for k in ("type", "title", "description", "allOf")}
    url = aep.client.url("schemas", f"/tenant/schemas/{quote(schema_id, safe='')}")
    answer = aep.client.transport.json("PUT", url, safe=True, json={**body, "meta:immutableTags": ["union"]})
    assert "union" not in (answer.get("meta:immutableTags") or [])
    assert not aep.xdm.schema_is_profile(schema_id)
    with pytest.raises(PlatformError, match="not enabled for Profile"):
        aep.get_or_create_dataset("[CMLE] x (cmle)", schema_id, profile_enabled=True)


def test_a_patch_that_does_not_enable_profile_is_a_clear_error(aep, double, monkeypatch):
    from aep.double import svc_xdm
    from aep.double.router import ROUTES, norm

    key = ("PATCH", norm(svc_xdm.SR + "/tenant/schemas/{SCHEMA_ID}"))
    monkeypatch.setitem(ROUTES, key, lambda d, req: svc_xdm._find(d.schemas, req.arg(0)))  # answers, changes nothing
    fg = aep.get_or_create_field_group(naming.profile_field_group(OWNER), PROFILE_FIELDS, PROFILE)
    with pytest.raises(PlatformError, match="still not enabled for Profile after the PATCH"):
        aep.get_or_create_schema(naming.profile_schema(OWNER), PROFILE, [fg], profile_enabled=True)


def test_the_scores_field_group_declares_factors_as_an_array_of_objects(aep, double):
    """The factors field is what the field constraints guide asks of an array of objects; an
    existing scores field group gains it; the double refuses an array without items."""
    from cmle.platform.aep.errors import AEPError
    from cmle.scoring.schema import XDM_FIELDS

    title = naming.score_field_group(OWNER)
    old = {k: v for k, v in XDM_FIELDS.items() if k != "factors"}
    fg = aep.get_or_create_field_group(title, old, PROFILE)
    assert aep.get_or_create_field_group(title, XDM_FIELDS, PROFILE) == fg  # extended, not duplicated
    props = double.fieldgroups[fg]["definitions"]["customFields"]["properties"]["_cmle"]["properties"]
    factors = props["factors"]
    assert factors["type"] == "array" and factors["items"]["type"] == "object"
    assert factors["items"]["properties"]["contribution"] == {"title": "contribution", "type": "number"}
    assert set(factors["items"]["properties"]) == {"feature", "name", "value", "contribution"}
    assert not double.violations
    body = aep.xdm.field_group_body("[CMLE] bad array (cmle)", {"userid": "string"}, PROFILE)
    body["definitions"]["customFields"]["properties"]["_cmle"]["properties"]["x"] = {"type": "array"}
    with pytest.raises(AEPError, match="an array needs items"):
        aep.xdm.c.transport.call(lambda: aep.xdm.c.schema.createFieldGroup(body), what="create")
