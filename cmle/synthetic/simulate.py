"""Vectorised generator of the simulation model (:mod:`cmle.synthetic.model`).

No per-user Python loop: users are simulated in blocks of :data:`BLOCK_USERS`, every step
is a numpy operation over all events of a block. Deterministic: block ``b`` draws from
``SeedSequence(seed, spawn_key=(stream, b))``, so the same parameters give the same data.

What a generated user's history is (both modes):

1. base events, then dependent events spawned by their parents (see the model);
2. the observation window ends at ``end``: events at or after it are not in the data;
3. churn (default model, ``churn=True``): the event that makes a user's count of
   impressions exceed 10 or of emails sent exceed 5 is the user's last event; every later
   event is removed and the user's latent propensity is 0 from the churn event on (a
   conversion already drawn at an earlier event still happens 60 s after that event);
4. the latent propensity walk and the conversion draws over what remains, in time order.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from typing import Iterator

import numpy as np
import pyarrow as pa

from cmle.columns import CONVERSION_EVENT
from cmle.errors import ParameterError
from cmle.synthetic.model import CONVERSION_DELAY_S, SimulationModel, get_model

log = logging.getLogger(__name__)

US_PER_S = 1_000_000
US_PER_HOUR = 3600 * US_PER_S
US_PER_WEEK = 7 * 24 * US_PER_HOUR
BLOCK_USERS = 1 << 13  # small blocks: fewer page faults, arrays stay in cache
MAX_WORKERS = 4  # threads simulating blocks at once
# Bump when a change makes the same parameters generate other data: it is part of the
# ingestion key, so a re-run after such a change replaces the data instead of keeping it.
GENERATOR_VERSION = 1
MAX_WEEKS = 520
MAX_PROFILES = 50_000_000
# RNG streams (spawn_key[0]) so that profiles and events never share draws.
_PROFILE_STREAM, _EVENT_STREAM = 0, 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- parameters -----------------------------------------------------------------------------
def resolve_end(end: datetime | date | str | None) -> datetime:
    """The window end as an aware UTC datetime: ``None``/``""`` is today 00:00 UTC; a date is
    its 00:00 UTC; a naive datetime or ISO string without offset is taken as UTC."""
    if end is None or (isinstance(end, str) and not end.strip()):
        return datetime.combine(datetime.now(timezone.utc).date(), time(0), tzinfo=timezone.utc)
    if isinstance(end, str):
        try:
            parsed = datetime.fromisoformat(end.strip())
        except ValueError:
            raise ParameterError(f"end_date = {end!r} is not a date; use YYYY-MM-DD or an ISO 8601 date-time "
                                 "such as 2024-05-01T00:00:00Z (empty means today 00:00 UTC)") from None
        end = parsed
    if isinstance(end, datetime):
        return end.replace(tzinfo=timezone.utc) if end.tzinfo is None else end.astimezone(timezone.utc)
    if isinstance(end, date):
        return datetime.combine(end, time(0), tzinfo=timezone.utc)
    raise ParameterError(f"end_date = {end!r} is not a date, a datetime or an ISO 8601 string")


def check_sizes(n_profiles: int, weeks: int) -> None:
    """ParameterError unless 1 <= n_profiles <= MAX_PROFILES and 1 <= weeks <= MAX_WEEKS."""
    if isinstance(n_profiles, bool) or not isinstance(n_profiles, (int, np.integer)) or n_profiles < 1:
        raise ParameterError(f"profiles = {n_profiles!r} must be a whole number of at least 1")
    if n_profiles > MAX_PROFILES:
        raise ParameterError(f"profiles = {n_profiles} is above {MAX_PROFILES:,}; generate in several runs")
    if isinstance(weeks, bool) or not isinstance(weeks, (int, np.integer)) or weeks < 1:
        raise ParameterError(f"weeks = {weeks!r} must be a whole number of at least 1")
    if weeks > MAX_WEEKS:
        raise ParameterError(f"weeks = {weeks} is above {MAX_WEEKS} (10 years of history)")


def to_us(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def _rng(seed: int, stream: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block)))


def _block_users(window_us: int) -> int:
    # Sort keys are user * window_us + offset in int64: keep them below 2**63.
    return int(min(BLOCK_USERS, (2**63 - 1) // window_us))


# --- profiles -------------------------------------------------------------------------------
@dataclass
class ProfileArrays:
    """Per user: attribute codes (indices into the model's choices) and initial propensity."""

    age: np.ndarray  # int64
    gender: np.ndarray  # int8 codes
    region: np.ndarray
    tier: np.ndarray
    signup_us: np.ndarray  # int64, epoch µs
    p0: np.ndarray  # float64


def draw_profiles(rng: np.random.Generator, n: int, model: SimulationModel, start_us: int) -> ProfileArrays:
    """Attributes of ``n`` users and the initial propensity they imply."""
    spec = model.profiles

    def choose(choices):
        cumulative = np.cumsum([c[1] for c in choices])
        codes = np.minimum(np.searchsorted(cumulative / cumulative[-1], rng.random(n), side="right"),
                           len(choices) - 1).astype(np.int8)
        return codes, np.array([c[2] for c in choices])[codes]

    age = np.clip(np.rint(rng.normal(spec.age_mean, spec.age_sd, n)), spec.age_min, spec.age_max).astype(np.int64)
    gender, g_shift = choose(spec.genders)
    region, r_shift = choose(spec.regions)
    tier, t_shift = choose(spec.tiers)
    lo, hi = spec.signup_days
    signup_us = start_us - rng.integers(lo * 86_400 * US_PER_S, hi * 86_400 * US_PER_S, size=n, dtype=np.int64)
    p0 = np.full(n, model.initial_propensity) + g_shift + r_shift + t_shift
    for a_lo, a_hi, shift in spec.age_shifts:
        p0 += np.where((age >= a_lo) & (age <= a_hi), shift, 0.0)
    return ProfileArrays(age, gender, region, tier, signup_us, np.clip(p0, 0.0, 1.0))


def _concat_profiles(parts: list[ProfileArrays]) -> ProfileArrays:
    return ProfileArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                           ("age", "gender", "region", "tier", "signup_us", "p0")))


# --- events of one block --------------------------------------------------------------------
@dataclass
class _Events:
    """Events of one type (or of a block) before sorting; ``gid``/``pgid`` only with parents."""

    user: np.ndarray
    ts: np.ndarray  # µs after the window start
    msg: np.ndarray
    gid: np.ndarray | None = None
    pgid: np.ndarray | None = None

    @staticmethod
    def empty(track: bool) -> "_Events":
        z = np.empty(0, np.int64)
        return _Events(z, z, z, z if track else None, z if track else None)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx) -> "_Events":
        return _Events(self.user[idx], self.ts[idx], self.msg[idx],
                       None if self.gid is None else self.gid[idx], None if self.pgid is None else self.pgid[idx])

    @staticmethod
    def concat(parts: list["_Events"]) -> "_Events":
        track = parts[0].gid is not None
        return _Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "ts", "msg")),
                       np.concatenate([p.gid for p in parts]) if track else None,
                       np.concatenate([p.pgid for p in parts]) if track else None)


@dataclass
class _Counter:
    """Running ids: generation ids (parent links) and email message numbers."""

    next_gid: int = 0
    next_msg: int = 0

    def gids(self, n: int) -> np.ndarray:
        out = np.arange(self.next_gid, self.next_gid + n, dtype=np.int64)
        self.next_gid += n
        return out

    def msgs(self, n: int) -> np.ndarray:
        out = np.arange(self.next_msg, self.next_msg + n, dtype=np.int64)
        self.next_msg += n
        return out


def _spawn(rng, parents: _Events, mean: float, mean_hours: float, counter: _Counter, keep_msg: bool) -> _Events:
    """Poisson(mean) children per parent at parent + Exponential(mean_hours).

    Drawn as Poisson(mean * parents) children given to parents uniformly at random: the same
    law (Poisson splitting) with one draw per child instead of one per parent. Children come
    in their parents' order (parents grouped by user give children grouped by user, which the
    legacy mode needs and which makes the later sort by user and time cheaper) and carry the
    parent's email message number when ``keep_msg``.
    """
    total = int(rng.poisson(mean * len(parents))) if len(parents) else 0
    which = np.sort(rng.integers(0, len(parents), size=total)) if total else np.empty(0, np.int64)
    # whole microseconds, at least one: a child is always strictly after its parent
    delay = (rng.standard_exponential(total) * (mean_hours * US_PER_HOUR)).astype(np.int64) + 1
    track = parents.gid is not None
    msg = parents.msg[which] if keep_msg else np.full(total, -1, np.int64)
    return _Events(parents.user[which], parents.ts[which] + delay, msg,
                   counter.gids(total) if track else None, parents.gid[which] if track else None)


def _last_per_user(user: np.ndarray) -> np.ndarray:
    """Index of the last element of each run of equal users (``user`` grouped)."""
    if len(user) == 0:
        return np.empty(0, np.int64)
    return np.flatnonzero(np.r_[user[1:] != user[:-1], True])


def _generate_block_events(rng, n_users: int, model: SimulationModel, weeks: int, window_us: int,
                           track: bool, first_msg: int = 0) -> tuple[dict[str, _Events], _Counter]:
    """Every event type's events before cut-off and churn (``model.dependencies`` order)."""
    counter = _Counter(next_msg=first_msg)
    events: dict[str, _Events] = {}
    users = np.arange(n_users, dtype=np.int64)
    email = model.code("directMarketing.emailSent")
    for name in model.base_types:
        k = rng.poisson(model.event(name).weekly_rate * weeks, size=n_users)
        total = int(k.sum())
        msg = counter.msgs(total) if model.code(name) == email else np.full(total, -1, np.int64)
        events[name] = _Events(np.repeat(users, k), rng.integers(0, window_us, size=total, dtype=np.int64), msg,
                               counter.gids(total) if track else None,
                               np.full(total, -1, np.int64) if track else None)
    for parent, children in model.dependencies:
        parents = events.get(parent)
        if parents is None or len(parents) == 0:
            continue
        if model.overwrite_children:
            # The notebooks' bug: each parent's children replace the list, so the last
            # parent's children are what remains, for users that have such a parent.
            parents = parents.take(_last_per_user(parents.user))
        for child in children:
            spec = model.event(child)
            born = _spawn(rng, parents, model.mean_children(child, weeks), spec.mean_hours_after_parent, counter,
                          keep_msg=child.startswith("directMarketing"))
            old = events.get(child)
            if old is None or len(old) == 0:
                events[child] = born
            elif model.overwrite_children:
                kept = old.take(~np.isin(old.user, parents.user))
                merged = _Events.concat([kept, born])
                events[child] = merged.take(np.argsort(merged.user, kind="stable"))
            else:
                events[child] = _Events.concat([old, born])
    return events, counter


def _segments(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each user's run in a user-sorted array."""
    if len(user) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    return starts, np.diff(np.r_[starts, len(user)])


def churn_times(user: np.ndarray, ts: np.ndarray, code: np.ndarray, n_users: int, model: SimulationModel,
                never: int) -> np.ndarray:
    """Per user, the time of the churn event (``never`` if none): the event that makes the
    count of a churn rule's type exceed its limit (the earliest such event over the rules).
    Only events before ``never`` (the window end) count."""
    out = np.full(n_users, never, np.int64)
    for rule in model.churn_rules:
        sel = np.flatnonzero((code == model.code(rule.event_type)) & (ts < never))
        counts = np.bincount(user[sel], minlength=n_users)
        sel = sel[counts[user[sel]] > rule.limit]  # only users that go over the limit
        if len(sel) == 0:
            continue
        sel = sel[np.argsort(user[sel] * never + ts[sel], kind="stable")]
        starts, _ = _segments(user[sel])
        at = sel[starts + rule.limit]  # the (limit + 1)-th event of each such user (one per user)
        out[user[at]] = np.minimum(out[user[at]], ts[at])
    return out


def propensity_walk(user: np.ndarray, delta: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """``p_i = min(1, max(p_{i-1} + delta_i, 0))`` per user from ``p0[user]``, in array order.

    A walk that stays inside [0, 1] is ``p0`` plus the running sum of the deltas (one
    cumulative sum for all users, exact to about 1e-12); the users whose walk leaves [0, 1]
    (after a negative delta, or near 1) are walked again with the clipping, step by step.
    """
    starts, lengths = _segments(user)
    if len(starts) == 0:
        return np.empty(0)
    c = np.cumsum(delta)
    p = c + np.repeat(p0[user[starts]] - (c[starts] - delta[starts]), lengths)
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        redo = np.repeat(np.maximum.reduceat(outside.view(np.uint8), starts).astype(bool), lengths)
        p[redo] = _clipped_walk(user[redo], delta[redo], p0)
    return p


def _clipped_walk(user: np.ndarray, delta: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """The clipped walk, vectorised across users: step k updates the k-th event of every user
    that has one, so the Python loop runs (longest history) times, not once per user."""
    p = np.empty(len(user))
    starts, lengths = _segments(user)
    order = np.argsort(-lengths, kind="stable")
    s, n_len = starts[order], lengths[order]
    current = p0[user[s]].astype(np.float64)
    active = np.searchsorted(-n_len, -np.arange(int(n_len[0])), side="left")
    for k, n in enumerate(active):
        idx = s[:n] + k
        v = current[:n] + delta[idx]
        np.maximum(v, 0.0, out=v)
        np.minimum(v, 1.0, out=v)
        current[:n] = v
        p[idx] = v
    return p


def first_success(user: np.ndarray, eligible: np.ndarray, p: np.ndarray, rng) -> np.ndarray:
    """Index of each user's first eligible event whose Bernoulli(p) draw succeeds.

    Drawing at every eligible event and keeping the first success has the same law as
    drawing in order until the first success (the draws are independent).
    """
    idx = np.flatnonzero(eligible)
    hit = idx[rng.random(len(idx)) < p[idx]]
    if len(hit) == 0:
        return hit
    return hit[np.r_[True, user[hit][1:] != user[hit][:-1]]]


class _Output:
    """Growing columns of the result, filled block after block (no final concatenation)."""

    FIELDS = (("user", np.int32), ("code", np.int8), ("ts", np.int64), ("p", np.float64), ("msg", np.int64))

    def __init__(self, track: bool):
        self.size = 0
        self.cols = {name: np.empty(0, dtype) for name, dtype in self.FIELDS}
        if track:
            self.cols["parent"] = np.empty(0, np.int64)

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` rows in all (copying what is there)."""
        if capacity > len(self.cols["user"]):
            for name, col in self.cols.items():
                new = np.empty(capacity, col.dtype)
                new[:self.size] = col[:self.size]
                self.cols[name] = new

    def append(self, block: dict[str, np.ndarray]) -> None:
        n = len(block["user"])
        capacity = len(self.cols["user"])
        if self.size + n > capacity:
            self.reserve(max(self.size + n, int(capacity * 1.25) + 1024))
        for name, col in self.cols.items():
            if name == "parent":  # block-local rows -> rows of the whole result
                col[self.size:self.size + n] = np.where(block[name] >= 0, block[name] + self.size, -1)
            else:
                col[self.size:self.size + n] = block[name]
        self.size += n

    def result(self) -> dict[str, np.ndarray]:
        return {name: col[:self.size] for name, col in self.cols.items()}


@dataclass
class _Block:
    cols: dict[str, np.ndarray]  # the block's events in user, time order (see _Output.FIELDS)
    profile: ProfileArrays
    churned: np.ndarray  # bool per user of the block
    converted: np.ndarray  # bool per user of the block


def _simulate_block(seed: int, b: int, first_user: int, n_users: int, model: SimulationModel, weeks: int,
                    start_us: int, window_us: int, churn: bool, track: bool) -> _Block:
    """Simulate block ``b`` (users ``first_user`` onwards): profiles, then events."""
    prof = draw_profiles(_rng(seed, _PROFILE_STREAM, b), n_users, model, start_us)
    rng = _rng(seed, _EVENT_STREAM, b)
    # message numbers unique over blocks without knowing the other blocks
    by_type, counter = _generate_block_events(rng, n_users, model, weeks, window_us, track, first_msg=b << 32)
    names = [n for n in model.names if n in by_type]
    ev = _Events.concat([by_type[n] for n in names] or [_Events.empty(track)])
    code = np.concatenate([np.full(len(by_type[n]), model.code(n), np.int8) for n in names] or
                          [np.empty(0, np.int8)])
    del by_type
    keep = ev.ts < window_us  # children may fall after the window end: not observed
    churned = np.zeros(n_users, bool)
    if churn and model.churn_rules:
        churn_at = churn_times(ev.user, ev.ts, code, n_users, model, never=window_us)
        churned = churn_at < window_us
        keep &= ev.ts <= churn_at[ev.user]
    idx = np.flatnonzero(keep)
    user = ev.user[idx]
    key = user * window_us + ev.ts[idx]
    order = np.argsort(key, kind="stable")
    idx, key, user = idx[order], key[order], user[order]
    code = code[idx]

    p = propensity_walk(user, np.array([e.propensity_delta for e in model.events])[code], prof.p0)
    if churned.any():
        # the churn event is a churned user's last one: from there on the user is gone
        last = np.r_[user[1:] != user[:-1], True] if len(user) else np.empty(0, bool)
        p[last & churned[user]] = 0.0
    trigger = first_success(user, np.array([e.draws for e in model.events])[code], p, rng)
    conv_ts = key[trigger] - user[trigger] * window_us + CONVERSION_DELAY_S * US_PER_S
    observed = conv_ts < window_us
    trigger, conv_ts = trigger[observed], conv_ts[observed]
    conv_user = user[trigger]
    pos = np.searchsorted(key, conv_user * window_us + conv_ts, side="right")
    converted = np.zeros(n_users, bool)
    converted[conv_user] = True

    # Merge the conversions in: conversion j lands at pos[j] + j, the other rows keep order.
    n, m = len(idx), len(pos)
    conv_rows = pos + np.arange(m)
    shift = np.zeros(n + 1, np.int64)
    shift[pos] = 1
    event_rows = np.arange(n) + np.cumsum(shift[:n])
    parts = {
        "user": (user + first_user, conv_user + first_user),
        "code": (code, model.code(CONVERSION_EVENT)),
        "ts": (key - user * window_us + start_us, conv_ts + start_us),
        "p": (p, p[pos - 1]),  # a conversion keeps the propensity of the event before it
        "msg": (ev.msg[idx], -1),
    }
    if track:
        row_of_gid = np.full(counter.next_gid, -1, np.int64)
        row_of_gid[ev.gid[idx]] = event_rows
        parent_gid = ev.pgid[idx]
        parts["parent"] = (np.where(parent_gid >= 0, row_of_gid[np.maximum(parent_gid, 0)], -1), event_rows[trigger])
    cols = {}
    for name, dtype in (*_Output.FIELDS, ("parent", np.int64)):
        if name in parts:
            col = cols[name] = np.empty(n + m, dtype)
            col[event_rows], col[conv_rows] = parts[name]
    return _Block(cols=cols, profile=prof, churned=churned, converted=converted)


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


# --- the result -----------------------------------------------------------------------------
@dataclass
class SyntheticData:
    """Generated users and events, sorted by user then time; Arrow tables built on demand.

    ``events``/``profiles``/``oracle`` are the whole tables (memory grows with the size:
    about 0.5 kB per event); :meth:`iter_event_tables` and friends build bounded pieces.
    """

    n_profiles: int
    weeks: int
    seed: int
    legacy: bool
    churn: bool  # effective (legacy never churns)
    tenant: str
    model: SimulationModel = field(repr=False)
    window_start: datetime
    window_end: datetime
    user: np.ndarray = field(repr=False)  # int32 user index 0..n-1, per event
    code: np.ndarray = field(repr=False)  # int8 event type code (model.names)
    ts: np.ndarray = field(repr=False)  # int64 µs since the epoch, UTC
    propensity: np.ndarray = field(repr=False)  # float64 latent propensity after the event
    message: np.ndarray = field(repr=False)  # int64 email message number (-1: none)
    parent: np.ndarray | None = field(repr=False)  # row of the parent event (-1: base), if kept
    profile: ProfileArrays = field(repr=False)
    churned: np.ndarray = field(repr=False)  # bool per user
    converted: np.ndarray = field(repr=False)  # bool per user
    generation_seconds: float = 0.0

    # --- figures ----------------------------------------------------------------------------
    @property
    def n_events(self) -> int:
        return int(len(self.user))

    @property
    def events_per_profile(self) -> float:
        return self.n_events / self.n_profiles

    @property
    def conversion_rate(self) -> float:
        return float(self.converted.mean())

    @property
    def churn_rate(self) -> float:
        return float(self.churned.mean())

    @property
    def window_start_us(self) -> int:
        return to_us(self.window_start)

    @property
    def window_end_us(self) -> int:
        return to_us(self.window_end)

    @cached_property
    def salt(self) -> tuple[int, int, int, int]:
        """Four 64-bit salts from the generation parameters (for ``_id`` and message ids)."""
        text = (f"cmle-synthetic|{self.model.name}|{self.seed}|{self.n_profiles}|{self.weeks}|"
                f"{self.window_end.isoformat()}|{self.churn}")
        digest = hashlib.sha256(text.encode()).digest()
        return tuple(int.from_bytes(digest[i:i + 8], "little") for i in range(0, 32, 8))

    def event_mix(self):
        """DataFrame per event type: events, share, users with one, events per profile and,
        for the default model, the expected events per profile before churn and cut-off."""
        import pandas as pd

        counts = np.bincount(self.code, minlength=len(self.model.names))
        # distinct (user, type) pairs, counted per type
        pairs = np.unique(self.user.astype(np.int64) * 64 + self.code)
        users = np.bincount((pairs % 64).astype(np.int64), minlength=len(self.model.names))
        expected = None
        if not self.model.overwrite_children:
            expected = self.model.expected_counts(self.weeks)
        df = pd.DataFrame({
            "eventType": list(self.model.names),
            "events": counts.astype(np.int64),
            "share": counts / max(self.n_events, 1),
            "users": users,
            "per_profile": counts / self.n_profiles,
        })
        if expected is not None:
            df["expected_per_profile_before_churn"] = [expected[n] for n in self.model.names]
        return df.sort_values("events", ascending=False, kind="stable").reset_index(drop=True)

    # --- Arrow tables -----------------------------------------------------------------------
    def iter_event_tables(self, max_rows: int = 500_000) -> Iterator[pa.Table]:
        """The events dataset in pieces of at most ``max_rows`` rows (at least one piece)."""
        from cmle.synthetic.xdm import event_table

        for lo in range(0, max(self.n_events, 1), max_rows):
            yield event_table(self, lo, min(lo + max_rows, self.n_events))

    def iter_profile_tables(self, max_rows: int = 500_000) -> Iterator[pa.Table]:
        from cmle.synthetic.xdm import profile_table

        for lo in range(0, self.n_profiles, max_rows):
            yield profile_table(self, lo, min(lo + max_rows, self.n_profiles))

    def iter_oracle_tables(self, max_users: int = 200_000) -> Iterator[pa.Table]:
        from cmle.synthetic.oracle import oracle_table

        for lo in range(0, self.n_profiles, max_users):
            yield oracle_table(self, lo, min(lo + max_users, self.n_profiles))

    @cached_property
    def events(self) -> pa.Table:
        """The whole events dataset (pieces of 2M rows keep string offsets in 32 bits)."""
        return pa.concat_tables(list(self.iter_event_tables(2_000_000)))

    @cached_property
    def profiles(self) -> pa.Table:
        return pa.concat_tables(list(self.iter_profile_tables(2_000_000)))

    @cached_property
    def oracle(self) -> pa.Table:
        return pa.concat_tables(list(self.iter_oracle_tables()))


def generate(n_profiles: int, weeks: int = 10, end: datetime | date | str | None = None, seed: int = 42,
             legacy: bool = False, churn: bool = True, tenant: str = "cmle",
             keep_parents: bool = False) -> SyntheticData:
    """Simulate ``n_profiles`` users over the ``weeks`` before ``end`` (default today 00:00 UTC).

    ``legacy`` reproduces the CMLE notebooks (overwrite bug, no churn: ``churn`` is ignored).
    ``keep_parents`` also records each event's parent row (tests, diagnostics).
    """
    import time as _time

    check_sizes(n_profiles, weeks)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed = {seed!r} must be a whole number of at least 0")
    window_end = resolve_end(end)
    window_start = window_end - timedelta(weeks=weeks)
    model = get_model(legacy)
    effective_churn = bool(churn) and not legacy
    if legacy and churn:
        log.info("legacy mode: the notebooks never churn, so churn is off")
    started = _time.perf_counter()
    start_us, window_us = to_us(window_start), weeks * US_PER_WEEK
    size = _block_users(window_us)
    starts = list(range(0, n_profiles, size))
    out = _Output(keep_parents)
    profiles, churned, converted = [], [], []

    def collect(block: _Block) -> None:
        if not profiles and len(starts) > 1:  # room for the rest, judged by the first block
            out.reserve(int(len(block.cols["user"]) / len(block.churned) * n_profiles * 1.02) + 1024)
        out.append(block.cols)
        profiles.append(block.profile)
        churned.append(block.churned)
        converted.append(block.converted)

    def run(b: int) -> _Block:
        return _simulate_block(seed, b, starts[b], min(size, n_profiles - starts[b]), model, weeks, start_us,
                               window_us, effective_churn, keep_parents)

    # Blocks are independent (own random streams): simulate them on worker threads (numpy
    # releases the GIL) and collect them in order, a few in flight to bound memory.
    workers = min(_workers(), len(starts))
    if workers == 1:
        for b in range(len(starts)):
            collect(run(b))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for b in range(len(starts)):
                pending.append(pool.submit(run, b))
                if len(pending) > workers:
                    collect(pending.popleft().result())
            while pending:
                collect(pending.popleft().result())
    cols = out.result()
    data = SyntheticData(
        n_profiles=n_profiles, weeks=weeks, seed=int(seed), legacy=bool(legacy), churn=effective_churn,
        tenant=tenant, model=model, window_start=window_start, window_end=window_end,
        user=cols["user"], code=cols["code"], ts=cols["ts"], propensity=cols["p"], message=cols["msg"],
        parent=cols.get("parent"),
        profile=_concat_profiles(profiles),
        churned=np.concatenate(churned),
        converted=np.concatenate(converted),
    )
    data.generation_seconds = _time.perf_counter() - started
    return data
