"""Request validation against Adobe's official OpenAPI specs (``shared/aep-openapi``).

Every request the double receives is matched to one operation of one spec by path
prefix, path template and method, then validated with openapi-core: path and query
parameters, required headers and the request body schema. The schema registry spec is
Swagger 2.0; :func:`swagger2_to_oas3` converts the parts validation needs (parameters,
body, definitions) in memory. The spec files are never modified.

Deployment details are adjusted in memory only: ``servers`` become the service's base
path on the double (the specs name ``platform.adobe.io``), and integer response codes
become strings (some YAML files write ``200:``, which openapi-core refuses).

Three operations this project calls are not in the shared specs: the Data Landing Zone
credentials (``/data/foundation/connectors/landingzone/credentials``), the Dataset
Service labels (``/data/foundation/dataset/datasets/{id}/labels``) and the dataset-export
variant of ``/adhocrun`` (ad-hoc-activation.yaml has the audience variant only). They are
described in :data:`EXTRA_SPECS` from Adobe's published API reference, with the same
header rules, so they are validated the same way.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import yaml
from openapi_core import Config, OpenAPI
from werkzeug.datastructures import Headers, ImmutableMultiDict

from openapi_core.datatypes import RequestParameters



def spec_dir() -> Path:
    """Where Adobe's specs are: ``$CMLE_AEP_OPENAPI_DIR``, ``tests/aep/openapi`` (a vendored
    copy, with its LICENSE), or ``shared/aep-openapi`` next to the repository."""
    here = Path(__file__).resolve()
    candidates = [Path(os.environ["CMLE_AEP_OPENAPI_DIR"])] if os.environ.get("CMLE_AEP_OPENAPI_DIR") else []
    candidates += [here.parents[1] / "openapi", here.parents[4] / "shared" / "aep-openapi"]
    for c in candidates:
        if (c / "catalog.yaml").is_file():
            return c
    raise FileNotFoundError("Adobe's OpenAPI specs (catalog.yaml, ...) not found in "
                            + ", ".join(map(str, candidates)) + "; set CMLE_AEP_OPENAPI_DIR")

# file -> base path on platform.adobe.io (shared/aep-openapi/README.md)
SPEC_FILES = {
    "ad-hoc-activation.yaml": "/data/core/activation/disflowprovider",
    "batch-ingestion.yaml": "/data/foundation/import",
    "catalog.yaml": "/data/foundation/catalog",
    "data-access.yaml": "/data/foundation/export",
    "destinations.yaml": "/data/foundation/flowservice",
    "flow-service.yaml": "/data/foundation/flowservice",
    "policy-service.yaml": "/data/foundation/dulepolicy",
    "profile.yaml": "/data/core",
    "query-service.yaml": "/data/foundation/query",
    "schema-registry.yaml": "/data/foundation/schemaregistry",
    "segmentation.yaml": "/data/core/ups",
}

_COMMON_HEADERS = [
    {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
    for n in ("Authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name")
]

EXTRA_SPECS = {
    # Adobe's "Data Landing Zone" API reference (connectors/landingzone), not in shared/aep-openapi.
    "landing-zone (API reference)": ("/data/foundation/connectors", {
        "openapi": "3.0.1", "info": {"title": "Data Landing Zone", "version": "1"},
        "paths": {"/landingzone/credentials": {"get": {
            "operationId": "getLandingZoneCredentials",
            "parameters": [*_COMMON_HEADERS,
                           {"name": "type", "in": "query", "required": True,
                            "schema": {"type": "string", "enum": ["user_drop_zone", "dlz_destination"]}}],
            "responses": {"200": {"description": "credentials"}}}}},
    }),
    # The dataset-export variant of /adhocrun (Adobe's "export datasets" guide; aepp's
    # createAdHocDatasetExport): ad-hoc-activation.yaml documents the audience variant only.
    "ad-hoc dataset export (API reference)": ("/data/core/activation/disflowprovider", {
        "openapi": "3.0.1", "info": {"title": "Ad-hoc dataset export", "version": "1"},
        "paths": {"/adhocrun": {"post": {
            "operationId": "runAdhocDatasetExport",
            "parameters": [*_COMMON_HEADERS,
                           {"name": "Content-Type", "in": "header", "required": True,
                            "schema": {"type": "string", "enum": ["application/json"]}},
                           {"name": "Accept", "in": "header", "required": True,
                            "schema": {"type": "string",
                                       "enum": ["application/vnd.adobe.adhoc.dataset.activation+json; version=1"]}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["activationInfo"], "additionalProperties": False,
                "properties": {"activationInfo": {
                    "type": "object", "required": ["destinations"], "additionalProperties": False,
                    "properties": {"destinations": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["flowId", "datasets"], "additionalProperties": False,
                        "properties": {"flowId": {"type": "string"}, "datasets": {
                            "type": "array", "minItems": 1, "items": {
                                "type": "object", "required": ["id"], "additionalProperties": False,
                                "properties": {"id": {"type": "string"}}}}}}}}}}}}}},
            "responses": {"200": {"description": "runs started"}}}}},
    }),
    # Adobe's Dataset Service API (dataset-service.yaml in AdobeDocs/experience-platform-apis).
    "dataset-service (API reference)": ("/data/foundation/dataset", {
        "openapi": "3.0.1", "info": {"title": "Dataset Service", "version": "1"},
        "components": {"schemas": {"LabelPayload": {"type": "object", "properties": {
            "labels": {"type": "array", "items": {"type": "string"}},
            "optionalLabels": {"type": "array", "items": {"type": "object"}}}}}},
        "paths": {"/datasets/{DATASET_ID}/labels": {
            "parameters": [{"name": "DATASET_ID", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"operationId": "retrieveDatasetLabels", "parameters": _COMMON_HEADERS,
                    "responses": {"200": {"description": "labels"}}},
            "post": {"operationId": "addDatasetLabels",
                     "parameters": [*_COMMON_HEADERS, {"name": "Content-Type", "in": "header", "required": True,
                                                       "schema": {"type": "string"}}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/LabelPayload"}}}},
                     "responses": {"201": {"description": "created"}}},
            "put": {"operationId": "updateDatasetLabels",
                    "parameters": [*_COMMON_HEADERS,
                                   {"name": "Content-Type", "in": "header", "required": True, "schema": {"type": "string"}},
                                   {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/LabelPayload"}}}},
                    "responses": {"200": {"description": "updated"}}},
        }},
    }),
}


# Where a spec contradicts itself the double cannot hold a request to both halves; each
# waiver names the operation and the one check it skips. batch-ingestion.yaml's
# uploadLargeFilePart requires the header Content-Type: application/octet-stream (enum) but
# declares a multipart/form-data body; Adobe's guide sends the chunk as octet-stream bytes.
SPEC_CONFLICTS = {
    ("patch", "/data/foundation/import/batches/{batchId}/datasets/{datasetId}/files/{filePath}"):
        "Content for the following mimetype not found: application/octet-stream",
}


# Where a spec's body schema contradicts Adobe's own guide for the same call, the request is
# held to a corrected schema instead (and recorded in ``SpecRegistry.waived``). Each entry
# names the operation, why, and the schema that replaces the spec's for the body.
# schema-registry.yaml's patchSchema types ``value`` as a string, but the schema guide
# ("Enable a schema for Real-Time Customer Profile") and aepp's enableSchemaForRealTime send
# ``{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}``: an array. The
# corrected schema allows exactly that array, and a string everywhere else.
BODY_WAIVERS = {
    ("patch", "/data/foundation/schemaregistry/tenant/schemas/{SCHEMA_ID}"): (
        "patchSchema: meta:immutableTags takes an array of strings (schema guide), the spec says string",
        {"type": "array", "items": {
            "type": "object", "required": ["op", "path"],
            "properties": {"op": {"type": "string"}, "path": {"type": "string"}},
            "if": {"properties": {"path": {"const": "/meta:immutableTags"}}},
            "then": {"properties": {"value": {"type": "array", "items": {"type": "string"}}}},
            "else": {"properties": {"value": {"type": "string"}}}}}),
}

# Flow Service's PATCH /flows/{id} is in two specs: flow-service.yaml (a generic patch with
# upper-case ops) and destinations.yaml (patchFlowById, the contract for destination
# dataflows: lower-case RFC 6902 ops whose value is a segment or profile selector). A
# request that edits an activation dataflow's selectors is held to destinations.yaml only.
ACTIVATION_PATCH = ("patch", "/data/foundation/flowservice/flows/{id}")
ACTIVATION_PATHS = ("/transformations/",)


def _activation_patch(body: bytes | None) -> bool:
    import json

    try:
        ops = json.loads(body or b"null")
    except ValueError:
        return False
    return isinstance(ops, list) and any(isinstance(o, dict) and str(o.get("path", "")).startswith(ACTIVATION_PATHS)
                                         for o in ops)


def _relax_oneof(spec: dict) -> None:
    """destinations.yaml's ``PatchFlowItem.value`` is a ``oneOf`` of selectors of which three
    (BatchSegmentSelector, its _V2 and EnrichmentInfo_V2 variants) accept the same segment
    selector, so no segment selector can ever match exactly one: read it as ``anyOf``."""
    item = spec.get("components", {}).get("schemas", {}).get("PatchFlowItem", {})
    value = item.get("properties", {}).get("value", {})
    if "oneOf" in value:
        value["anyOf"] = value.pop("oneOf")


class SpecViolation(Exception):
    """A request that does not validate against its operation (or matches none)."""


@dataclass(frozen=True)
class Operation:
    spec: str
    base: str
    template: str  # path template within the spec
    method: str
    operation_id: str

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.base}{self.template}"


class _Request:
    """The openapi-core request protocol over a raw HTTP request."""

    def __init__(self, path: str, method: str, headers: dict, query: str, body: bytes | None, pattern: str,
                 path_params: dict):
        self.host_url = "http://double"
        self.path = path
        self.method = method.lower()
        self.body = body or None
        hdrs = Headers(list(headers.items()))
        self.content_type = (hdrs.get("Content-Type") or "").lower()
        self.parameters = RequestParameters(query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
                                            header=hdrs, path=path_params)
        self.path_pattern = pattern
        self.full_url_pattern = self.host_url + pattern


def _fix_responses(spec: dict) -> None:
    for item in spec.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                op["responses"] = {str(k): v for k, v in op["responses"].items()}


def _ref_rewrite(node):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/definitions/"):
                out[k] = "#/components/schemas/" + v[len("#/definitions/"):]
            elif k == "discriminator" and isinstance(v, str):
                continue  # Swagger 2 names a property; OAS 3 wants an object
            elif k.startswith("x-"):
                continue
            else:
                out[k] = _ref_rewrite(v)
        return out
    if isinstance(node, list):
        return [_ref_rewrite(v) for v in node]
    return node


_PARAM_SCHEMA_KEYS = ("type", "format", "enum", "items", "default", "minimum", "maximum", "pattern")


def swagger2_to_oas3(spec: dict) -> dict:
    """The parts of a Swagger 2.0 spec that request validation needs, as OpenAPI 3.0."""
    global_params = spec.get("parameters", {})
    consumes_default = spec.get("consumes") or ["application/json"]

    def resolve(p: dict) -> dict:
        if "$ref" in p:
            return global_params[p["$ref"].rsplit("/", 1)[-1]]
        return p

    paths = {}
    for template, item in spec.get("paths", {}).items():
        new_item = {}
        shared = [resolve(p) for p in item.get("parameters", [])]
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete", "head"):
                continue
            params, body = [], None
            for p in [*shared, *(resolve(p) for p in op.get("parameters", []))]:
                if p["in"] == "body":
                    body = p
                    continue
                if p["in"] == "formData":
                    continue
                schema = {k: p[k] for k in _PARAM_SCHEMA_KEYS if k in p}
                params.append({"name": p["name"], "in": p["in"], "required": bool(p.get("required")),
                               "schema": _ref_rewrite(schema or {"type": "string"})})
            new_op = {"operationId": op.get("operationId", f"{method} {template}"), "parameters": params,
                      "responses": {str(k): {"description": str(v.get("description", ""))}
                                    for k, v in op.get("responses", {"200": {}}).items()}}
            if body is not None:
                cts = op.get("consumes") or consumes_default
                new_op["requestBody"] = {"required": bool(body.get("required")),
                                         "content": {ct: {"schema": _ref_rewrite(body.get("schema", {}))} for ct in cts}}
            new_item[method] = new_op
        paths[template] = new_item
    return {"openapi": "3.0.1", "info": {"title": spec["info"]["title"], "version": spec["info"]["version"]},
            "paths": paths, "components": {"schemas": _ref_rewrite(spec.get("definitions", {}))}}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template.rstrip("/") or "/")
    rx = "".join(f"(?P<{re.sub(r'[^A-Za-z0-9_]', '_', p[1:-1])}>[^/]+)" if p.startswith("{") else re.escape(p)
                 for p in parts)
    return re.compile("^" + rx + "/?$")


class SpecRegistry:
    """All specs, loaded once; finds and validates the operation of a request."""

    def __init__(self, folder: Path | None = None):
        folder = folder or spec_dir()
        self._apps: dict[str, OpenAPI] = {}
        self._specs: dict[str, dict] = {}
        # (base, template, spec name, regex, methods, path parameter names)
        self._routes: list[tuple[str, str, str, re.Pattern, list[str], list[str]]] = []
        for fname, base in SPEC_FILES.items():
            with open(folder / fname, encoding="utf-8") as fh:
                raw = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            self._add(fname, base, raw)
        for name, (base, raw) in EXTRA_SPECS.items():
            self._add(name, base, copy.deepcopy(raw))
        self.waived: list[str] = []  # requests accepted under SPEC_CONFLICTS
        # Most specific first: literal segments beat templates (/flows/search before /flows/{id}).


    def _add(self, name: str, base: str, raw: dict) -> None:
        spec = swagger2_to_oas3(raw) if raw.get("swagger") else raw
        _fix_responses(spec)
        if name == "destinations.yaml":
            _relax_oneof(spec)
        spec["servers"] = [{"url": "/"}]
        self._apps[name] = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        self._specs[name] = spec
        for template, item in spec["paths"].items():
            methods = [m for m in item if m in ("get", "post", "put", "patch", "delete", "head")]
            names = re.findall(r"\{([^}]+)\}", template)
            self._routes.append((base, template, name, _template_regex(template), methods, names))

    def match(self, path: str, method: str) -> list[tuple[Operation, dict]]:
        """Every operation (one per spec that defines it) for a raw request path (URL-encoded) and
        method, with its path parameters; literal segments win over templates."""
        method = method.lower()
        candidates = []
        for base, template, name, rx, methods, names in self._routes:
            if not path.startswith(base + "/") and path != base:
                continue
            m = rx.match(path[len(base):] or "/")
            if m:
                candidates.append((base, template, name, methods, names, m))
        if not candidates:
            raise SpecViolation(f"{method.upper()} {path}: no operation in the AEP specs has this path")
        found = [c for c in candidates if method in c[3]]
        if not found:
            allowed = sorted({m.upper() for c in candidates for m in c[3]})
            raise SpecViolation(f"{method.upper()} {path}: method not in the spec (allowed: {', '.join(allowed)})")
        fewest = min(c[1].count("{") for c in found)
        ops = []
        for base, template, name, _methods, names, m in found:
            if template.count("{") != fewest:
                continue
            op_id = self._specs[name]["paths"][template][method].get("operationId") or f"{method} {template}"
            ops.append((Operation(name, base, template, method, op_id), dict(zip(names, m.groups()))))
        return ops

    def validate(self, path: str, method: str, headers: dict, query: str,
                 body: bytes | None) -> tuple[Operation, dict[str, str]]:
        """Validate one request against its operation; when several specs define the same
        operation (Flow Service: sources and destinations), one of them must accept it.
        Return the operation and its (raw) path parameters; raise :class:`SpecViolation` naming what is wrong."""
        problems = []
        candidates = self.match(path, method)
        if (method.lower(), ACTIVATION_PATCH[1]) in {(o.method, o.base + o.template) for o, _ in candidates} \
                and _activation_patch(body):
            candidates = [(o, p) for o, p in candidates if o.spec == "destinations.yaml"]
        for op, params in candidates:
            req = _Request(path[len(op.base):] or "/", method, headers, query, body, op.template, params)
            try:
                self._apps[op.spec].validate_request(req)
                return op, params
            except Exception as exc:  # openapi-core raises a family of validation errors
                waived = SPEC_CONFLICTS.get((op.method, op.base + op.template))
                if waived and _only_problem(exc, waived):
                    self.waived.append(f"{op.key}: {waived}")
                    return op, params
                body_waiver = BODY_WAIVERS.get((op.method, op.base + op.template))
                if body_waiver and _body_ok(body, body_waiver[1]) and _only_body_problem(exc):
                    self.waived.append(f"{op.key}: {body_waiver[0]}")
                    return op, params
                problems.append(f"{op.key} ({op.operation_id} in {op.spec}): {_describe(exc)}")
        raise SpecViolation(" | ".join(problems))


def _body_ok(body: bytes | None, schema: dict) -> bool:
    import json

    import jsonschema

    try:
        jsonschema.validate(json.loads(body or b"null"), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def _only_body_problem(exc: BaseException) -> bool:
    """True when openapi-core refused the request for its body alone (headers and
    parameters were fine)."""
    return type(exc).__name__ in ("InvalidRequestBody", "RequestBodyValidationError")


def _only_problem(exc: BaseException, text: str) -> bool:
    """True when the validation failed for the waived reason alone."""
    cur: BaseException | None = exc
    while cur is not None:
        if text in str(cur):
            return not getattr(exc, "schema_errors", None)
        cur = cur.__cause__ or cur.__context__
    return False


def _describe(exc: BaseException) -> str:
    causes = []
    cur: BaseException | None = exc
    while cur is not None and len(causes) < 3:
        text = str(cur)
        if not any(text in c for c in causes):
            causes.append(f"{type(cur).__name__}: {text}")
        cur = cur.__cause__ or cur.__context__
    for e in getattr(exc, "schema_errors", None) or []:
        causes.append(f"at {'/'.join(map(str, e.absolute_path))}: {e.message}")
    return " <- ".join(causes)[:2000]
