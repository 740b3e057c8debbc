"""Typed settings from ``conf/config.ini``, environment overrides and secrets.

Precedence (highest first): an environment variable ``CMLE_<SECTION>_<KEY>`` (for example
``CMLE_AUTHENTICATION_CLIENT_SECRET``), a git-ignored ``<config>.local.ini`` next to the
file, the file itself. The file is chosen by parameter, else ``CMLE_CONFIG``, else
``conf/config.ini`` in the working directory, else the template shipped in the package.

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value; their
values are registered with :mod:`cmle.redact` so that no log line can carry them.
"""

from __future__ import annotations

import configparser
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cmle import redact
from cmle.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "CMLE_"
CONFIG_ENV = "CMLE_CONFIG"
DEFAULT_CONFIG = Path("conf") / "config.ini"

BACKENDS = ("local", "aep")
ENGINES = ("local", "spark")
ENVIRONMENTS_HINT = "prod, stage, int or dev"
DATA_FORMATS = ("parquet", "csv", "json")
COMPRESSIONS = ("gzip", "snappy", "zstd", "none")
QS_SSLMODES = ("require", "verify-ca", "verify-full", "prefer", "allow", "disable")
EXPORT_DESTINATIONS = ("dlz", "s3", "azure_blob", "adls", "gcs")


class Secret:
    """A secret string: usable through :meth:`get`, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        redact.register(value)

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _meta(*, default: Any = None, required: bool = False, secret: bool = False, choices=None, kind=str,
          help: str = ""):
    return field(default=default, metadata={"required": required, "secret": secret, "choices": choices,
                                            "kind": kind, "help": help})


@dataclass(frozen=True)
class PlatformSettings:
    """Section ``[Platform]``."""

    ims_org_id: str = _meta(default="", help="IMS organisation id (AEP backend)")
    sandbox_name: str = _meta(default="prod", help="AEP sandbox name")
    environment: str = _meta(default="prod", help="AEP environment: " + ENVIRONMENTS_HINT + " (mapped to hosts as aepp maps it)")
    backend: str = _meta(default="local", choices=BACKENDS, help="local (embedded) or aep")
    local_root: str = _meta(default=".cmle/platform", help="folder of the embedded platform")
    tenant_id: str = _meta(default="cmle", help="tenant id of the embedded platform: custom fields live under "
                                                "`_<tenant_id>` (AEP reads its own)")
    owner: str = _meta(default="cmle", help="who the resources belong to: every name carries it (with a hash), "
                                            "and cleanup deletes only what this owner created")
    platform_url: str = _meta(default="", help="override of the AEP API base URL (private endpoints, proxies, test doubles)")
    ims_url: str = _meta(default="", help="override of the IMS base URL")
    request_timeout: float = _meta(default=60.0, kind=float, help="seconds per HTTP request")
    qs_sslmode: str = _meta(default="require", choices=QS_SSLMODES,
                            help="sslmode of Query Service connections (require for AEP; disable only for a "
                                 "local test server)")
    poll_interval: float = _meta(default=10.0, kind=float,
                                 help="seconds between polls of AEP jobs (batches, queries, runs, segment jobs)")
    retry_backoff: float = _meta(default=1.0, kind=float,
                                 help="seconds before the first retry of a failed safe AEP call (doubles each time)")
    create_lookup_s: float = _meta(default=120.0, kind=float,
                                   help="seconds a creation whose answer was lost is looked up before it is sent "
                                        "again (covers the request timeout and AEP's gateway timeout)")
    engine: str = _meta(default="local", choices=ENGINES, help="local (DuckDB/pandas) or spark")
    lock_wait: float = _meta(default=1800.0, kind=float,
                             help="seconds a run waits for another run of the same owner (or a registration) "
                                  "to finish before it gives up naming that run")


@dataclass(frozen=True)
class AuthenticationSettings:
    """Section ``[Authentication]``."""

    client_id: str = _meta(default="", help="OAuth server-to-server client id")
    client_secret: Secret = _meta(default=None, secret=True, help="set CMLE_AUTHENTICATION_CLIENT_SECRET")
    scopes: str = _meta(default="openid, AdobeID, read_organizations, additional_info.projectedProductContext, "
                                "session", help="OAuth scopes, comma separated")
    tech_acct_id: str = _meta(default="", help="technical account id (kept for the CMLE template; unused by OAuth)")


@dataclass(frozen=True)
class CloudSettings:
    """Section ``[Cloud]``."""

    export_path: str = _meta(default="cmle/egress", help="folder of dataset exports in cloud storage")
    import_path: str = _meta(default="cmle/ingress", help="folder of score files in cloud storage")
    data_format: str = _meta(default="parquet", choices=DATA_FORMATS, help="export file format")
    compression_type: str = _meta(default="gzip", choices=COMPRESSIONS, help="export compression")
    model_name: str = _meta(default="cmle_propensity_model",
                            help="registered model name (three-level catalog.schema.model on Unity Catalog)")
    storage_url: str = _meta(default="", help="cloud storage root of exports and score files: a folder, s3://, "
                                              "abfss://, gs:// (default: <local_root>/landing)")
    export_destination: str = _meta(default="dlz", choices=EXPORT_DESTINATIONS,
                                    help="AEP backend: where dataset exports go (dlz = Data Landing Zone)")
    destination_connection_id: str = _meta(default="", help="AEP backend, export_destination other than dlz: id "
                                                            "of the destination base connection set up in AEP")


@dataclass(frozen=True)
class MLflowSettings:
    """Section ``[MLflow]``."""

    tracking_uri: str = _meta(default="sqlite:///mlflow.db",
                              help="MLflow tracking URI (MLFLOW_TRACKING_URI in the environment wins over it)")
    registry_uri: str = _meta(default="", help="MLflow registry URI (default: the tracking URI; databricks-uc for "
                                               "Unity Catalog)")
    experiment_name: str = _meta(default="cmle", help="MLflow experiment name")


@dataclass(frozen=True)
class ModelSettings:
    """Section ``[Model]``."""

    spec: str = _meta(default="conf/models/synthetic.yaml",
                      help="model spec (YAML): the data, the goal and the features; see docs/model-spec.md")


@dataclass(frozen=True)
class MonitorSettings:
    """Section ``[Monitor]``: drift thresholds and the retraining rule (docs/monitoring.md)."""

    psi_warn: float = _meta(default=0.1, kind=float, help="PSI from which a feature or the score is a warning")
    psi_alert: float = _meta(default=0.25, kind=float, help="PSI from which a feature or the score is an alert")
    retrain_metric: str = _meta(default="psi_score",
                                choices=("psi_score", "psi_max_feature", "realised_auc", "realised_ece"),
                                help="the metric of the retraining rule")
    retrain_threshold: float = _meta(default=0.25, kind=float,
                                     help="breach above it (psi_*, realised_ece) or below it (realised_auc)")
    retrain_windows: int = _meta(default=3, kind=int, help="M: the last M monitoring windows are considered")
    retrain_violations: int = _meta(default=2, kind=int,
                                    help="N: retraining is due when at least N of them breach, the latest included")


@dataclass(frozen=True)
class Settings:
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    mlflow: MLflowSettings = field(default_factory=MLflowSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    source: str = ""  # the file the settings came from, for messages

    @property
    def local_root(self) -> Path:
        return Path(self.platform.local_root)

    @property
    def storage_url(self) -> str:
        """Root URL of 'cloud storage' (exports and score files)."""
        return self.cloud.storage_url or str(self.local_root / "landing")

    @property
    def work_dir(self) -> Path:
        """Local folder for side outputs that are not platform data (the synthetic oracle)."""
        return self.local_root.parent / "work"

    def public_dict(self) -> dict[str, str]:
        """Every non-secret setting as ``section.key -> value`` (safe to log)."""
        out = {}
        for section_name, section in SECTIONS.items():
            obj = getattr(self, section_name.lower())
            for f in fields(obj):
                if f.metadata.get("secret"):
                    continue
                out[f"{section_name}.{f.name}"] = str(getattr(obj, f.name))
        return out


SECTIONS: dict[str, type] = {
    "Platform": PlatformSettings,
    "Authentication": AuthenticationSettings,
    "Cloud": CloudSettings,
    "MLflow": MLflowSettings,
    "Model": ModelSettings,
    "Monitor": MonitorSettings,
}


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def resolve_config_path(path: str | os.PathLike | None = None, env: dict | None = None) -> Path | None:
    """The config file to read: the parameter, ``CMLE_CONFIG``, ``conf/config.ini``; None if none exists."""
    env = os.environ if env is None else env
    chosen = path or env.get(CONFIG_ENV) or ""
    if chosen:
        p = Path(chosen).expanduser()
        if not p.is_file():
            where = "the --config parameter" if path else CONFIG_ENV
            raise ConfigError(f"config file {p} (from {where}) does not exist; "
                              f"copy conf/config.ini from the project and point {where} at it")
        return p
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _convert(section: str, key: str, raw: str, f) -> Any:
    kind = f.metadata.get("kind", str)
    value: Any = raw.strip()
    if f.metadata.get("secret"):
        return Secret(value)
    if kind is int:
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"[{section}] {key} = {raw!r} is not a whole number") from None
        if value < 1:
            raise ConfigError(f"[{section}] {key} = {raw!r} must be at least 1")
        return value
    if kind is float:
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"[{section}] {key} = {raw!r} is not a number") from None
        if value <= 0:
            raise ConfigError(f"[{section}] {key} = {raw!r} must be positive")
        return value
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"[{section}] {key} = {raw!r} is not one of: {', '.join(choices)}")
    return value


def load_settings(path: str | os.PathLike | None = None, env: dict | None = None) -> Settings:
    """Load, merge and validate the settings; raise :class:`ConfigError` naming section and key."""
    env = dict(os.environ if env is None else env)
    cfg_path = resolve_config_path(path, env)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case as written
    files = []
    if cfg_path is not None:
        files.append(cfg_path)
        local = cfg_path.with_name(cfg_path.stem + ".local.ini")
        if local.is_file():
            files.append(local)
    # On Databricks, secrets come from the secret scope (a no-op elsewhere).
    from cmle.databricks.secrets import apply_databricks_secrets

    env = dict(apply_databricks_secrets(env, files))
    for f_ in files:
        try:
            with open(f_, encoding="utf-8") as fh:
                parser.read_file(fh, source=str(f_))
        except configparser.Error as exc:
            raise ConfigError(f"config file {f_} is malformed: {exc}") from None

    known = {s.lower(): s for s in SECTIONS}
    for sec in parser.sections():
        if sec.lower() not in known:
            raise ConfigError(f"config file {cfg_path}: unknown section [{sec}]; "
                              f"known sections are {', '.join(SECTIONS)}")

    built = {}
    for section, cls in SECTIONS.items():
        file_section = next((s for s in parser.sections() if s.lower() == section.lower()), None)
        values = {}
        valid = {f.name for f in fields(cls)}
        if file_section is not None:
            for key in parser[file_section]:
                if key.lower() not in valid:
                    raise ConfigError(f"[{section}] {key}: unknown key; known keys: {', '.join(sorted(valid))}")
        for f in fields(cls):
            raw = None
            if file_section is not None:
                for key in parser[file_section]:
                    if key.lower() == f.name:
                        raw = parser[file_section][key]
            raw = env.get(env_name(section, f.name), raw)
            if raw is None or (raw.strip() == "" and not f.metadata.get("secret")):
                if f.metadata.get("required"):
                    raise ConfigError(f"[{section}] {f.name} is missing; set it in the config file "
                                      f"or in {env_name(section, f.name)}")
                values[f.name] = Secret("") if f.metadata.get("secret") else f.default
                continue
            values[f.name] = _convert(section, f.name, raw, f)
        built[section.lower()] = cls(**values)

    _warn_unknown_env(env)
    _warn_secret_in_files(parser, files, env)
    settings = Settings(**built, source=str(cfg_path) if cfg_path else "<defaults>")
    _validate(settings)
    return _absolutise(settings)


# CMLE_* variables that are not settings overrides but are read elsewhere.
OTHER_ENV = {CONFIG_ENV, "CMLE_AEP_OPENAPI_DIR", "CMLE_PG_BIN", "CMLE_FAILPOINT", "CMLE_LOG_FILE", "CMLE_SECRET_SCOPE"}


def known_env_names() -> set[str]:
    """Every ``CMLE_*`` variable cmle reads."""
    return {env_name(sec, f.name) for sec, cls in SECTIONS.items() for f in fields(cls)} | OTHER_ENV


def _warn_unknown_env(env: dict) -> None:
    """A misspelt override would be ignored silently: say so, with the closest known name."""
    import difflib

    known = known_env_names()
    for key in sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k not in known):
        close = difflib.get_close_matches(key.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
        log.warning("environment variable %s is not a cmle setting and is ignored%s", key, hint)


def _warn_secret_in_files(parser: configparser.ConfigParser, files: list, env: dict) -> None:
    """A client secret belongs in the environment or a secret store, not in a file (outside
    Databricks, where the file is read from the secret scope's mount)."""
    if env.get("DATABRICKS_RUNTIME_VERSION"):
        return
    for sec in parser.sections():
        for key, value in parser[sec].items():
            if key.lower() == "client_secret" and value.strip():
                where = ", ".join(str(f) for f in files)
                log.warning("[%s] client_secret is set in a config file (%s): files get copied, committed and "
                            "shared; move it to the environment variable %s (or a secret store) and remove it "
                            "from the file", sec, where, env_name("Authentication", "client_secret"))
                return


def _validate(s: Settings) -> None:
    from cmle.databricks.unity_catalog import check_settings

    check_settings(s)  # Unity Catalog needs three-level model names
    m = s.monitor
    if m.psi_warn >= m.psi_alert:
        raise ConfigError(f"[Monitor] psi_warn = {m.psi_warn} must be below psi_alert = {m.psi_alert}")
    if m.retrain_violations > m.retrain_windows:
        raise ConfigError(f"[Monitor] retrain_violations = {m.retrain_violations} (N) cannot exceed "
                          f"retrain_windows = {m.retrain_windows} (M): N of the last M windows must breach")
    if s.platform.backend == "aep":
        missing = [(sec, key) for sec, key, val in (
            ("Platform", "ims_org_id", s.platform.ims_org_id),
            ("Platform", "sandbox_name", s.platform.sandbox_name),
            ("Authentication", "client_id", s.authentication.client_id),
            ("Authentication", "client_secret", s.authentication.client_secret),
            ("Authentication", "scopes", s.authentication.scopes),
        ) if not val]
        if missing:
            sec, key = missing[0]
            names = ", ".join(f"[{a}] {b}" for a, b in missing)
            raise ConfigError(f"backend = aep needs {names}; set [{sec}] {key} in the config file or "
                              f"{env_name(sec, key)} in the environment (secrets only in the environment)")
    if not s.platform.sandbox_name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"[Platform] sandbox_name = {s.platform.sandbox_name!r} is not a valid sandbox name")
    if not s.platform.tenant_id.replace("_", "").isalnum():
        raise ConfigError(f"[Platform] tenant_id = {s.platform.tenant_id!r} must be letters, digits and _")
    if not s.platform.owner.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"[Platform] owner = {s.platform.owner!r} must be letters, digits, - and _")
    for key in ("export_path", "import_path"):
        val = getattr(s.cloud, key)
        if not val or val.startswith("/") or ".." in val.split("/"):
            raise ConfigError(f"[Cloud] {key} = {val!r} must be a relative folder such as cmle/egress")
    if not s.cloud.model_name or any(c.isspace() for c in s.cloud.model_name):
        raise ConfigError(f"[Cloud] model_name = {s.cloud.model_name!r} must be a name without spaces")
    _check_model_name(s.cloud.model_name)
    if s.mlflow.tracking_uri.rstrip("/").endswith("mlruns") and s.mlflow.tracking_uri.startswith(("file:", ".", "/")):
        raise ConfigError(f"[MLflow] tracking_uri = {s.mlflow.tracking_uri!r}: MLflow 3 refuses the file store; "
                          "use sqlite:///mlflow.db or an http(s) server")


def _check_model_name(name: str) -> None:
    """The registry's own rule for model names, checked now rather than after training."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
    except MlflowException as exc:
        raise ConfigError(f"[Cloud] model_name = {name!r} is not a valid registered model name "
                          f"({exc.message.splitlines()[0]}); choose a name of letters, digits, '_', '-' and '.'") from None


def _absolutise(s: Settings) -> Settings:
    """Make the local root absolute now, so a later chdir (mlflow run) does not move it."""
    from dataclasses import replace

    root = Path(s.platform.local_root).expanduser()
    if not root.is_absolute():
        root = Path.cwd() / root
    return replace(s, platform=replace(s.platform, local_root=str(root)))
