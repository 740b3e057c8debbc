"""XDM resources in the Schema Registry: tenant id, field groups, schemas, identity
descriptors, Profile (union) enablement; get-or-create by title, never duplicated.

aepp's ``createFieldGroup``/``createSchema``/``createDescriptor``/``putSchema``/``delete*``
are used as they are. Listings are our own GETs: aepp's ``getFieldGroups`` cannot filter
by title, ``getSchemas`` returns the raw body when there is no result, and
``getDescriptors`` loops forever when there is more than one page.

Payloads follow the CMLE notebooks (reference cmle-notebooks.md §2.1) and validate against
schema-registry.yaml. Profile enablement is the PATCH Adobe documents (schema guide,
"Enable a schema for Real-Time Customer Profile"; aepp's ``enableSchemaForRealTime``):
``[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]``. A PUT of the whole
schema with ``meta:immutableTags`` does *not* enable it (the Schema Registry keeps the tags
it has), so the answer of the PATCH is checked: a schema that is still not enabled is a
clear error here rather than a refused dataset one step later.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from cmle.errors import PlatformError
from cmle.platform import fields as fields_
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.errors import AEPError, PermissionDeniedError
from cmle.platform.aep.http import AEPNotFound
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE, XDM_CLASSES, Resource

log = logging.getLogger(__name__)

XDM_TYPES: dict[str, dict] = fields_.XDM_SCALARS
# The notebooks' ExperienceEvent schema also carries these standard field groups; the
# synthetic events have `directMarketing` and `web` objects.
EE_STANDARD_FIELD_GROUPS = (
    "https://ns.adobe.com/xdm/context/experienceevent-directmarketing",
    "https://ns.adobe.com/xdm/context/experienceevent-web",
)
ACCEPT_LIST = "application/vnd.adobe.xed-id+json"
ACCEPT_ONE = "application/vnd.adobe.xed+json; version=1"
ACCEPT_DESCRIPTORS = "application/vnd.adobe.xdm-v2+json"
ECID = "ECID"
UNION_TAG = "union"
ADHOC_CLASS = "https://ns.adobe.com/xdm/data/adhoc"  # Query Service's CTAS results


def _q(resource_id: str) -> str:
    return quote(resource_id, safe="")


class XDM:
    def __init__(self, client: AEPClient):
        self.c = client
        self._tenant: str | None = None

    # --- tenant --------------------------------------------------------------------------
    def tenant_id(self) -> str:
        """The tenant id (custom fields live under ``_{tenant}``), read once from /stats."""
        if self._tenant is None:
            try:
                stats = self.c.transport.call(self.c.schema.getStats, what="read the tenant id")
            except PermissionDeniedError as exc:
                raise PermissionDeniedError(
                    f"cannot read the tenant id: {exc}", exc.status, exc.body, exc.method, exc.path) from None
            tenant = stats.get("tenantId") if isinstance(stats, dict) else None
            if not tenant:
                # What the notebooks showed as KeyError: 'tenantId'.
                raise PermissionDeniedError(
                    f"the Schema Registry of sandbox {self.c.sandbox!r} returned no tenantId: the credential "
                    "cannot see this sandbox's schemas. Give its product profile the permission "
                    "'Data Modeling > View Schemas' (and 'Manage Schemas') for this sandbox in Adobe Admin "
                    "Console, and check [Platform] sandbox_name.")
            self._tenant = str(tenant).lstrip("_")
        return self._tenant

    # --- listings ------------------------------------------------------------------------
    def _list(self, kind: str, prop: str | None = None) -> list[dict]:
        """Every tenant resource of a kind (fieldgroups, schemas), following pages."""
        params: dict[str, Any] = {"limit": 100}
        if prop:
            params["property"] = prop
        out: list[dict] = []
        while True:
            body = self.c.get("schemas", f"/tenant/{kind}", params=dict(params),
                              headers={"Accept": ACCEPT_LIST}, what=f"list {kind}")
            out += body.get("results", []) if isinstance(body, dict) else []
            nxt = (body.get("_page") or {}).get("next") if isinstance(body, dict) else None
            if not nxt:
                return out
            params["start"] = nxt

    def _find(self, kind: str, title: str) -> dict | None:
        matches = [r for r in self._list(kind, f"title=={title}") if r.get("title") == title]
        if len(matches) > 1:
            log.warning("%d %s are titled %r; using the first (%s)", len(matches), kind, title, matches[0]["$id"])
        return matches[0] if matches else None

    def get(self, kind: str, resource_id: str, full: bool = False) -> dict:
        accept = "application/vnd.adobe.xed-full+json; version=1" if full else ACCEPT_ONE
        return self.c.get("schemas", f"/tenant/{kind}/{_q(resource_id)}", headers={"Accept": accept},
                          what=f"read {kind} {resource_id}")

    # --- field groups --------------------------------------------------------------------
    def field_group_body(self, title: str, fields: dict[str, str], extends: str) -> dict:
        if extends not in XDM_CLASSES:
            raise PlatformError(f"field group {title!r}: unknown class {extends!r}")
        bad = {k: v for k, v in fields.items() if not fields_.field_type_ok(v)}
        if bad:
            raise PlatformError(f"field group {title!r}: unsupported XDM types {bad}")
        tenant = f"_{self.tenant_id()}"
        props = {name: fields_.xdm_property(name, t) for name, t in fields.items()}
        return {
            "title": title,
            "description": f"{title}: custom fields of the cmle package",
            "type": "object",
            "meta:intendedToExtend": [XDM_CLASSES[extends]],
            "definitions": {"customFields": {"properties": {tenant: {"type": "object", "properties": props}}}},
            "allOf": [{"$ref": "#/definitions/customFields"}],
        }

    def get_or_create_field_group(self, title: str, fields: dict[str, str], extends: str) -> str:
        body = self.field_group_body(title, fields, extends)
        found = self._find("fieldgroups", title)
        if found is None:
            res, _ = self.c.transport.create_once(
                what=f"create field group {title!r}",
                create=lambda: self.c.schema.createFieldGroup(body),
                find=lambda: self._find("fieldgroups", title))
            fg_id = _required(res, "$id", f"create field group {title!r}")
            log.info("created field group %r (%s)", title, fg_id)
            return fg_id
        fg_id = found["$id"]
        self._extend_field_group(fg_id, title, fields, body)
        return fg_id

    def _extend_field_group(self, fg_id: str, title: str, fields: dict[str, str], body: dict) -> None:
        """Add fields a newer version of the package declares (XDM allows additive changes)."""
        current = self.get("fieldgroups", fg_id)
        tenant = f"_{self.tenant_id()}"
        have = (current.get("definitions", {}).get("customFields", {}).get("properties", {})
                .get(tenant, {}).get("properties", {}))
        missing = sorted(set(fields) - set(have))
        if missing:
            log.info("field group %r: adding fields %s", title, missing)
            self.c.transport.call(lambda: self.c.schema.putFieldGroup(fg_id, body), what=f"extend {title!r}")

    # --- schemas ---------------------------------------------------------------------------
    def get_or_create_schema(self, title: str, xdm_class: str, field_group_ids: list[str],
                             identity_field: str = "userid", profile_enabled: bool = False,
                             namespace: str = ECID) -> str:
        if xdm_class not in XDM_CLASSES:
            raise PlatformError(f"schema {title!r}: unknown class {xdm_class!r}")
        refs = [*field_group_ids]
        if xdm_class == EXPERIENCE_EVENT:
            refs += [fg for fg in EE_STANDARD_FIELD_GROUPS if fg not in refs]
        body = {"type": "object", "title": title, "description": f"{title} (cmle package)",
                "allOf": [{"$ref": XDM_CLASSES[xdm_class]}, *({"$ref": fg} for fg in refs)]}
        found = self._find("schemas", title)
        if found is None:
            res, _ = self.c.transport.create_once(
                what=f"create schema {title!r}", create=lambda: self.c.schema.createSchema(body),
                find=lambda: self._find("schemas", title))
            schema_id = _required(res, "$id", f"create schema {title!r}")
            log.info("created schema %r (%s)", title, schema_id)
        else:
            schema_id = found["$id"]
        self._ensure_identity(schema_id, title, identity_field, namespace)
        if profile_enabled:
            self._ensure_union(schema_id, title)
        return schema_id

    def descriptors(self, schema_id: str | None = None) -> list[dict]:
        """Identity descriptors (of one schema, or all), following pages."""
        prop = "@type==xdm:descriptorIdentity"
        if schema_id:
            prop += f",xdm:sourceSchema=={schema_id}"
        params: dict[str, Any] = {"property": prop, "limit": 100}
        out: list[dict] = []
        while True:
            body = self.c.get("schemas", "/tenant/descriptors", params=dict(params),
                              headers={"Accept": ACCEPT_DESCRIPTORS}, what="list descriptors")
            out += [d for d in body.get("results", []) if isinstance(d, dict)]
            nxt = (body.get("_page") or {}).get("next")
            if not nxt:
                break
            params["start"] = nxt
        if schema_id:
            out = [d for d in out if d.get("xdm:sourceSchema") == schema_id]
        return out

    def _ensure_identity(self, schema_id: str, title: str, field: str, namespace: str = ECID) -> None:
        path = f"/_{self.tenant_id()}/{field}"

        def find():
            for d in self.descriptors(schema_id):
                if d.get("xdm:sourceProperty") == path and d.get("xdm:isPrimary"):
                    return d
            return None

        found = find()
        if found is not None:
            if found.get("xdm:namespace", ECID) != namespace:
                raise PlatformError(f"schema {title!r} has its primary identity in namespace "
                                    f"{found.get('xdm:namespace')}, not {namespace}; run cleanup or choose another "
                                    "owner")
            return
        desc = {"@type": "xdm:descriptorIdentity", "xdm:sourceSchema": schema_id, "xdm:sourceVersion": "1",  # a string, as schema-registry.yaml types it
                "xdm:sourceProperty": path, "xdm:namespace": namespace, "xdm:property": "xdm:id",
                "xdm:isPrimary": True}
        res, _ = self.c.transport.create_once(
            what=f"create the {namespace} identity of {title!r}",
            create=lambda: self.c.schema.createDescriptor(descriptorObj=desc), find=find)
        _required(res, "@id", f"create the identity descriptor of {title!r}")

    def ecid_identity_field(self, schema_id: str) -> str | None:
        """The custom field holding the schema's primary identity when its namespace is ECID."""
        prefix = f"/_{self.tenant_id()}/"
        for d in self.descriptors(schema_id):
            if d.get("xdm:isPrimary") and str(d.get("xdm:namespace", "")).upper() == ECID \
                    and str(d.get("xdm:sourceProperty", "")).startswith(prefix):
                return str(d["xdm:sourceProperty"])[len(prefix):]
        return None

    def _ensure_union(self, schema_id: str, title: str) -> None:
        current = self.get("schemas", schema_id)
        tags = list(current.get("meta:immutableTags") or [])
        if UNION_TAG in tags:
            return
        ops = [{"op": "add", "path": "/meta:immutableTags", "value": [*tags, UNION_TAG]}]
        answer = self.c.transport.request("PATCH", self.c.url("schemas", f"/tenant/schemas/{_q(schema_id)}"),
                                          safe=True, json=ops, what=f"enable {title!r} for Profile").json()
        answered = answer.get("meta:immutableTags") if isinstance(answer, dict) else None
        if UNION_TAG not in (answered or []):
            # The answer may omit the tags: read the schema before calling it a failure.
            if not self.schema_is_profile(schema_id):
                raise PlatformError(f"schema {title!r} ({schema_id}) is still not enabled for Profile after the "
                                    f"PATCH of meta:immutableTags (AEP answered {str(answer)[:200]}); enable it in "
                                    "the AEP UI (Schemas > Profile toggle) or check that it has a primary identity")
        log.info("schema %r enabled for Profile", title)

    def _custom_properties(self, schema: dict) -> dict[str, dict]:
        """The custom fields (under ``_{tenant}``) that a schema's field groups define, by name."""
        tenant = f"_{self.tenant_id()}"
        out: dict[str, dict] = {}
        for ref in schema.get("allOf") or []:
            fg_id = ref.get("$ref", "") if isinstance(ref, dict) else ""
            if "/mixins/" not in fg_id and "/fieldgroups/" not in fg_id:
                continue
            try:
                fg = self.get("fieldgroups", fg_id)
            except AEPNotFound:
                continue
            out |= (fg.get("definitions", {}).get("customFields", {}).get("properties", {})
                    .get(tenant, {}).get("properties", {}))
        return out

    def tenant_fields(self, schema_id: str) -> set[str]:
        """Names of the custom fields (under ``_{tenant}``) the schema's field groups define."""
        return set(self._custom_properties(self.get("schemas", schema_id)))

    def schema_fields(self, schema_id: str) -> dict[str, str]:
        """The schema's leaf fields ``{path: XDM type}`` from its expanded form (``xed-full``);
        when the answer carries no expanded properties, the custom fields of its field groups."""
        from cmle.platform import fields

        try:
            full = self.get("schemas", schema_id, full=True)
        except AEPNotFound:
            return {}
        if isinstance(full, dict) and full.get("properties"):
            return fields.from_xdm(full)
        tenant = f"_{self.tenant_id()}"
        props = self._custom_properties(full if isinstance(full, dict) else {})
        return {f"{tenant}.{k}": v for k, v in fields.from_xdm({"properties": props}).items()}

    def schema_is_profile(self, schema_id: str) -> bool:
        return UNION_TAG in (self.get("schemas", schema_id).get("meta:immutableTags") or [])

    # --- cleanup ---------------------------------------------------------------------------
    def list_resources(self) -> list[Resource]:
        out = [Resource("fieldgroup", r["$id"], r.get("title", "")) for r in self._list("fieldgroups")]
        schemas = self._list("schemas")
        out += [Resource("schema", r["$id"], r.get("title", "")) for r in schemas]
        titles = {r["$id"]: r.get("title", "") for r in schemas}
        for d in self.descriptors():
            title = titles.get(d.get("xdm:sourceSchema"))
            if title is not None and d.get("@id"):
                out.append(Resource("descriptor", d["@id"], title))
        return out

    def is_adhoc(self, schema: dict) -> bool:
        return ADHOC_CLASS in (schema.get("meta:class"), *(schema.get("meta:extends") or []))

    def delete_adhoc_schema(self, schema_id: str) -> bool:
        """Delete the ad-hoc schema Query Service made for a CTAS dataset (one dataset only
        ever uses it). Any other schema is left alone. True when it was deleted."""
        try:
            schema = self.get("schemas", schema_id)
        except AEPNotFound:
            return False
        if not self.is_adhoc(schema):
            return False
        try:
            self.delete("schema", schema_id)
        except AEPError as exc:  # still in use (the dataset is being deleted): leave it, say so
            log.warning("could not delete the ad-hoc schema %s: %s", schema_id, exc)
            return False
        log.info("deleted the ad-hoc schema %s of a replaced CTAS dataset", schema_id)
        return True

    def delete(self, kind: str, resource_id: str) -> None:
        fn = {"fieldgroup": self.c.schema.deleteFieldGroup, "schema": self.c.schema.deleteSchema,
              "descriptor": self.c.schema.deleteDescriptor}[kind]
        try:
            self.c.transport.call(lambda: fn(resource_id), what=f"delete {kind} {resource_id}")
        except AEPNotFound:
            pass


def _required(res: Any, key: str, what: str) -> str:
    if not isinstance(res, dict) or not res.get(key):
        raise PlatformError(f"{what}: unexpected answer from AEP (no {key!r}): {str(res)[:300]}")
    return str(res[key])


__all__ = ["XDM", "XDM_TYPES", "PROFILE", "EXPERIENCE_EVENT"]
