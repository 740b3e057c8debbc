"""Schema Registry of the double: stats (tenant id), field groups, schemas, descriptors."""

from __future__ import annotations

from .router import Req, Resp, aep_error, matches_filters, property_filter, route

SR = "/data/foundation/schemaregistry"
CLASSES = {"https://ns.adobe.com/xdm/context/profile", "https://ns.adobe.com/xdm/context/experienceevent"}
# Standard field groups the double knows by id (their fields are not modelled).
STANDARD_FIELD_GROUPS = {
    "https://ns.adobe.com/xdm/context/experienceevent-directmarketing": "https://ns.adobe.com/xdm/context/experienceevent",
    "https://ns.adobe.com/xdm/context/experienceevent-web": "https://ns.adobe.com/xdm/context/experienceevent",
}


def _page(d, req: Req, items: list[dict], summary) -> dict:
    limit = int(req.q("limit", "300") or 300)
    start = int(req.q("start", "0") or 0)
    page = items[start:start + limit]
    nxt = str(start + limit) if start + limit < len(items) else None
    accept = req.header("accept")
    out = [summary(i) if "xed-id" in accept or "xdm-id" in accept else i for i in page]
    return {"results": out, "_page": {"orderby": "title", "next": nxt, "count": len(out)}, "_links": {}}


def _summary(r: dict) -> dict:
    return {"$id": r["$id"], "meta:altId": r["meta:altId"], "version": r["version"], "title": r["title"]}


def _find(store: dict, rid: str) -> dict:
    for r in store.values():
        if rid in (r["$id"], r["meta:altId"]):
            return r
    raise aep_error(404, "XDM-1021-404", f"resource {rid} was not found")


def tenant_fields(d, schema: dict) -> dict[str, dict]:
    """The custom fields under ``_{tenant}`` that a schema's field groups define."""
    out: dict[str, dict] = {}
    for ref in schema.get("allOf", [])[1:]:
        fg = next((f for f in d.fieldgroups.values() if f["$id"] == ref.get("$ref")), None)
        if fg is None:
            continue
        props = (fg.get("definitions", {}).get("customFields", {}).get("properties", {})
                 .get(f"_{d.tenant}", {}).get("properties", {}))
        out.update(props)
    return out


@route("GET", SR + "/stats")
def stats(d, req: Req):
    body = {"imsOrg": d.org_id, "counts": {"schemas": len(d.schemas), "mixins": len(d.fieldgroups)}}
    if not d.stats_without_tenant:
        body["tenantId"] = d.tenant
    return body


# --- field groups -----------------------------------------------------------------------------
@route("GET", SR + "/{CONTAINER_ID}/fieldgroups")
def list_fieldgroups(d, req: Req):
    items = [] if req.arg(0) != "tenant" else [f for f in d.fieldgroups.values()
                                             if matches_filters(f, property_filter(req.q("property")))]
    return _page(d, req, sorted(items, key=lambda f: f["title"]), _summary)


XDM_TYPES = ("string", "number", "integer", "boolean", "object", "array")


def field_problem(node, path: str) -> str | None:
    """What is wrong with a field definition, by the field constraints guide (XDM): a known
    ``type``; an array has ``items`` (itself a field); an object has ``properties`` (or is a
    map with ``additionalProperties``); or a ``$ref`` to a data type."""
    if not isinstance(node, dict):
        return f"{path}: a field must be an object"
    if "$ref" in node:
        return None
    kind = node.get("type")
    if kind not in XDM_TYPES:
        return f"{path}: type {kind!r} is not one of {', '.join(XDM_TYPES)}"
    if kind == "array":
        if not isinstance(node.get("items"), dict):
            return f"{path}: an array needs items"
        return field_problem(node["items"], path + "[]")
    if kind == "object":
        props = node.get("properties")
        if isinstance(node.get("additionalProperties"), dict):
            return None
        if not isinstance(props, dict) or not props:
            return f"{path}: an object needs properties"
        for name, child in props.items():
            problem = field_problem(child, f"{path}.{name}")
            if problem:
                return problem
    return None


def _check_definitions(d, body: dict) -> None:
    tenant = f"_{d.tenant}"
    for key, definition in (body.get("definitions") or {}).items():
        for root, node in ((definition or {}).get("properties") or {}).items():
            problem = field_problem(node, f"definitions.{key}.{root}")
            if problem:
                raise aep_error(400, "XDM-1000-400", f"invalid field definition: {problem}")
            if root != tenant and root.startswith("_"):
                raise aep_error(400, "XDM-1011-400", f"custom fields must be under {tenant}")


@route("POST", SR + "/tenant/fieldgroups")
def create_fieldgroup(d, req: Req):
    body = req.json or {}
    _check_definitions(d, body)
    extends = body.get("meta:intendedToExtend") or []
    if not body.get("title") or not body.get("definitions") or not extends:
        raise aep_error(400, "XDM-1000-400", "a field group needs title, definitions and meta:intendedToExtend")
    if any(c not in CLASSES for c in extends):
        raise aep_error(400, "XDM-1010-400", f"unknown class in meta:intendedToExtend: {extends}")
    tenant_props = body["definitions"].get("customFields", {}).get("properties", {})
    if any(k.startswith("_") and k != f"_{d.tenant}" for k in tenant_props):
        raise aep_error(400, "XDM-1011-400", f"custom fields must be under _{d.tenant}")
    hexid = d.new_hex()
    fg = {**body, "$id": f"https://ns.adobe.com/{d.tenant}/mixins/{hexid}", "meta:altId": f"_{d.tenant}.mixins.{hexid}",
          "meta:resourceType": "mixins", "version": "1.0", "meta:containerId": "tenant"}
    with d.lock:
        d.fieldgroups[fg["$id"]] = fg
    return Resp(201, fg)


@route("GET", SR + "/{CONTAINER_ID}/fieldgroups/{FIELD_GROUP_ID}")
def get_fieldgroup(d, req: Req):
    return _find(d.fieldgroups, req.arg(1))


@route("PUT", SR + "/tenant/fieldgroups/{FIELD_GROUP_ID}")
def put_fieldgroup(d, req: Req):
    fg = _find(d.fieldgroups, req.arg(0))
    body = req.json or {}
    _check_definitions(d, body)
    with d.lock:
        fg.update({k: v for k, v in body.items() if not k.startswith("$") and k != "meta:altId"})
        fg["version"] = f"1.{int(fg['version'].split('.')[1]) + 1}"
    return fg


@route("DELETE", SR + "/tenant/fieldgroups/{FIELD_GROUP_ID}")
def delete_fieldgroup(d, req: Req):
    fg = _find(d.fieldgroups, req.arg(0))
    if any(fg["$id"] in [r.get("$ref") for r in s.get("allOf", [])] for s in d.schemas.values()):
        raise aep_error(400, "XDM-1012-400", "the field group is used by a schema")
    with d.lock:
        d.fieldgroups.pop(fg["$id"], None)
    return Resp(204)


# --- schemas -------------------------------------------------------------------------------------
@route("GET", SR + "/{CONTAINER_ID}/schemas")
def list_schemas(d, req: Req):
    items = [] if req.arg(0) != "tenant" else [s for s in d.schemas.values()
                                             if matches_filters(s, property_filter(req.q("property")))]
    return _page(d, req, sorted(items, key=lambda s: s["title"]), _summary)


def _check_schema_refs(d, body: dict) -> str:
    refs = [r.get("$ref") for r in body.get("allOf") or []]
    if not refs or refs[0] not in CLASSES:
        raise aep_error(400, "XDM-1020-400", "allOf must start with the $ref of a class")
    for ref in refs[1:]:
        if ref in STANDARD_FIELD_GROUPS:
            if STANDARD_FIELD_GROUPS[ref] != refs[0]:
                raise aep_error(400, "XDM-1022-400", f"{ref} does not extend {refs[0]}")
            continue
        fg = next((f for f in d.fieldgroups.values() if f["$id"] == ref), None)
        if fg is None:
            raise aep_error(400, "XDM-1021-400", f"field group {ref} does not exist")
        if refs[0] not in fg["meta:intendedToExtend"]:
            raise aep_error(400, "XDM-1022-400", f"field group {ref} does not extend {refs[0]}")
    return refs[0]


@route("POST", SR + "/tenant/schemas")
def create_schema(d, req: Req):
    body = req.json or {}
    cls = _check_schema_refs(d, body)
    if "union" in (body.get("meta:immutableTags") or []):
        raise aep_error(400, "XDM-1521-400", "a schema needs a primary identity before it can be enabled for Profile")
    hexid = d.new_hex()
    s = {**body, "$id": f"https://ns.adobe.com/{d.tenant}/schemas/{hexid}", "meta:altId": f"_{d.tenant}.schemas.{hexid}",
         "meta:resourceType": "schemas", "version": "1.0", "meta:class": cls, "meta:containerId": "tenant"}
    with d.lock:
        d.schemas[s["$id"]] = s
    return Resp(201, s)


@route("GET", SR + "/{CONTAINER_ID}/schemas/{SCHEMA_ID}")
def get_schema(d, req: Req):
    return _find(d.schemas, req.arg(1))


def _require_identity_for_union(d, s: dict) -> None:
    primary = [x for x in d.descriptors.values() if x["xdm:sourceSchema"] == s["$id"] and x.get("xdm:isPrimary")]
    if not primary:
        raise aep_error(400, "XDM-1521-400", "a schema needs a primary identity before it can be enabled for Profile")


@route("PUT", SR + "/tenant/schemas/{SCHEMA_ID}")
def put_schema(d, req: Req):
    """Replace a schema. As on AEP, ``meta:immutableTags`` in the body is ignored: a PUT does
    not enable (or disable) Profile, only the PATCH of ``/meta:immutableTags`` does."""
    s = _find(d.schemas, req.arg(0))
    body = req.json or {}
    _check_schema_refs(d, body)
    with d.lock:
        tags = s.get("meta:immutableTags")
        s.update({k: v for k, v in body.items() if not k.startswith("$") and k not in ("meta:altId",
                                                                                       "meta:immutableTags")})
        if tags is None:
            s.pop("meta:immutableTags", None)
        else:
            s["meta:immutableTags"] = tags
        s["version"] = f"1.{int(s['version'].split('.')[1]) + 1}"
    return s


PATCHABLE = ("/title", "/description", "/meta:immutableTags", "/allOf")


@route("PATCH", SR + "/tenant/schemas/{SCHEMA_ID}")
def patch_schema(d, req: Req):
    """JSON Patch of a schema (RFC 6902): ``add``/``replace``/``remove`` of the title, the
    description, ``meta:immutableTags`` (``["union"]`` enables Profile, once the schema has a
    primary identity; tags cannot be removed) and ``allOf`` entries."""
    s = _find(d.schemas, req.arg(0))
    ops = req.json
    if not isinstance(ops, list) or not ops:
        raise aep_error(400, "XDM-1000-400", "the body must be a JSON Patch array")
    new = {k: (list(v) if isinstance(v, list) else v) for k, v in s.items()}
    for op in ops:
        kind, path, value = op.get("op"), str(op.get("path", "")), op.get("value")
        if kind not in ("add", "replace", "remove") or not path.startswith(PATCHABLE):
            raise aep_error(400, "XDM-1000-400", f"unsupported patch operation {kind} {path}")
        if path.startswith("/meta:immutableTags"):
            if kind == "remove":
                raise aep_error(400, "XDM-1522-400", "meta:immutableTags cannot be removed")
            tags = list(new.get("meta:immutableTags") or [])
            if path == "/meta:immutableTags":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise aep_error(400, "XDM-1000-400", "meta:immutableTags takes an array of strings")
                if set(tags) - set(value):
                    raise aep_error(400, "XDM-1522-400", "meta:immutableTags cannot be removed")
                tags = list(value)
            else:  # /meta:immutableTags/- appends one tag
                tags.append(str(value))
            new["meta:immutableTags"] = tags
        elif path.startswith("/allOf"):
            if kind != "add" or not isinstance(value, dict) or "$ref" not in value:
                raise aep_error(400, "XDM-1000-400", "allOf takes added {\"$ref\": ...} entries")
            new["allOf"] = [*new.get("allOf", []), {"$ref": value["$ref"]}]
            _check_schema_refs(d, new)
        elif kind == "remove":
            new.pop(path[1:], None)
        else:
            new[path[1:]] = value
    if "union" in (new.get("meta:immutableTags") or []) and "union" not in (s.get("meta:immutableTags") or []):
        _require_identity_for_union(d, s)
    with d.lock:
        s.clear()
        s.update(new)
        s["version"] = f"1.{int(s['version'].split('.')[1]) + 1}"
    return s


@route("DELETE", SR + "/tenant/schemas/{SCHEMA_ID}")
def delete_schema(d, req: Req):
    s = _find(d.schemas, req.arg(0))
    if any((ds.get("schemaRef") or {}).get("id") == s["$id"] for ds in d.datasets.values()):
        raise aep_error(400, "XDM-1023-400", "the schema is used by a dataset")
    with d.lock:
        d.schemas.pop(s["$id"], None)
    return Resp(204)


# --- descriptors ------------------------------------------------------------------------------------
@route("POST", SR + "/tenant/descriptors")
def create_descriptor(d, req: Req):
    body = req.json or {}
    if body.get("@type") != "xdm:descriptorIdentity":
        raise aep_error(400, "XDM-1030-400", "the double supports identity descriptors only")
    schema = next((s for s in d.schemas.values() if s["$id"] == body.get("xdm:sourceSchema")), None)
    if schema is None:
        raise aep_error(400, "XDM-1031-400", f"schema {body.get('xdm:sourceSchema')} does not exist")
    prop = body.get("xdm:sourceProperty", "")
    parts = prop.strip("/").split("/")
    if len(parts) != 2 or parts[0] != f"_{d.tenant}" or parts[1] not in tenant_fields(d, schema):
        raise aep_error(400, "XDM-1032-400", f"xdm:sourceProperty {prop} is not a field of the schema")
    if not body.get("xdm:namespace"):
        raise aep_error(400, "XDM-1033-400", "xdm:namespace is required")
    desc = {**body, "@id": d.new_hex(), "meta:containerId": "tenant", "version": "1"}
    with d.lock:
        d.descriptors[desc["@id"]] = desc
    return Resp(201, desc)


@route("GET", SR + "/{CONTAINER_ID}/descriptors")
def list_descriptors(d, req: Req):
    if "v2" not in req.header("accept"):
        raise aep_error(406, "XDM-1040-406", "the double serves descriptors as application/vnd.adobe.xdm-v2+json")
    filters = property_filter(req.q("property"))
    items = [x for x in d.descriptors.values() if matches_filters(x, filters)]
    return _page(d, req, items, lambda x: x["@id"])


@route("DELETE", SR + "/tenant/descriptors/{DESCRIPTOR_ID}")
def delete_descriptor(d, req: Req):
    with d.lock:
        if d.descriptors.pop(req.arg(0), None) is None:
            raise aep_error(404, "XDM-1041-404", "descriptor not found")
    return Resp(204)
