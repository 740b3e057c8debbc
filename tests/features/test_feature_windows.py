"""Windows against the history: what follows the history, what is refused, what is said."""

from __future__ import annotations

import datetime as dt

import pytest

from cmle.errors import ParameterError
from cmle.features.windows import MAX_AUTO_LOOKBACK_DAYS, WindowError, plan_windows

UTC = dt.timezone.utc
END = dt.datetime(2024, 6, 1, tzinfo=UTC)


def first(weeks: float, hours: float = 0.0) -> dt.datetime:
    """The first event of ``weeks`` of synthetic history ending at END (``hours`` after its start)."""
    return END - dt.timedelta(weeks=weeks) + dt.timedelta(hours=hours)


@pytest.mark.parametrize("weeks, lookback, outcome", [
    (10, 56, 14),  # today's defaults, unchanged
    (6, 28, 14),
    (16, 98, 14),
    (4, 14, 14),
    (3, 11, 10),  # short: the outcome window is half the history
    (2, 7, 7),
    (52, 350, 14),  # a year: still the whole history
    (60, MAX_AUTO_LOOKBACK_DAYS, 14),  # longer: the look-back stops at a year
])
def test_windows_left_at_zero_follow_the_history(weeks, lookback, outcome):
    plan = plan_windows(first(weeks, hours=5), END)  # an event late on the first day: the day counts
    assert (plan.lookback_days, plan.outcome_days) == (lookback, outcome)
    assert plan.snapshot == END - dt.timedelta(days=outcome)
    assert plan.history_days == 7 * weeks
    assert plan.auto == ("lookback_days", "outcome_days")
    assert plan.info and plan.info[0].startswith(f"featurize [windows.auto] the events span {7 * weeks} days")
    assert ("the usual 56 + 14 need 70 days" in plan.info[0]) == ((lookback, outcome) != (56, 14))
    assert not plan.warnings


def test_set_windows_are_kept_and_the_other_follows():
    plan = plan_windows(first(10), END, lookback_days=30)
    assert (plan.lookback_days, plan.outcome_days, plan.auto) == (30, 14, ("outcome_days",))
    plan = plan_windows(first(10), END, outcome_days=7)
    assert (plan.lookback_days, plan.outcome_days, plan.auto) == (63, 7, ("lookback_days",))
    plan = plan_windows(first(10), END, lookback_days=56, outcome_days=14)
    assert plan.auto == () and plan.info == () and plan.snapshot == END - dt.timedelta(days=14)


def test_an_explicit_snapshot_bounds_the_lookback_not_the_outcome_window():
    t = END - dt.timedelta(days=30)
    plan = plan_windows(first(10), END, snapshot=t)
    assert (plan.snapshot, plan.lookback_days, plan.outcome_days) == (t, 40, 14)
    with pytest.raises(WindowError, match=r"windows.outcome.*\+14 days"):  # the label keeps its meaning
        plan_windows(first(10), END, snapshot=END - dt.timedelta(days=9, hours=12))


def test_a_lookback_longer_than_the_history_is_refused_with_the_fix():
    # the case: 6 weeks of data and the old defaults 56 + 14
    with pytest.raises(WindowError) as info:
        plan_windows(first(6), END, lookback_days=56, outcome_days=14)
    msg = str(info.value)
    assert info.value.code == "windows.lookback" and isinstance(info.value, ParameterError)
    assert msg.startswith("featurize [windows.lookback] lookback_days = 56 starts 2024-03-23, before the first "
                          "event (2024-04-20); the events span 42 days (2024-04-20 to 2024-06-01).")
    assert "Training features at 2024-05-18 would cover 28 days and scoring features at 2024-06-01 42 days" in msg
    assert "Use lookback_days <= 28 (or 0 to follow the history)" in msg
    assert "generate more weeks of history (synthetic weeks)" in msg
    # exactly the history fits
    assert plan_windows(first(6), END, lookback_days=28, outcome_days=14).lookback_days == 28


def test_an_outcome_window_past_the_data_is_refused():
    with pytest.raises(WindowError, match=r"^featurize \[windows.outcome\] the outcome window \(2024-05-25 00:00, "
                                          r"\+14 days\] ends after the data \(2024-06-01\).*snapshot_date on or "
                                          r"before 2024-05-18.*synthetic end_date"):
        plan_windows(first(10), END, snapshot=END - dt.timedelta(days=7), outcome_days=14)
    with pytest.raises(WindowError, match=r"windows.outcome.*\+14 days"):
        plan_windows(first(10), END, snapshot=END - dt.timedelta(hours=12))


def test_a_snapshot_before_the_data_is_refused():
    with pytest.raises(WindowError, match=r"^featurize \[windows.snapshot\] the snapshot 2024-03-01 00:00 is not "
                                          r"after the first event \(2024-03-23 00:00\)"):
        plan_windows(first(10), END, snapshot=dt.datetime(2024, 3, 1, tzinfo=UTC))
    with pytest.raises(WindowError, match=r"windows.snapshot.*shorter outcome_days"):
        plan_windows(first(2), END, lookback_days=7, outcome_days=20)


def test_too_short_a_history_is_refused():
    with pytest.raises(WindowError, match=r"^featurize \[windows.history\] the events span 10 days \(2024-05-22 to "
                                          r"2024-06-01\): too short to train on.*need 14 days; generate more weeks"):
        plan_windows(END - dt.timedelta(days=10), END)
    with pytest.raises(WindowError, match=r"windows.history.*only 3 whole days come before the snapshot"):
        plan_windows(first(10), END, snapshot=first(10) + dt.timedelta(days=3, hours=1))


def test_recent_windows_not_shorter_than_the_lookback_are_reported():
    plan = plan_windows(first(6), END, recent_windows=(7, 14, 28))
    assert plan.warnings == ("featurize [windows.recent] the recent-activity windows 28 (days) are not shorter "
                             "than the look-back (28 days) and are left out",)
    assert plan_windows(first(10), END, recent_windows=(7, 14, 28)).warnings == ()


def test_negative_windows_are_refused():
    with pytest.raises(ParameterError, match="or 0 to follow the history"):
        plan_windows(first(10), END, lookback_days=-1)
