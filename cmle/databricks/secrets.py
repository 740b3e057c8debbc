"""Credentials on Databricks: a secret scope (``dbutils.secrets``) or the environment, never a file.

On Databricks (``DATABRICKS_RUNTIME_VERSION`` is set) every secret setting is looked up in
the secret scope ``cmle`` (or ``$CMLE_SECRET_SCOPE``) under the name of its environment
variable, e.g. ``CMLE_AUTHENTICATION_CLIENT_SECRET``; a variable already set in the
environment wins. A config file that holds a secret value is refused there, because files in
the workspace are readable by whoever can read the folder.

Config loading calls :func:`apply_databricks_secrets` (a no-op off Databricks)::

    env = apply_databricks_secrets(env, config_files)
"""

from __future__ import annotations

import configparser
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from cmle import redact
from cmle.errors import ConfigError

log = logging.getLogger(__name__)

SCOPE_ENV = "CMLE_SECRET_SCOPE"
DEFAULT_SCOPE = "cmle"
RUNTIME_ENV = "DATABRICKS_RUNTIME_VERSION"


def on_databricks(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Databricks cluster, serverless task or notebook."""
    env = os.environ if env is None else env
    return bool(env.get(RUNTIME_ENV))


def secret_settings() -> list[tuple[str, str]]:
    """``(section, key)`` of every secret setting in the config schema."""
    from cmle.config import SECTIONS

    return [(section, f.name) for section, cls in SECTIONS.items() for f in fields(cls) if f.metadata.get("secret")]


def secret_names() -> list[str]:
    """The environment variable names of the secret settings (also their key names in the scope)."""
    from cmle.config import env_name

    return [env_name(section, key) for section, key in secret_settings()]


def runtime_dbutils(env: Mapping[str, str] | None = None) -> Any:
    """The job/notebook ``dbutils`` of the Databricks runtime; ConfigError off Databricks.

    (Off the runtime databricks-sdk would build a remote dbutils from local credentials; the
    scope is only consulted on Databricks, so that is refused here.)
    """
    if not on_databricks(env):
        raise ConfigError("dbutils is not available; secret scopes are read only on Databricks "
                          "(elsewhere set the secrets as environment variables)")
    try:
        from databricks.sdk.runtime import dbutils
    except Exception as exc:  # noqa: BLE001 - the SDK falls back to remote auth and raises ValueError
        raise ConfigError(f"this Databricks runtime offers no dbutils ({type(exc).__name__}); "
                          "set the secrets as environment variables") from None
    if dbutils is None:
        raise ConfigError("this Databricks runtime offers no dbutils; set the secrets as environment variables")
    return dbutils


def scope_secrets(env: Mapping[str, str] | None = None, dbutils: Any = None) -> dict[str, str]:
    """Secrets from the scope as ``{env var name: value}``, for the names not already set in ``env``.

    A missing scope or key is not an error here (the config check then names the missing
    setting); the values are registered for redaction before they are returned.
    """
    env = os.environ if env is None else env
    wanted = [name for name in secret_names() if not env.get(name)]
    if not wanted:
        return {}
    scope = env.get(SCOPE_ENV) or DEFAULT_SCOPE
    if dbutils is None:
        try:
            dbutils = runtime_dbutils(env)
        except ConfigError as exc:
            log.warning("secret scope %r cannot be read: %s", scope, exc)
            return {}
    try:
        present = {m.key for m in dbutils.secrets.list(scope)}
    except Exception as exc:  # noqa: BLE001 - dbutils raises py4j/Java errors, not Python types
        log.warning("secret scope %r cannot be read (%s); secrets come from the environment only",
                    scope, type(exc).__name__)
        return {}
    found = {}
    for name in wanted:
        if name not in present:
            log.info("secret scope %r has no key %s", scope, name)
            continue
        value = dbutils.secrets.get(scope=scope, key=name)
        redact.register(value)
        found[name] = value
    return found


def file_secrets(paths: Iterable[str | os.PathLike]) -> list[str]:
    """``"file: [Section] key"`` for every secret setting that a config file gives a value."""
    secret = {(s.lower(), k.lower()) for s, k in secret_settings()}
    hits = []
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(Path(path), encoding="utf-8")
        except configparser.Error:
            continue  # load_settings reports malformed files itself
        for section in parser.sections():
            for key, value in parser[section].items():
                if (section.lower(), key.lower()) in secret and value.strip():
                    hits.append(f"{path}: [{section}] {key}")
    return hits


def apply_databricks_secrets(env: Mapping[str, str], config_files: Iterable[str | os.PathLike] = (),
                             dbutils: Any = None) -> dict[str, str]:
    """``env`` completed with the secret scope's values when running on Databricks.

    Off Databricks it returns ``env`` unchanged. On Databricks a config file holding a secret
    value raises ConfigError: secrets there come from the scope or the environment only.
    """
    env = dict(env)
    if not on_databricks(env):
        return env
    in_files = file_secrets(config_files)
    if in_files:
        raise ConfigError(f"on Databricks secrets are not read from files, but {'; '.join(in_files)} holds one; "
                          f"empty it and put the value in the secret scope "
                          f"{env.get(SCOPE_ENV) or DEFAULT_SCOPE!r} under the key {secret_names()[0]} "
                          f"(databricks secrets put-secret <scope> <key>)")
    return {**scope_secrets(env, dbutils), **env}
