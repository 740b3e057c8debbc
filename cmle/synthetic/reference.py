"""A straightforward per-user Python implementation of the same model (the notebooks' approach).

One user at a time: draw the base events, walk the dependencies parent by parent, sort the
history, walk the propensity and draw the conversion event by event. It is the benchmark
baseline (``bench/bench_synthetic.py``) and the yardstick the tests hold the vectorised
generator to: both follow :mod:`cmle.synthetic.model` and must agree in distribution (not
draw for draw: they consume random numbers in a different order).
"""

from __future__ import annotations

import bisect
import time
from datetime import date, datetime, timedelta

import numpy as np

from cmle.columns import CONVERSION_EVENT
from cmle.synthetic.model import CONVERSION_DELAY_S, SimulationModel, get_model
from cmle.synthetic.simulate import (
    US_PER_WEEK,
    ProfileArrays,
    SyntheticData,
    check_sizes,
    resolve_end,
    to_us,
)


def _choose(rng, choices) -> tuple[int, float]:
    """Index and propensity shift of one draw from ``(value, probability, shift)`` choices."""
    total = sum(c[1] for c in choices)
    u, acc = rng.random() * total, 0.0
    for i, (_, prob, shift) in enumerate(choices):
        acc += prob
        if u < acc:
            return i, shift
    return len(choices) - 1, choices[-1][2]


def _profile(rng, model: SimulationModel, start: datetime) -> tuple[int, int, int, int, datetime, float]:
    spec = model.profiles
    age = int(min(max(round(rng.normal(spec.age_mean, spec.age_sd)), spec.age_min), spec.age_max))
    gender, g_shift = _choose(rng, spec.genders)
    region, r_shift = _choose(rng, spec.regions)
    tier, t_shift = _choose(rng, spec.tiers)
    lo, hi = spec.signup_days
    signup = start - timedelta(microseconds=int(rng.integers(lo * 86_400_000_000, hi * 86_400_000_000)))
    p0 = model.initial_propensity + g_shift + r_shift + t_shift
    for a_lo, a_hi, shift in spec.age_shifts:
        if a_lo <= age <= a_hi:
            p0 += shift
    return age, gender, region, tier, signup, min(max(p0, 0.0), 1.0)


def _user_events(rng, model: SimulationModel, weeks: int, start: datetime, window_us: int) -> dict[str, list]:
    """Event times by type for one user, parents before children (the notebooks' loop)."""
    events: dict[str, list[datetime]] = {}
    for name in model.base_types:
        n = rng.poisson(model.event(name).weekly_rate * weeks)
        events[name] = [start + timedelta(microseconds=int(rng.integers(window_us))) for _ in range(n)]
    for parent, children in model.dependencies:
        if parent not in events:
            continue
        for parent_time in events[parent]:
            for child in children:
                k = rng.poisson(model.mean_children(child, weeks))
                hours = model.event(child).mean_hours_after_parent
                times = [parent_time + timedelta(hours=rng.exponential(hours)) for _ in range(k)]
                if model.overwrite_children:
                    events[child] = times  # the notebooks' bug: the last parent's children win
                else:
                    events.setdefault(child, []).extend(times)
    return events


def _churn_cut(history: list[tuple[datetime, str]], model: SimulationModel) -> tuple[list, bool]:
    counts = {r.event_type: 0 for r in model.churn_rules}
    for i, (_, name) in enumerate(history):
        if name in counts:
            counts[name] += 1
            if any(counts[r.event_type] > r.limit for r in model.churn_rules):
                return history[:i + 1], True
    return history, False


def simulate_reference(n_profiles: int, weeks: int = 10, end: datetime | date | str | None = None, seed: int = 42,
                       legacy: bool = False, churn: bool = True, tenant: str = "cmle") -> SyntheticData:
    """The same model as :func:`cmle.synthetic.simulate.generate`, one user at a time."""
    check_sizes(n_profiles, weeks)
    started = time.perf_counter()
    model = get_model(legacy)
    churn = bool(churn) and not legacy
    window_end = resolve_end(end)
    start = window_end - timedelta(weeks=weeks)
    window_us = weeks * US_PER_WEEK
    rng = np.random.default_rng(seed)
    delta = {e.name: e.propensity_delta for e in model.events}
    draws = {e.name: e.draws for e in model.events}
    code = {name: i for i, name in enumerate(model.names)}
    rows: list[tuple[int, int, datetime, float]] = []
    profiles, churned, converted = [], [], []
    for user in range(n_profiles):
        age, gender, region, tier, signup, p0 = _profile(rng, model, start)
        profiles.append((age, gender, region, tier, to_us(signup), p0))
        by_type = _user_events(rng, model, weeks, start, window_us)
        history = sorted((t, name) for name, times in by_type.items() for t in times if t < window_end)
        did_churn = False
        if churn and model.churn_rules:
            history, did_churn = _churn_cut(history, model)
        p, conversion_at, walked = p0, None, []
        for t, name in history:
            p = min(1.0, max(p + delta[name], 0.0))
            walked.append((t, name, p))
            if conversion_at is None and draws[name] and rng.random() < p:
                conversion_at = t + timedelta(seconds=CONVERSION_DELAY_S)
        if did_churn:
            walked[-1] = (*walked[-1][:2], 0.0)  # the churn event: the user is gone
        if conversion_at is not None and conversion_at < window_end:
            at = bisect.bisect_right([w[0] for w in walked], conversion_at)
            walked.insert(at, (conversion_at, CONVERSION_EVENT, walked[at - 1][2]))
        churned.append(did_churn)
        converted.append(conversion_at is not None and conversion_at < window_end)
        rows.extend((user, code[name], t, p) for t, name, p in walked)

    prof = np.array(profiles, dtype=object).reshape(-1, 6)
    data = SyntheticData(
        n_profiles=n_profiles, weeks=weeks, seed=seed, legacy=legacy, churn=churn, tenant=tenant, model=model,
        window_start=start, window_end=window_end,
        user=np.array([r[0] for r in rows], np.int64),
        code=np.array([r[1] for r in rows], np.int8),
        ts=np.array([to_us(r[2]) for r in rows], np.int64),
        propensity=np.array([r[3] for r in rows], np.float64),
        message=np.full(len(rows), -1, np.int64),
        parent=None,
        profile=ProfileArrays(prof[:, 0].astype(np.int64), prof[:, 1].astype(np.int8), prof[:, 2].astype(np.int8),
                              prof[:, 3].astype(np.int8), prof[:, 4].astype(np.int64), prof[:, 5].astype(np.float64)),
        churned=np.array(churned, bool),
        converted=np.array(converted, bool),
    )
    data.generation_seconds = time.perf_counter() - started
    return data
