"""Unity Catalog registry rules: three-level model names, aliases only, full signatures.

MLflow uses Unity Catalog when the registry URI is ``databricks-uc[://profile]``, or when it
is unset and the tracking URI is ``databricks[://profile]`` (MLflow 3's default). There,
model names are ``catalog.schema.model``, stage transitions are refused (aliases only), and a
model version needs a signature with inputs and outputs.
"""

from __future__ import annotations

import re

from cmle.errors import ConfigError

UC_SCHEME = "databricks-uc"
# Unquoted Unity Catalog identifiers: letters, digits and underscores.
_PART = re.compile(r"^[A-Za-z0-9_]+$")


def _scheme(uri: str) -> str:
    return (uri or "").split(":", 1)[0].strip().lower()


def effective_registry_uri(tracking_uri: str, registry_uri: str = "") -> str:
    """The registry MLflow will use for these settings (it defaults from the tracking URI)."""
    if registry_uri:
        return registry_uri
    if _scheme(tracking_uri) == "databricks":
        return UC_SCHEME + tracking_uri[len("databricks"):]
    return tracking_uri


def is_unity_catalog(tracking_uri: str, registry_uri: str = "") -> bool:
    """True when the registry in use is Unity Catalog."""
    return _scheme(effective_registry_uri(tracking_uri, registry_uri)) == UC_SCHEME


def check_model_name(name: str) -> str:
    """``name`` if it is a three-level ``catalog.schema.model`` name; ConfigError saying how to fix it otherwise."""
    parts = (name or "").split(".")
    if len(parts) != 3 or not all(_PART.match(p) for p in parts):
        raise ConfigError(f"[Cloud] model_name = {name!r}: the Unity Catalog registry (registry_uri = {UC_SCHEME}) "
                          "needs a three-level name catalog.schema.model of letters, digits and _ "
                          "(for example main.cmle.cmle_propensity_model); set [Cloud] model_name or "
                          "CMLE_CLOUD_MODEL_NAME")
    return name


def check_settings(settings) -> None:
    """ConfigError if the settings use Unity Catalog with a model name it cannot hold."""
    if is_unity_catalog(settings.mlflow.tracking_uri, settings.mlflow.registry_uri):
        check_model_name(settings.cloud.model_name)
