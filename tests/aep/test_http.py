"""The retry policies of the transport, without a server: safe calls are retried with
backoff; a creation is never repeated before a look-up says it does not exist."""

from __future__ import annotations

import pytest

from cmle.config import Secret
from cmle.platform.aep.auth import TokenProvider
from cmle.platform.aep.errors import AEPError, TransientError
from cmle.platform.aep.http import RetryPolicy, Transport, _transient


@pytest.fixture
def transport():
    sleeps: list[float] = []
    t = Transport(TokenProvider("http://127.0.0.1:9/ims/token/v3", "c", Secret("secret-value"), "openid"), {},
                  policy=RetryPolicy(max_retries=3, backoff_s=1.0), sleep=sleeps.append)
    t.sleeps = sleeps
    return t


def test_safe_call_is_retried_then_gives_up(transport):
    calls = []

    def flaky():
        calls.append(1)
        raise _transient("GET /x: AEP answered 503", 503, ambiguous=False)

    with pytest.raises(TransientError, match="still failing after 4 attempts"):
        transport.call(flaky, what="read x")
    assert len(calls) == 4
    # exponential backoff, with +-20 % jitter
    assert all(0.8 * b <= s <= 1.2 * b for s, b in zip(transport.sleeps, (1, 2, 4), strict=True))


def test_lost_creation_is_found_not_repeated(transport):
    created, lookups = [], []

    def create():
        created.append(1)
        raise _transient("POST /x: no answer", ambiguous=True)

    def find():
        lookups.append(1)
        return {"id": "x1"} if len(lookups) == 2 else None  # the listing shows it a moment late

    assert transport.create_once(what="create x", create=create, find=find) == ({"id": "x1"}, False)
    assert len(created) == 1 and len(lookups) == 2


def test_refused_creation_is_retried_after_one_look_up(transport):
    created, lookups = [], []

    def create():
        created.append(1)
        if len(created) == 1:
            raise _transient("POST /x: AEP answered 429", 429, ambiguous=False)
        return {"id": "x2"}

    def find():
        lookups.append(1)
        return None

    assert transport.create_once(what="create x", create=create, find=find) == ({"id": "x2"}, True)
    assert len(created) == 2 and len(lookups) == 1


def test_conflict_means_it_exists(transport):
    def create():
        raise AEPError("POST /x: AEP answered 409", status=409)

    assert transport.create_once(what="create x", create=create, find=lambda: {"id": "x3"}) == ({"id": "x3"}, False)


def test_other_errors_are_not_retried(transport):
    lookups = []

    def create():
        raise AEPError("POST /x: AEP answered 400", status=400)

    with pytest.raises(AEPError, match="400"):
        transport.create_once(what="create x", create=create, find=lambda: lookups.append(1))
    assert not lookups and not transport.sleeps
