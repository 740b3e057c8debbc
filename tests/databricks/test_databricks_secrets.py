"""Credentials on Databricks: the secret scope or the environment, never a config file."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from cmle import redact
from cmle.config import load_settings
from cmle.databricks import secrets
from cmle.errors import ConfigError

SECRET = "scope-secret-value-123"
ON_DBX = {"DATABRICKS_RUNTIME_VERSION": "15.4"}


class FakeSecrets:
    """``dbutils.secrets`` as the runtime offers it: ``list(scope)`` and ``get(scope=, key=)``."""

    def __init__(self, scopes: dict[str, dict[str, str]]):
        self.scopes = scopes
        self.reads: list[tuple[str, str]] = []

    def list(self, scope):
        if scope not in self.scopes:  # the runtime raises a Java-side error, not KeyError
            raise RuntimeError(f"Scope {scope} does not exist!")
        return [SimpleNamespace(key=k) for k in self.scopes[scope]]

    def get(self, scope, key):
        self.reads.append((scope, key))
        return self.scopes[scope][key]


def _dbutils(scopes):
    return SimpleNamespace(secrets=FakeSecrets(scopes))


def test_secret_names_are_the_environment_variable_names():
    assert secrets.secret_names() == ["CMLE_AUTHENTICATION_CLIENT_SECRET"]


def test_off_databricks_nothing_is_read():
    dbutils = _dbutils({"cmle": {"CMLE_AUTHENTICATION_CLIENT_SECRET": SECRET}})
    env = {"A": "1"}
    assert secrets.apply_databricks_secrets(env, dbutils=dbutils) == env
    assert dbutils.secrets.reads == []


def test_on_databricks_secrets_come_from_the_scope_and_are_redacted():
    dbutils = _dbutils({"cmle": {"CMLE_AUTHENTICATION_CLIENT_SECRET": SECRET}})
    env = secrets.apply_databricks_secrets(ON_DBX, dbutils=dbutils)
    assert env["CMLE_AUTHENTICATION_CLIENT_SECRET"] == SECRET
    assert redact.scrub(f"value {SECRET}") == "value ***"


def test_the_environment_wins_and_the_scope_name_is_configurable():
    dbutils = _dbutils({"team": {"CMLE_AUTHENTICATION_CLIENT_SECRET": SECRET}})
    env = secrets.apply_databricks_secrets({**ON_DBX, "CMLE_SECRET_SCOPE": "team"}, dbutils=dbutils)
    assert env["CMLE_AUTHENTICATION_CLIENT_SECRET"] == SECRET and dbutils.secrets.reads == [
        ("team", "CMLE_AUTHENTICATION_CLIENT_SECRET")]
    dbutils = _dbutils({"cmle": {"CMLE_AUTHENTICATION_CLIENT_SECRET": SECRET}})
    env = secrets.apply_databricks_secrets({**ON_DBX, "CMLE_AUTHENTICATION_CLIENT_SECRET": "from-env-456"},
                                           dbutils=dbutils)
    assert env["CMLE_AUTHENTICATION_CLIENT_SECRET"] == "from-env-456" and dbutils.secrets.reads == []


def test_a_missing_scope_or_key_leaves_the_setting_to_the_config_check(caplog):
    with caplog.at_level(logging.WARNING, logger="cmle.databricks.secrets"):
        env = secrets.apply_databricks_secrets(ON_DBX, dbutils=_dbutils({}))
    assert "CMLE_AUTHENTICATION_CLIENT_SECRET" not in env
    assert "secret scope 'cmle' cannot be read" in caplog.text
    env = secrets.apply_databricks_secrets(ON_DBX, dbutils=_dbutils({"cmle": {"OTHER": "x"}}))
    assert "CMLE_AUTHENTICATION_CLIENT_SECRET" not in env


def test_on_databricks_a_config_file_with_a_secret_is_refused(tmp_path):
    cfg = tmp_path / "config.ini"
    cfg.write_text("[Authentication]\nclient_id = abc\nclient_secret = in-the-file-789\n")
    with pytest.raises(ConfigError, match=r"\[Authentication\] client_secret.*secret scope 'cmle'"):
        secrets.apply_databricks_secrets(ON_DBX, [cfg], dbutils=_dbutils({}))
    # an empty value (as in the shipped templates) is fine, and off Databricks the file is not policed here
    cfg.write_text("[Authentication]\nclient_id = abc\nclient_secret =\n")
    assert secrets.apply_databricks_secrets(ON_DBX, [cfg], dbutils=_dbutils({})) == ON_DBX


def test_settings_load_with_the_scope_secret(tmp_cwd):
    """What config loading does with it: the AEP backend validates with the secret from the scope."""
    cfg = tmp_cwd / "databricks.ini"
    cfg.write_text("[Platform]\nbackend = aep\nims_org_id = ORG@AdobeOrg\n[Authentication]\nclient_id = abc\n")
    with pytest.raises(ConfigError, match="client_secret"):
        load_settings(cfg, env=dict(ON_DBX))
    env = secrets.apply_databricks_secrets(ON_DBX, [cfg], dbutils=_dbutils(
        {"cmle": {"CMLE_AUTHENTICATION_CLIENT_SECRET": SECRET}}))
    s = load_settings(cfg, env=env)
    assert s.authentication.client_secret.get() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s.public_dict())


def test_runtime_dbutils_is_refused_off_databricks():
    with pytest.raises(ConfigError, match="only on Databricks"):
        secrets.runtime_dbutils()
