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
    # exponential backoff, with up to 20 % jitter, never less
    assert all(b <= s <= 1.2 * b for s, b in zip(transport.sleeps, (1, 2, 4), strict=True))


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


@pytest.mark.parametrize("retry_after", [0.0, 0.4, 1.0, 7.0, 30.0, 45.0])
def test_retry_never_comes_before_retry_after(retry_after):
    """Jitter only adds time: over many draws no delay undercuts the server's Retry-After
    (nor the backoff), and none exceeds them by more than the jitter."""
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=30.0)
    for attempt in range(4):
        floor = max(min(30.0, 2 ** attempt), retry_after)
        delays = [policy.delay(attempt, retry_after) for _ in range(300)]
        assert min(delays) >= floor
        assert max(delays) <= floor * 1.2 + 1e-9


def test_retry_after_is_read_in_both_forms():
    import email.utils
    import time

    from cmle.platform.aep.backoff import parse_retry_after

    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= parse_retry_after(date) <= 61


def test_a_retry_after_longer_than_the_policy_allows_ends_the_attempt(transport):
    err = _transient("GET /x: AEP answered 429", 429, ambiguous=False)
    err.retry_after = 3600.0

    def throttled():
        raise err

    with pytest.raises(TransientError, match="asks to wait 3600 s"):
        transport.call(throttled, what="read x")
    assert transport.sleeps == []  # no early retry, no hour-long sleep inside a stage


def test_a_lost_creation_is_looked_up_for_the_whole_window(transport):
    """After an answer that may have been lost the resource is looked up until the window
    has passed (AEP may still carry the request out), and only then created again."""
    transport.lookup_s = 20.0
    created, lookups = [], []

    def create():
        created.append(1)
        if len(created) == 1:
            raise _transient("POST /x: no answer", ambiguous=True)
        return {"id": "x4"}

    def find():
        lookups.append(1)
        return None

    assert transport.create_once(what="create x", create=create, find=find) == ({"id": "x4"}, True)
    assert sum(transport.sleeps) >= 20.0  # looked up for the whole window before sending again
    assert 3 <= len(lookups) <= 8  # with growing pauses, not a tight loop
    assert len(created) == 2
