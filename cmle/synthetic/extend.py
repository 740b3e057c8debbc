"""Time moves forward: the same synthetic population, simulated past the end of its window.

:func:`extend` continues generated data (:class:`~cmle.synthetic.simulate.SyntheticData`)
by ``weeks`` more weeks: the same users, each from where the base window left them (latent
propensity after their last event, churned or not, converted or not, how many impressions
and emails they have had for the churn rule). Week ``w`` of the extension draws from its own
random stream ``SeedSequence(seed, spawn_key=(2, w, block))``, and it is simulated from the
state at its start, so an extension by 4 weeks begins with exactly the 2 weeks an extension
by 2 weeks holds (the data only grows), and the same parameters give the same data.

Within a week the model is the base one (base events at uniform times, children at their
delays, churn, the propensity walk, at most one conversion per user). Children that would
fall after the week's end are dropped as at the end of the base window (a little activity
is lost at week boundaries; the weekly rates are unchanged).

A behaviour shift makes drift to find: ``shift_events`` multiplies the weekly rate of the
base event types (impressions, page views, emails sent; their children follow), and
``shift_conversion`` is added to every user's latent propensity when the extension starts
(a change of the base conversion rate). Both default to no change.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np

from cmle.columns import CONVERSION_EVENT
from cmle.errors import ParameterError
from cmle.synthetic.model import CONVERSION_DELAY_S, SimulationModel
from cmle.synthetic.simulate import (MAX_WEEKS, US_PER_S, US_PER_WEEK, SyntheticData, _Events, _generate_block_events,
                                     _segments, first_success, propensity_walk)

_EXTEND_STREAM = 2
BLOCK_USERS = 1 << 13


def scaled_model(model: SimulationModel, factor: float) -> SimulationModel:
    """The model with the weekly rate of every base event type multiplied by ``factor``."""
    if factor == 1.0:
        return model
    events = tuple(dataclasses.replace(e, weekly_rate=e.weekly_rate * factor) if e.name in model.base_types else e
                   for e in model.events)
    return dataclasses.replace(model, events=events)


def check(legacy: bool, base_weeks: int, weeks: int, shift_events: float, shift_conversion: float) -> None:
    """ParameterError for an extension these parameters cannot make (checked before anything is generated)."""
    if legacy and weeks:
        raise ParameterError("synthetic: extend_weeks needs the default model; the notebooks' legacy generator "
                             "has no continuation (its children lists are overwritten)")
    if weeks < 0 or weeks + base_weeks > MAX_WEEKS:
        raise ParameterError(f"synthetic: extend_weeks = {weeks} must be between 0 and {MAX_WEEKS - base_weeks}")
    if not 0.0 <= shift_events <= 10.0:
        raise ParameterError(f"synthetic: shift_events = {shift_events} must be between 0 and 10 (1 = unchanged)")
    if not -1.0 <= shift_conversion <= 1.0:
        raise ParameterError(f"synthetic: shift_conversion = {shift_conversion} must be between -1 and 1 "
                             "(0 = unchanged)")


@dataclasses.dataclass
class _State:
    """Per user, where the history stands."""

    p: np.ndarray  # latent propensity after the last event
    churned: np.ndarray
    converted: np.ndarray
    counts: dict[str, np.ndarray]  # events so far of each churn rule's type


def _state(base: SyntheticData) -> _State:
    n = base.n_profiles
    p = base.profile.p0.copy()
    last = np.flatnonzero(np.r_[base.user[1:] != base.user[:-1], True]) if base.n_events else np.empty(0, np.int64)
    p[base.user[last]] = base.propensity[last]
    counts = {r.event_type: np.bincount(base.user[base.code == base.model.code(r.event_type)], minlength=n)
              for r in base.model.churn_rules}
    return _State(p=p, churned=base.churned.copy(), converted=base.converted.copy(), counts=counts)


def _week_block(rng, model: SimulationModel, state: _State, lo: int, hi: int, start_us: int, churn: bool,
                first_msg: int) -> dict[str, np.ndarray]:
    """One week of users ``lo:hi`` from ``state`` (updated in place); the block's event columns."""
    n = hi - lo
    by_type, _ = _generate_block_events(rng, n, model, 1, US_PER_WEEK, False, first_msg=first_msg)
    names = [t for t in model.names if t in by_type]
    ev = _Events.concat([by_type[t] for t in names] or [_Events.empty(False)])
    code = np.concatenate([np.full(len(by_type[t]), model.code(t), np.int8) for t in names] or [np.empty(0, np.int8)])
    keep = (ev.ts < US_PER_WEEK) & ~state.churned[lo:hi][ev.user]  # the churned are gone
    churned_now = np.zeros(n, bool)
    churn_at = np.full(n, US_PER_WEEK, np.int64)
    if churn:
        for rule in model.churn_rules:
            sel = np.flatnonzero(keep & (code == model.code(rule.event_type)))
            prior = state.counts[rule.event_type][lo:hi]
            sel = sel[np.argsort(ev.user[sel] * US_PER_WEEK + ev.ts[sel], kind="stable")]
            starts, lengths = _segments(ev.user[sel])
            users = ev.user[sel[starts]] if len(starts) else np.empty(0, np.int64)
            room = rule.limit - prior[users]  # events of this type the user may still have
            over = lengths > room
            at = sel[starts[over] + room[over]]  # the event that goes over the limit
            churn_at[ev.user[at]] = np.minimum(churn_at[ev.user[at]], ev.ts[at])
            np.add.at(prior, ev.user[sel[ev.ts[sel] <= churn_at[ev.user[sel]]]], 1)
            state.counts[rule.event_type][lo:hi] = prior
        churned_now = churn_at < US_PER_WEEK
        keep &= ev.ts <= churn_at[ev.user]
    idx = np.flatnonzero(keep)
    user = ev.user[idx]
    key = user * US_PER_WEEK + ev.ts[idx]
    order = np.argsort(key, kind="stable")
    idx, key, user = idx[order], key[order], user[order]
    code = code[idx]
    p = propensity_walk(user, np.array([e.propensity_delta for e in model.events])[code], state.p[lo:hi])
    if churned_now.any():
        last = np.r_[user[1:] != user[:-1], True] if len(user) else np.empty(0, bool)
        p[last & churned_now[user]] = 0.0
    draws = np.array([e.draws for e in model.events])[code] & ~state.converted[lo:hi][user]
    trigger = first_success(user, draws, p, rng)
    conv_ts = key[trigger] - user[trigger] * US_PER_WEEK + CONVERSION_DELAY_S * US_PER_S
    observed = conv_ts < US_PER_WEEK
    trigger, conv_ts = trigger[observed], conv_ts[observed]
    conv_user = user[trigger]
    # state after the week
    if len(user):
        last = np.r_[user[1:] != user[:-1], True]
        state.p[lo + user[last]] = p[last]
    state.churned[lo:hi] |= churned_now
    state.converted[lo + conv_user] = True
    ts = np.concatenate([key - user * US_PER_WEEK, conv_ts]) + start_us
    users = np.concatenate([user, conv_user]) + lo
    order = np.lexsort((ts, users))
    return {"user": users[order].astype(np.int32),
            "code": np.concatenate([code, np.full(len(conv_user), model.code(CONVERSION_EVENT), np.int8)])[order],
            "ts": ts[order], "p": np.concatenate([p, p[np.maximum(trigger, 0)] if len(trigger) else p[:0]])[order],
            "msg": np.concatenate([ev.msg[idx], np.full(len(conv_user), -1, np.int64)])[order]}


def extend(base: SyntheticData, weeks: int, shift_events: float = 1.0, shift_conversion: float = 0.0) -> SyntheticData:
    """The ``weeks`` after ``base``'s window for the same users (see the module docstring).

    The result holds the extension's events only (its window is ``[base end, base end +
    weeks)``); its ``converted``/``churned`` are the users' states at its end.
    """
    check(base.legacy, base.weeks, weeks, shift_events, shift_conversion)
    model = scaled_model(base.model, shift_events)
    state = _state(base)
    if shift_conversion:
        state.p = np.where(state.churned, 0.0, np.clip(state.p + shift_conversion, 0.0, 1.0))
    start_p = state.p.copy()  # the oracle's row for each user at the extension's start
    parts: list[dict[str, np.ndarray]] = []
    start = base.window_end_us
    for w in range(weeks):
        for b, lo in enumerate(range(0, base.n_profiles, BLOCK_USERS)):
            hi = min(lo + BLOCK_USERS, base.n_profiles)
            rng = np.random.default_rng(np.random.SeedSequence(base.seed, spawn_key=(_EXTEND_STREAM, w, b)))
            parts.append(_week_block(rng, model, state, lo, hi, start + w * US_PER_WEEK, base.churn,
                                     first_msg=(b << 32) | (1 << 31) | (w << 22)))
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0) for k in ("user", "code", "ts", "p", "msg")}
    order = np.lexsort((cols["ts"], cols["user"])) if len(cols["user"]) else np.empty(0, np.int64)
    end = base.window_end + timedelta(weeks=weeks)
    out = SyntheticData(
        n_profiles=base.n_profiles, weeks=weeks, seed=base.seed, legacy=False, churn=base.churn, tenant=base.tenant,
        model=model, window_start=base.window_end, window_end=end,
        user=cols["user"][order].astype(np.int32), code=cols["code"][order].astype(np.int8),
        ts=cols["ts"][order].astype(np.int64), propensity=cols["p"][order].astype(np.float64),
        message=cols["msg"][order].astype(np.int64), parent=None, profile=base.profile, churned=state.churned,
        converted=state.converted)
    out.profile = dataclasses.replace(base.profile, p0=start_p)
    return out
