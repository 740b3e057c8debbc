"""Model specs: what to predict, for whom, from which ExperienceEvent data (``conf/models/*.yaml``).

:func:`load_spec` reads a spec file, validates it against the JSON Schema
(``schema.json``) and the rules of :mod:`.model`, and returns a :class:`ModelSpec`; every
error names the file and line. :func:`spec_for` picks the spec a stage runs with: its
``spec`` parameter, else ``[Model] spec`` of the config, else the synthetic data's spec
shipped with the package. The format is documented in docs/model-spec.md.
"""

from __future__ import annotations

import difflib
import json
import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from cmle.modelspec.model import (
    DOES_NOT_OCCUR,
    OCCURS,
    DatasetRef,
    ModelSpec,
    SpecError,
    build,
)
from cmle.modelspec.yamlpos import dotted, line_of, load_with_lines

log = logging.getLogger(__name__)

DEFAULT_SPEC = "conf/models/synthetic.yaml"
PACKAGED = "synthetic.yaml"  # cmle/modelspec/examples/synthetic.yaml: conf/models/synthetic.yaml, shipped


@lru_cache(maxsize=1)
def json_schema() -> dict:
    return json.loads(resources.files("cmle.modelspec").joinpath("schema.json").read_text(encoding="utf-8"))


def _schema_errors(doc, lines: dict, source: str) -> list[SpecError]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: (line_of(lines, tuple(e.absolute_path)),
                                                                  list(map(str, e.absolute_path)))):
        path = tuple(err.absolute_path)
        message = err.message
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list((err.schema.get("properties") or {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                path = (*path, extra[0])
                close = difflib.get_close_matches(str(extra[0]), allowed, n=1)
                message = (f"unknown key {extra[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                           + f"; allowed here: {', '.join(allowed)}")
        elif err.validator == "oneOf":
            message = f"{err.instance!r} is not a valid value here ({_describe(err.schema)})"
        elif err.validator == "required":
            message = message.replace("is a required property", "is required here")
        out.append(SpecError(message, source, line_of(lines, path), path))
    return out


def _describe(schema: dict) -> str:
    return schema.get("description") or "see docs/model-spec.md"


def parse_spec(text: str, source: str = "<spec>") -> ModelSpec:
    """A :class:`ModelSpec` from YAML text; :class:`SpecError` (all schema errors at once) otherwise."""
    try:
        doc, lines = load_with_lines(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(f"not valid YAML: {getattr(exc, 'problem', exc)}", source,
                        mark.line + 1 if mark is not None else None) from None
    if not isinstance(doc, dict):
        raise SpecError("a model spec is a YAML mapping (version, name, events, goal, ...)", source, 1)
    errors = _schema_errors(doc, lines, source)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        first = errors[0]
        items = "; ".join(f"line {e.line} ({dotted(e.path)}): {e.reason}" for e in errors[:8])
        raise SpecError(f"{len(errors)} problems: {items}", source, first.line)
    return build(doc, lines, source)


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate the spec file ``path``."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"the spec file {p} does not exist; point [Model] spec (or the spec parameter) at a file "
                        "such as conf/models/synthetic.yaml, or write one with `cmle explore --write_spec`")
    return parse_spec(p.read_text(encoding="utf-8"), str(p))


def packaged_spec_text(name: str = PACKAGED) -> str:
    return resources.files("cmle.modelspec").joinpath("examples", name).read_text(encoding="utf-8")


def resolve_spec_path(settings, spec: str = "") -> Path | None:
    """The spec file to use (None: the packaged synthetic spec).

    ``spec`` (the stage parameter) wins over ``[Model] spec``. A relative path is looked up
    in the working directory, then next to the config file's folder (the project root when
    the config is ``conf/config.ini``), so jobs that run elsewhere find the project's specs.
    """
    chosen = (spec or "").strip() or settings.model.spec.strip()
    if not chosen:
        return None
    p = Path(chosen).expanduser()
    candidates = [p]
    if not p.is_absolute() and settings.source and not settings.source.startswith("<"):
        config = Path(settings.source).resolve()
        candidates += [config.parent.parent / p, config.parent / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    if chosen == DEFAULT_SPEC:
        return None  # the default spec, when the project's conf/ folder is not here: the packaged copy
    raise SpecError(f"the spec file {chosen} does not exist (looked in {', '.join(str(c) for c in candidates)}); "
                    "set [Model] spec or the spec parameter to an existing file")


def spec_for(settings, spec: str = "") -> ModelSpec:
    """The spec a stage runs with (see :func:`resolve_spec_path`)."""
    path = resolve_spec_path(settings, spec)
    if path is None:
        return _packaged()
    stat = path.stat()
    return _cached(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _cached(path: str, _mtime: int, _size: int) -> ModelSpec:
    return load_spec(path)


@lru_cache(maxsize=1)
def _packaged() -> ModelSpec:
    return parse_spec(packaged_spec_text(), DEFAULT_SPEC)


def spec_for_synthetic() -> ModelSpec:
    """The synthetic data's spec as shipped with the package (conf/models/synthetic.yaml)."""
    return _packaged()


def model_name(settings, spec: ModelSpec) -> str:
    """The registered model of this spec: its ``model_name``, else ``[Cloud] model_name``.

    A bare ``model_name`` on a registry with three-level names (Unity Catalog) takes the
    catalog and schema of ``[Cloud] model_name``.
    """
    configured = settings.cloud.model_name
    if not spec.model_name:
        return configured
    if spec.model_name.count(".") == 0 and configured.count(".") == 2:
        return configured.rsplit(".", 1)[0] + "." + spec.model_name
    return spec.model_name


__all__ = ["DEFAULT_SPEC", "DOES_NOT_OCCUR", "DatasetRef", "ModelSpec", "OCCURS", "SpecError", "json_schema",
           "load_spec", "model_name", "packaged_spec_text", "parse_spec", "resolve_spec_path", "spec_for", "spec_for_synthetic"]
