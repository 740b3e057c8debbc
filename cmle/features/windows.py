"""The look-back and outcome windows, checked against the history the events actually hold.

A point-in-time training set at snapshot T reads ``lookback_days`` of events before T and
needs ``outcome_days`` after T fully observed; the scoring set, at "now" (the end of the
data), reads ``lookback_days`` before now. :func:`plan_windows` decides the windows before
any query runs, from the data's first event and end alone (a pure function):

* a window the user left at 0 (the parameters' default) **follows the history**: the
  outcome window is ``min(14, history // 2)`` days (whatever T is, so that a label means the
  same at every snapshot), the look-back is every whole day from the first event's day to
  T, at most :data:`MAX_AUTO_LOOKBACK_DAYS`. With 10 weeks of
  history that is today's 56 + 14; with 6 weeks 28 + 14; with 16 weeks 98 + 14;
* windows that do not fit are refused with what to change; windows that fit but lose
  something are let through with a warning.

Every message starts with its code (``featurize [windows.lookback] ...``); the codes and
what they mean are listed in ``docs/model-quality.md``:

=====================  =======  =============================================================
code                   level    when
=====================  =======  =============================================================
``windows.history``    refuse   the history is too short for a look-back and an outcome window
                                of :data:`MIN_WINDOW_DAYS` days each (windows left to follow it)
``windows.snapshot``   refuse   T is not after the first event: no history to compute features
``windows.outcome``    refuse   T + outcome_days is after the end of the data: conversions
                                after the data would count as negatives
``windows.lookback``   refuse   the look-back starts before the first event's day: training
                                features would cover fewer days than scoring features (a
                                train/score skew the model cannot see)
``windows.recent``     warn     recent-activity windows not shorter than the look-back are
                                left out of the features
``windows.auto``       info     which windows were chosen from the history, and why
=====================  =======  =============================================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cmle.errors import ParameterError
from cmle.features.spec import DEFAULT_LOOKBACK_DAYS, DEFAULT_OUTCOME_DAYS

AUTO = 0  # a window parameter left at 0 follows the history
# An automatic look-back uses the whole history before T, up to a year. The whole history,
# not a fixed 56 days: with 16 weeks of synthetic data a 56-day look-back hides how many
# emails a profile ever got (the churn rule counts them all) and the model reached 0.93 of the
# oracle's ROC-AUC, against 1.00-1.01 with 98 days (docs/model-quality.md). The feature SQL
# reads every event before T either way, so a longer look-back costs no more to compute.
MAX_AUTO_LOOKBACK_DAYS = 365
# The shortest look-back and outcome window chosen automatically (a week each).
MIN_WINDOW_DAYS = 7
MIN_HISTORY_DAYS = 2 * MIN_WINDOW_DAYS
DAY = dt.timedelta(days=1)


class WindowError(ParameterError):
    """Windows that do not fit the data; the message says which and what to change."""

    def __init__(self, code: str, message: str):
        super().__init__(f"featurize [windows.{code}] {message}")
        self.code = f"windows.{code}"


@dataclass(frozen=True)
class WindowPlan:
    """The windows to build with, and what was said about them."""

    snapshot: dt.datetime  # T
    end: dt.datetime  # "now": the scoring snapshot, the end of the data
    lookback_days: int
    outcome_days: int
    history_days: int  # whole days from the first event's day to the end
    auto: tuple[str, ...] = ()  # the parameters that followed the history
    warnings: tuple[str, ...] = ()  # ``featurize [windows.*] ...`` messages
    info: tuple[str, ...] = ()


def _day(when: dt.datetime) -> dt.datetime:
    """Midnight (same time zone) of ``when``'s day."""
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _whole_days(delta: dt.timedelta) -> int:
    return int(delta // DAY)


def plan_windows(first: dt.datetime, end: dt.datetime, lookback_days: int = AUTO, outcome_days: int = AUTO,
                 snapshot: dt.datetime | None = None, recent_windows: tuple[int, ...] = ()) -> WindowPlan:
    """Resolve and check the windows for events from ``first`` to ``end`` (aware datetimes;
    ``end`` is "now", the midnight after the last event's day).

    ``lookback_days`` / ``outcome_days``: days, or :data:`AUTO` to follow the history.
    ``snapshot``: T, or None for ``outcome_days`` before ``end``. Raises :class:`WindowError`
    (a ParameterError) with the fix when the windows do not fit.
    """
    if lookback_days < 0 or outcome_days < 0:
        raise ParameterError(f"featurize: lookback_days = {lookback_days} and outcome_days = {outcome_days} must "
                             "be whole days, or 0 to follow the history")
    first_day = _day(first)
    history = _whole_days(end - first_day)
    span = f"the events span {history} days ({first:%Y-%m-%d} to {end:%Y-%m-%d})"
    auto = tuple(n for n, v in (("lookback_days", lookback_days), ("outcome_days", outcome_days)) if v == AUTO)
    more = "generate more weeks of history (synthetic weeks) or ingest more history"

    if outcome_days == AUTO:  # from the history alone, so a label means the same whatever T is
        outcome_days = min(DEFAULT_OUTCOME_DAYS, history // 2)
    t = end - dt.timedelta(days=outcome_days) if snapshot is None else snapshot
    if auto and history < MIN_HISTORY_DAYS:
        raise WindowError("history", f"{span}: too short to train on. A look-back and an outcome window of at least "
                                     f"{MIN_WINDOW_DAYS} days each need {MIN_HISTORY_DAYS} days; {more}")
    if t <= first:
        raise WindowError("snapshot", f"the snapshot {t:%Y-%m-%d %H:%M} is not after the first event "
                                      f"({first:%Y-%m-%d %H:%M}): there is no history to compute features from. "
                                      f"Choose a later snapshot_date or a shorter outcome_days, or {more}")
    latest = end - dt.timedelta(days=outcome_days)
    if t > latest:
        raise WindowError("outcome", f"the outcome window ({t:%Y-%m-%d %H:%M}, +{outcome_days} days] ends after the "
                                     f"data ({end:%Y-%m-%d}): conversions after the data would be missed and counted "
                                     f"as negatives. Choose snapshot_date on or before {latest:%Y-%m-%d} or a shorter "
                                     "outcome_days, or use data that reach further (synthetic end_date)")
    before = _whole_days(t - first_day)  # whole days of history before T
    if lookback_days == AUTO:
        lookback_days = min(MAX_AUTO_LOOKBACK_DAYS, before)
        if lookback_days < MIN_WINDOW_DAYS:
            raise WindowError("history", f"{span}: only {before} whole days come before the snapshot "
                                         f"{t:%Y-%m-%d}, fewer than the {MIN_WINDOW_DAYS}-day minimum look-back. "
                                         f"Choose a later snapshot_date or a shorter outcome_days, or {more}")
    elif t - dt.timedelta(days=lookback_days) < first_day:
        scoring_days = min(lookback_days, history)
        raise WindowError(
            "lookback", f"lookback_days = {lookback_days} starts {t - dt.timedelta(days=lookback_days):%Y-%m-%d}, "
            f"before the first event ({first:%Y-%m-%d}); {span}. Training features at {t:%Y-%m-%d} would cover "
            f"{before} days and scoring features at {end:%Y-%m-%d} {scoring_days} days, so counts and recencies "
            f"would mean different things in training and scoring. Use lookback_days <= {before} (or 0 to follow "
            f"the history), a later snapshot_date or a shorter outcome_days, or {more}")

    warnings, info = [], []
    dropped = sorted({w for w in recent_windows if w >= lookback_days})
    if dropped:
        warnings.append(f"featurize [windows.recent] the recent-activity windows {', '.join(map(str, dropped))} "
                        f"(days) are not shorter than the look-back ({lookback_days} days) and are left out")
    if auto:
        chosen = ", ".join(f"{n} = {lookback_days if n == 'lookback_days' else outcome_days}" for n in auto)
        note = ""
        if (lookback_days, outcome_days) != (DEFAULT_LOOKBACK_DAYS, DEFAULT_OUTCOME_DAYS):
            note = (f" (the usual {DEFAULT_LOOKBACK_DAYS} + {DEFAULT_OUTCOME_DAYS} need "
                    f"{DEFAULT_LOOKBACK_DAYS + DEFAULT_OUTCOME_DAYS} days)")
        info.append(f"featurize [windows.auto] {span}; following it: {chosen}{note}")
    return WindowPlan(snapshot=t, end=end, lookback_days=int(lookback_days), outcome_days=int(outcome_days),
                      history_days=history, auto=auto, warnings=tuple(warnings), info=tuple(info))


__all__ = ["AUTO", "MAX_AUTO_LOOKBACK_DAYS", "MIN_HISTORY_DAYS", "MIN_WINDOW_DAYS", "WindowError", "WindowPlan",
           "plan_windows"]
