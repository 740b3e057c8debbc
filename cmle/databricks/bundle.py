"""Read ``databricks.yml`` and resolve one target into Jobs API 2.2 job settings.

The bundle is the single definition of the Databricks job: the Databricks CLI deploys it
(``databricks bundle deploy``) and :mod:`cmle.databricks.deploy` deploys the settings this
module derives from it, for users without the CLI. The resolution follows the CLI's rules
for what this bundle uses:

- variables: ``variables`` values from ``vars`` (``--var``) over ``BUNDLE_VAR_<name>`` over
  the target's ``variables`` over the ``default``;
- references ``${var.*}``, ``${bundle.name|target}``, ``${workspace.*}`` (``root_path``,
  ``file_path``, ``artifact_path``, ``current_user.userName|short_name``); ``{{job.*}}``
  dynamic values are left for the Jobs service;
- targets: the ``default: true`` target unless one is named; the target's ``workspace``,
  ``artifacts`` and ``resources`` are merged over the top level (job tasks by ``task_key``,
  job clusters by ``job_cluster_key``, environments by ``environment_key``, parameters by
  ``name``);
- ``mode: development``: every workspace path must hold the user's name (the CLI refuses the
  bundle otherwise: :func:`check_development_paths`); the job name gets the
  ``[dev <short_name>]`` prefix, a ``dev`` tag, and its schedule is paused.

Everything here is pure: no workspace calls. The current user, when needed, is passed in.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from cmle.errors import ConfigError

DEFAULT_BUNDLE = "databricks.yml"
# The CLI's default workspace paths (relative to the user's home unless a target sets them).
_DEFAULT_ROOT = "/Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}"
_REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
# Lists inside a job that targets merge item by item, keyed by this field.
_MERGE_KEYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key",
               "parameters": "name"}
# Keys a bundle job resource may hold that are not part of the Jobs API settings.
_BUNDLE_ONLY_JOB_KEYS = ("permissions",)
USER_PLACEHOLDER = "${workspace.current_user.userName}"
_WORKSPACE_PATHS = ("root_path", "file_path", "artifact_path")


@dataclass(frozen=True)
class BundleJob:
    """One job of a bundle, resolved for one target."""

    bundle_name: str
    target: str
    mode: str  # "development", "production" or ""
    key: str  # the key under resources.jobs
    settings: dict[str, Any]  # Jobs API 2.2 JobSettings JSON
    workspace: dict[str, str]  # root_path, file_path, artifact_path
    artifacts: dict[str, Any] = field(default_factory=dict)
    root: Path = Path(".")  # the bundle's folder

    @property
    def name(self) -> str:
        return self.settings["name"]


def load_bundle(path: str | os.PathLike = DEFAULT_BUNDLE) -> dict[str, Any]:
    """The parsed bundle file; ConfigError if it is missing or not a bundle."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"bundle file {p} does not exist; run from the project folder or pass --bundle PATH")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"bundle file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("bundle"), dict) or "name" not in data["bundle"]:
        raise ConfigError(f"bundle file {p} has no bundle.name; is it a Databricks bundle?")
    return data


def select_target(bundle: Mapping[str, Any], target: str | None = None) -> str:
    """The target to use: ``target`` if given (it must exist), else the one marked ``default: true``."""
    targets = bundle.get("targets") or {}
    if target:
        if target not in targets:
            raise ConfigError(f"bundle target {target!r} is not defined; targets: {', '.join(targets) or 'none'}")
        return target
    defaults = [name for name, t in targets.items() if (t or {}).get("default")]
    if len(defaults) == 1:
        return defaults[0]
    if not targets:
        return "default"
    raise ConfigError(f"no bundle target given and {len(defaults)} targets are marked default; "
                      f"pass --target (one of {', '.join(targets)})")


def merge(base: Any, over: Any, key: str | None = None) -> Any:
    """``over`` merged into ``base`` as the CLI merges a target into the top level."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(over, list) and key in _MERGE_KEYS:
        item_key = _MERGE_KEYS[key]
        out = [copy.deepcopy(x) for x in base]
        index = {x.get(item_key): i for i, x in enumerate(out) if isinstance(x, dict)}
        for item in over:
            k = item.get(item_key) if isinstance(item, dict) else None
            if k is not None and k in index:
                out[index[k]] = merge(out[index[k]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(over)


def variable_values(bundle: Mapping[str, Any], target: str, overrides: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every declared variable's value (unresolved references kept); ConfigError if one has none."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    declared = bundle.get("variables") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ConfigError(f"bundle variable(s) {', '.join(unknown)} are not declared in the bundle; "
                          f"declared: {', '.join(declared)}")
    target_vars = ((bundle.get("targets") or {}).get(target) or {}).get("variables") or {}
    values = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        if "lookup" in spec:
            raise ConfigError(f"bundle variable {name} uses a lookup, which only the Databricks CLI resolves; "
                              f"give it a value with --var {name}=... instead")
        in_target = target_vars.get(name)
        if isinstance(in_target, dict) and "default" in in_target:
            in_target = in_target["default"]
        for candidate in (overrides.get(name), env.get(f"BUNDLE_VAR_{name}"), in_target, spec.get("default")):
            if candidate is not None:
                values[name] = candidate
                break
        else:
            raise ConfigError(f"bundle variable {name} has no value for target {target}; set it with "
                              f"--var {name}=... or BUNDLE_VAR_{name}")
    return values


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    node: Any = context
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def interpolate(obj: Any, context: Mapping[str, Any], keep: tuple[str, ...] = ()) -> Any:
    """``obj`` with every ``${path}`` replaced from ``context``.

    A string that is exactly one reference takes the referenced value's type (a number stays
    a number). References to paths starting with one of ``keep`` are left as they are.
    """
    if isinstance(obj, dict):
        return {k: interpolate(v, context, keep) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, context, keep) for v in obj]
    if not isinstance(obj, str) or "${" not in obj:
        return obj

    def value(path: str) -> Any:
        if path.startswith(keep):
            return "${" + path + "}"
        try:
            return _lookup(path, context)
        except KeyError:
            raise ConfigError(f"bundle reference ${{{path}}} is not defined "
                              "(known: ${var.*}, ${bundle.name}, ${bundle.target}, ${workspace.*})") from None

    whole = _REF.fullmatch(obj)
    if whole:
        return value(whole.group(1))
    return _REF.sub(lambda m: str(value(m.group(1))), obj)


def _resolve_context(context: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """The context with its own references resolved (a variable may refer to another)."""
    for _ in range(10):
        new = interpolate(context, context, keep)
        if new == context:
            return new
        context = new
    raise ConfigError("bundle references form a cycle (a variable refers to itself through others)")


def short_name(user_name: str) -> str:
    """The CLI's ``current_user.short_name``: the user name's local part, with ``_`` for other characters."""
    return re.sub(r"[^A-Za-z0-9]+", "_", user_name.split("@")[0]).strip("_").lower()


def _to_api(job: dict[str, Any], where: str) -> dict[str, Any]:
    """The job resource as Jobs API JobSettings JSON; ConfigError naming any field the API does not know."""
    from databricks.sdk.service.jobs import JobSettings

    api = {k: v for k, v in job.items() if k not in _BUNDLE_ONLY_JOB_KEYS}
    round_trip = JobSettings.from_dict(api).as_dict()
    dropped = _dropped_paths(api, round_trip)
    if dropped:
        raise ConfigError(f"{where}: unknown job field(s) {', '.join(dropped)} (not in the Jobs API 2.2 settings); "
                          "check the spelling against the Jobs API reference")
    return round_trip


def _dropped_paths(given: Any, kept: Any, prefix: str = "") -> list[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        out = []
        for k, v in given.items():
            if k not in kept:
                out.append(f"{prefix}{k}")
            else:
                out += _dropped_paths(v, kept[k], f"{prefix}{k}.")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [p for i, (a, b) in enumerate(zip(given, kept)) for p in _dropped_paths(a, b, f"{prefix}{i}.")]
    return []


def _development(settings: dict[str, Any], user_name: str) -> dict[str, Any]:
    """What the CLI's ``mode: development`` does to a job: name prefix, dev tag, schedule paused."""
    short = short_name(user_name) if user_name != USER_PLACEHOLDER else "${workspace.current_user.short_name}"
    settings = dict(settings)
    settings["name"] = f"[dev {short}] {settings['name']}"
    settings["tags"] = {**(settings.get("tags") or {}), "dev": short}
    for trigger in ("schedule", "trigger", "continuous"):
        if isinstance(settings.get(trigger), dict):
            settings[trigger] = {**settings[trigger], "pause_status": "PAUSED"}
    return settings


def check_development_paths(workspace: Mapping[str, str], user_name: str | None, target: str) -> None:
    """The Databricks CLI's rule for ``mode: development``: every workspace path (root, files,
    artifacts) holds the current user's name or short name (or starts with ``~/``), so that two
    developers' deployments never share a folder. ConfigError naming the first path that does not."""
    names = ([user_name, short_name(user_name)] if user_name else
             ["${workspace.current_user.userName}", "${workspace.current_user.short_name}"])
    for key in _WORKSPACE_PATHS:
        path = str(workspace.get(key) or "")
        if path and not path.startswith("~/") and not any(n in path for n in names):
            raise ConfigError(f"bundle target {target}: workspace.{key} = {path} must contain the current user name "
                              "(${workspace.current_user.short_name}) or start with ~/ in mode: development; the "
                              "Databricks CLI refuses it otherwise")


def _context(bundle: Mapping[str, Any], target: str, variables: Mapping[str, Any] | None,
             env: Mapping[str, str] | None, user_name: str | None, keep: tuple[str, ...]) -> dict[str, Any]:
    """What ``${...}`` references resolve against: ``bundle``, ``var`` and ``workspace`` (paths, user)."""
    tdef = (bundle.get("targets") or {}).get(target) or {}
    workspace = {"root_path": _DEFAULT_ROOT, "file_path": "${workspace.root_path}/files",
                 "artifact_path": "${workspace.root_path}/artifacts"}
    workspace.update({k: v for k, v in merge(bundle.get("workspace") or {}, tdef.get("workspace") or {}).items()
                      if k in _WORKSPACE_PATHS})
    if user_name:
        workspace["current_user"] = {"userName": user_name, "short_name": short_name(user_name)}
    context = {"bundle": {"name": bundle["bundle"]["name"], "target": target},
               "var": variable_values(bundle, target, variables, env), "workspace": workspace}
    return _resolve_context(context, keep)


def resolve_job(path: str | os.PathLike = DEFAULT_BUNDLE, target: str | None = None, job: str | None = None,
                variables: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                user_name: str | None = None) -> BundleJob:
    """The bundle's job (``job``, or the first job it declares) resolved for ``target``.

    ``user_name`` is the deploying user (``workspace.current_user.userName``); without it
    (dry run) references to the user stay as ``${workspace.current_user...}``.
    """
    path = Path(path)
    bundle = load_bundle(path)
    target = select_target(bundle, target)
    tdef = (bundle.get("targets") or {}).get(target) or {}
    mode = tdef.get("mode", "") or ""
    if mode not in ("", "development", "production"):
        raise ConfigError(f"bundle target {target}: mode {mode!r} must be development or production")

    jobs = merge((bundle.get("resources") or {}).get("jobs") or {}, (tdef.get("resources") or {}).get("jobs") or {},
                 "jobs")
    if job is None:  # the first job the bundle declares (cmle's: the pipeline)
        if not jobs:
            raise ConfigError("the bundle defines no job under resources.jobs")
        job = next(iter(jobs))
    if job not in jobs:
        raise ConfigError(f"the bundle has no job {job!r}; jobs: {', '.join(jobs)}")

    keep = () if user_name else ("workspace.current_user",)
    context = _context(bundle, target, variables, env, user_name, keep)
    where = f"{path} resources.jobs.{job} (target {target})"
    resolved = interpolate(jobs[job], context, keep)
    settings = _to_api(resolved, where)
    if not settings.get("name"):
        raise ConfigError(f"{where}: the job has no name")
    if mode == "development":
        check_development_paths(context["workspace"], user_name, target)
        settings = _development(settings, user_name or USER_PLACEHOLDER)
    artifacts = interpolate(merge(bundle.get("artifacts") or {}, tdef.get("artifacts") or {}), context, keep)
    return BundleJob(bundle_name=context["bundle"]["name"], target=target, mode=mode, key=job, settings=settings,
                     workspace={k: context["workspace"][k] for k in _WORKSPACE_PATHS}, artifacts=artifacts,
                     root=path.resolve().parent)


def is_local_path(dependency: str) -> bool:
    """True for a dependency the deployer must upload: a relative path such as ``./dist/*.whl``
    (not a workspace or volume path, not a URI, not a pip requirement)."""
    if dependency.startswith("/") or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", dependency):
        return False
    return dependency.startswith(".") or dependency.endswith(".whl")


def with_wheel(settings: Mapping[str, Any], remote_wheel: str) -> dict[str, Any]:
    """``settings`` with every local wheel dependency (environments and task libraries) replaced by ``remote_wheel``."""
    out = copy.deepcopy(dict(settings))
    for env_ in out.get("environments") or []:
        spec = env_.get("spec") or {}
        spec["dependencies"] = [remote_wheel if is_local_path(d) else d for d in spec.get("dependencies") or []]
    for task in out.get("tasks") or []:
        for lib in task.get("libraries") or []:
            if isinstance(lib.get("whl"), str) and is_local_path(lib["whl"]):
                lib["whl"] = remote_wheel
    return out


def workspace_files(settings: Any, file_path: str) -> list[str]:
    """Every workspace path under ``file_path`` the settings refer to (files the deployer syncs), sorted."""
    found: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)
        elif isinstance(obj, str) and obj.startswith(file_path.rstrip("/") + "/"):
            found.add(obj)

    walk(settings)
    return sorted(found)
