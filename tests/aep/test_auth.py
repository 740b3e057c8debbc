"""Authentication: one shared token, refreshed before expiry and on 401; clear errors for
bad or missing credentials and for a missing permission; hosts as aepp maps them."""

from __future__ import annotations

import time

import pytest

from aep.conftest import aep_env
from cmle.config import load_settings
from cmle.errors import CmleError, ConfigError
from cmle.platform.aep import AEPPlatform, AuthError, PermissionDeniedError
from cmle.platform.aep.auth import configure_aepp, normalise_scopes
from cmle.platform.aep.http import AepSession


def test_one_token_shared_by_every_service(aep, double):
    aep.tenant_id
    aep.find_dataset("nothing")
    aep.list_resources()
    assert aep.client.transport.tokens.fetches == 1
    assert len(double.tokens) == 1
    for svc in (aep.client.schema, aep.client.catalog, aep.client.query, aep.client.flows, aep.client.segmentation):
        assert isinstance(svc.connector.session, AepSession)
        assert svc.connector.retry == 0


def test_token_is_refreshed_before_it_expires(double, tmp_cwd):
    double.token_ttl = 1.2
    platform = AEPPlatform.from_settings(load_settings(env=aep_env(double)))
    platform.tenant_id
    time.sleep(1.0)  # inside the last quarter of the token's life
    platform.find_dataset("x")
    tokens = platform.client.transport.tokens
    assert tokens.fetches == 2
    assert platform.client.transport.stats["token_refreshes_on_401"] == 0


def test_expired_token_is_replaced_on_401(aep, double):
    aep.tenant_id
    double.expire_tokens()
    assert aep.find_dataset("x") is None
    assert aep.client.transport.stats["token_refreshes_on_401"] == 1
    assert aep.client.transport.tokens.fetches == 2


@pytest.mark.parametrize("key,value,hint", [
    ("CMLE_AUTHENTICATION_CLIENT_SECRET", "wrong-secret-value", "CMLE_AUTHENTICATION_CLIENT_SECRET"),
    ("CMLE_AUTHENTICATION_CLIENT_ID", "someone-else", "client_id"),
])
def test_bad_credentials_say_what_to_fix(double, tmp_cwd, key, value, hint):
    settings = load_settings(env=aep_env(double, **{key: value}))
    with pytest.raises(AuthError) as err:
        AEPPlatform.from_settings(settings)
    assert "IMS refused the credentials" in str(err.value) and hint in str(err.value)
    assert "wrong-secret-value" not in str(err.value) and double.client_secret not in str(err.value)


def test_missing_credentials_are_a_config_error(double, tmp_cwd):
    env = aep_env(double)
    del env["CMLE_AUTHENTICATION_CLIENT_SECRET"]
    with pytest.raises(ConfigError, match="CMLE_AUTHENTICATION_CLIENT_SECRET"):
        load_settings(env=env)


def test_missing_permission_names_it_instead_of_keyerror(aep, double):
    double.denied.add("/data/foundation/schemaregistry")
    with pytest.raises(PermissionDeniedError) as err:
        aep.tenant_id
    msg = str(err.value)
    assert "403" in msg and "Data Modeling" in msg and "Admin Console" in msg
    assert isinstance(err.value, CmleError)


def test_stats_without_tenant_id_is_a_permission_error(aep, double):
    double.stats_without_tenant = True
    with pytest.raises(PermissionDeniedError, match="View Schemas"):
        aep.tenant_id


def test_permission_error_on_another_service_names_its_permission(aep, double):
    double.denied.add("/data/foundation/query")
    with pytest.raises(PermissionDeniedError, match="Query Service > Manage Queries"):
        aep.create_table_as("cmle_x_cmle", "SELECT 1 AS a")


@pytest.mark.parametrize("environment,platform,ims", [
    ("prod", "https://platform.adobe.io", "https://ims-na1.adobelogin.com"),
    ("stage", "https://platform-stage.adobe.io", "https://ims-na1-stg1.adobelogin.com"),
])
def test_environment_maps_to_hosts_as_aepp_does(environment, platform, ims):
    from cmle.config import Secret

    hosts = configure_aepp(org_id="o@AdobeOrg", client_id="c", secret=Secret("s" * 10), scopes="openid, AdobeID",
                           sandbox="dev", environment=environment)
    assert (hosts.platform, hosts.ims) == (platform, ims)
    assert hosts.token_url == ims + "/ims/token/v3"
    over = configure_aepp(org_id="o@AdobeOrg", client_id="c", secret=Secret("s" * 10), scopes="openid",
                          sandbox="dev", environment=environment, platform_url="http://proxy:8080/",
                          ims_url="http://ims.local")
    assert (over.platform, over.token_url) == ("http://proxy:8080", "http://ims.local/ims/token/v3")


def test_scopes_are_normalised():
    assert normalise_scopes("openid, AdobeID ,read_organizations") == "openid,AdobeID,read_organizations"


def test_ims_token_retries_wait_for_retry_after(double, tmp_cwd):
    """IMS answers 429 with Retry-After (whole seconds, as AEP's gateways do): the token
    request is repeated no earlier (the double counts an early retry as a violation)."""
    double.retry_after_s = 1.0
    double.faults.add("429", "POST", "/ims/token/v3", times=1)
    started = time.monotonic()
    platform = AEPPlatform.from_settings(load_settings(env=aep_env(double)))
    assert platform.client.transport.tokens.fetches == 1
    assert time.monotonic() - started >= 1.0
    assert double.early_retries == []


def test_platform_retries_wait_for_retry_after_even_with_the_least_jitter(aep, double, monkeypatch):
    monkeypatch.setattr("random.random", lambda: 0.0)  # the jitter that used to come earliest
    double.retry_after_s = 1.0
    double.faults.add("429", "GET", "/schemaregistry/stats", times=2)
    assert aep.tenant_id == "cmle"
    assert double.faults.injected["429"] == 2
    assert double.early_retries == []


def test_the_double_counts_an_early_retry(double, tmp_cwd):
    import requests

    double.retry_after_s = 5.0
    double.faults.add("429", "GET", "/schemaregistry/stats", times=1)
    url = double.url + "/data/foundation/schemaregistry/stats"
    first = requests.get(url, timeout=5)
    assert first.status_code == 429 and first.headers["Retry-After"] == "5"
    requests.get(url, timeout=5)  # at once: before the 5 s it was told to wait
    assert len(double.early_retries) == 1
    double.violations.clear()  # this test broke the rule on purpose
