"""Fixtures for the AEP adapter: a real PostgreSQL server (one per test session), the AEP
double (one per test, on its own database), settings that aim the adapter at it, and the
adapter itself.

Every double checks at teardown that the adapter sent no request that fails Adobe's
OpenAPI specs and none the double does not implement.
"""

from __future__ import annotations

import logging

import pytest

from aep.double import AEPDouble, PostgresServer

# Tight knobs so the suite stays fast: polls every 20 ms, retries after 10 ms, a request
# times out after 1 s (the double's "timeout" fault holds an answer for 1.5 s), a 429 asks
# for 50 ms (AEP asks for whole seconds; the client honours either), a creation whose
# answer was lost is looked up for 0.5 s before it is sent again.
REQUEST_TIMEOUT = 1.0
HANG_S = 1.5
RETRY_AFTER_S = 0.05
LOOKUP_S = 0.5


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server in a temporary folder on a free port, stopped at the end."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def double(pg_server, tmp_path):
    d = AEPDouble(pg_server, tmp_path / "double", delay_s=0.02, hang_s=HANG_S, retry_after_s=RETRY_AFTER_S).start()
    yield d
    d.stop()
    assert not d.violations, "requests that do not validate against the AEP specs (or retried before " \
                             "their Retry-After):\n" + "\n".join(d.violations)
    assert not d.unimplemented, f"operations the double does not implement: {d.unimplemented}"
    assert not d.errors, f"the double failed: {d.errors}"


def aep_env(double: AEPDouble, **extra: str) -> dict:
    env = {
        "CMLE_PLATFORM_BACKEND": "aep",
        "CMLE_PLATFORM_IMS_ORG_ID": double.org_id,
        "CMLE_PLATFORM_SANDBOX_NAME": double.sandbox,
        "CMLE_PLATFORM_PLATFORM_URL": double.url,
        "CMLE_PLATFORM_IMS_URL": double.url,
        "CMLE_PLATFORM_QS_SSLMODE": "disable",
        "CMLE_PLATFORM_POLL_INTERVAL": "0.02",
        "CMLE_PLATFORM_RETRY_BACKOFF": "0.01",
        "CMLE_PLATFORM_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
        "CMLE_PLATFORM_CREATE_LOOKUP_S": str(LOOKUP_S),
        "CMLE_AUTHENTICATION_CLIENT_ID": double.client_id,
        "CMLE_AUTHENTICATION_CLIENT_SECRET": double.client_secret,
        "CMLE_CLOUD_STORAGE_URL": str(double.landing_zone),
    }
    env.update(extra)
    return env


@pytest.fixture
def aep_settings(double, tmp_cwd):
    from cmle.config import load_settings

    return load_settings(env=aep_env(double))


@pytest.fixture
def aep(aep_settings):
    from cmle.platform.aep import AEPPlatform

    platform = AEPPlatform.from_settings(aep_settings)
    yield platform
    platform.close()


@pytest.fixture(autouse=True)
def _quiet_aepp():
    logging.getLogger("aepp").setLevel(logging.WARNING)


def pytest_collection_modifyitems(config, items):
    """Tests that start the PostgreSQL server carry the ``postgres`` marker."""
    for item in items:
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
