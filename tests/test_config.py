"""Config loading, overrides, validation and secret handling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cmle import redact
from cmle.config import Secret, env_name, load_settings
from cmle.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parents[1] / "conf" / "config.ini"


def write(tmp_path: Path, text: str, name: str = "config.ini") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_template_loads_with_defaults(tmp_cwd):
    s = load_settings(TEMPLATE, env={})
    assert s.platform.backend == "local"
    assert s.platform.sandbox_name == "prod"
    assert s.cloud.export_path == "cmle/egress"
    assert s.cloud.import_path == "cmle/ingress"
    assert s.cloud.data_format == "parquet"
    assert s.cloud.compression_type == "gzip"
    assert s.cloud.model_name == "cmle_propensity_model"
    assert s.mlflow.tracking_uri == "sqlite:///mlflow.db"
    assert not s.authentication.client_secret
    # the local root is made absolute against the working directory at load time
    assert Path(s.platform.local_root) == tmp_cwd / ".cmle" / "platform"


def test_template_keeps_cmle_sections_and_keys():
    import configparser

    cp = configparser.ConfigParser()
    cp.read(TEMPLATE)
    for section, keys in {
        "Platform": ["ims_org_id", "sandbox_name", "environment"],
        "Authentication": ["client_id", "client_secret", "scopes", "tech_acct_id"],
        "Cloud": ["export_path", "import_path", "data_format", "compression_type", "model_name"],
    }.items():
        for key in keys:
            assert cp.has_option(section, key), f"[{section}] {key}"
    assert cp.get("Authentication", "client_secret").strip() == "", "the committed template holds no secret"


def test_no_file_uses_defaults(tmp_cwd):
    s = load_settings(env={})
    assert s.source == "<defaults>"
    assert s.platform.backend == "local"


def test_default_conf_in_cwd_is_used(tmp_cwd):
    (tmp_cwd / "conf").mkdir()
    write(tmp_cwd / "conf", "[Cloud]\nmodel_name = from_cwd\n")
    assert load_settings(env={}).cloud.model_name == "from_cwd"


def test_env_overrides_every_key(tmp_cwd):
    p = write(tmp_cwd, "[Cloud]\nmodel_name = from_file\n[Platform]\nsandbox_name = dev1\n")
    env = {env_name("Cloud", "model_name"): "from_env", "CMLE_PLATFORM_SANDBOX_NAME": "dev2",
           "CMLE_MLFLOW_EXPERIMENT_NAME": "exp", "CMLE_PLATFORM_REQUEST_TIMEOUT": "5"}
    s = load_settings(p, env=env)
    assert s.cloud.model_name == "from_env"
    assert s.platform.sandbox_name == "dev2"
    assert s.mlflow.experiment_name == "exp"
    assert s.platform.request_timeout == 5.0


def test_config_path_from_env_and_missing_file(tmp_cwd):
    p = write(tmp_cwd, "[Cloud]\nmodel_name = via_env_path\n", "other.ini")
    assert load_settings(env={"CMLE_CONFIG": str(p)}).cloud.model_name == "via_env_path"
    with pytest.raises(ConfigError, match="CMLE_CONFIG"):
        load_settings(env={"CMLE_CONFIG": str(tmp_cwd / "nope.ini")})
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_cwd / "nope.ini", env={})


def test_local_ini_overrides_file(tmp_cwd):
    p = write(tmp_cwd, "[Cloud]\nmodel_name = base\n")
    write(tmp_cwd, "[Cloud]\nmodel_name = local\n", "config.local.ini")
    assert load_settings(p, env={}).cloud.model_name == "local"


@pytest.mark.parametrize("text, match", [
    ("[Platform]\nbackend = cloud\n", r"\[Platform\] backend = 'cloud' is not one of"),
    ("[Platform]\nrequest_timeout = soon\n", r"\[Platform\] request_timeout = 'soon' is not a number"),
    ("[Platform]\nrequest_timeout = -1\n", r"request_timeout.*must be positive"),
    ("[Cloud]\ndata_format = xlsx\n", r"\[Cloud\] data_format"),
    ("[Cloud]\ncompression_type = rar\n", r"\[Cloud\] compression_type"),
    ("[Cloud]\nexport_path = /abs\n", r"\[Cloud\] export_path"),
    ("[Cloud]\nimport_path = a/../../b\n", r"\[Cloud\] import_path"),
    ("[Cloud]\nmodel_name = my model\n", r"\[Cloud\] model_name"),
    ("[Platform]\nsandbox_name = bad name!\n", r"\[Platform\] sandbox_name"),
    ("[Platform]\ntenant_id = a.b\n", r"\[Platform\] tenant_id"),
    ("[Platform]\nnot_a_key = 1\n", r"\[Platform\] not_a_key: unknown key"),
    ("[Nonsense]\na = 1\n", r"unknown section \[Nonsense\]"),
    ("[Platform\nbackend = local\n", r"malformed"),
    ("no section header\n", r"malformed"),
    ("[MLflow]\ntracking_uri = ./mlruns\n", r"\[MLflow\] tracking_uri.*file store"),
])
def test_bad_config_is_a_clear_error(tmp_cwd, text, match):
    p = write(tmp_cwd, text)
    with pytest.raises(ConfigError, match=match):
        load_settings(p, env={})


def test_bad_env_value_names_section_and_key(tmp_cwd):
    with pytest.raises(ConfigError, match=r"\[Platform\] backend"):
        load_settings(env={"CMLE_PLATFORM_BACKEND": "nope"})


def test_aep_backend_requires_credentials(tmp_cwd):
    p = write(tmp_cwd, "[Platform]\nbackend = aep\nims_org_id = ORG@AdobeOrg\n[Authentication]\nclient_id = abc\n")
    with pytest.raises(ConfigError, match=r"\[Authentication\] client_secret.*CMLE_AUTHENTICATION_CLIENT_SECRET"):
        load_settings(p, env={})
    s = load_settings(p, env={"CMLE_AUTHENTICATION_CLIENT_SECRET": "s3cr3t-value-123"})
    assert s.authentication.client_secret.get() == "s3cr3t-value-123"


def test_secret_never_printed_or_logged(tmp_cwd, caplog):
    value = "topsecret-abcdef-987"
    s = load_settings(env={"CMLE_AUTHENTICATION_CLIENT_SECRET": value})
    assert isinstance(s.authentication.client_secret, Secret)
    assert value not in repr(s) and value not in str(s)
    assert value not in str(s.public_dict())
    assert "Authentication.client_secret" not in s.public_dict()
    redact.install()
    with caplog.at_level(logging.INFO):
        logging.getLogger("somelib").info("connecting with secret %s and Bearer abc.def.ghi", value)
    assert value not in caplog.text
    assert "abc.def.ghi" not in caplog.text
    assert redact.MASK in caplog.text


def test_scrub_masks_token_shapes():
    text = 'client_secret=xyz123456 "access_token": "tok999999" password: hunter22222'
    out = redact.scrub(text)
    for leaked in ("xyz123456", "tok999999", "hunter22222"):
        assert leaked not in out
