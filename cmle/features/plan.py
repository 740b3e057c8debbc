"""What a feature set holds, resolved from a model spec: every column with its kind and a
readable description.

A :class:`FeaturePlan` is a model spec (:mod:`cmle.modelspec`) made concrete for one run:
the tenant's field root filled in, the windows fixed (the spec's, or the stage parameters
that override them), and the ``auto`` event types chosen. :mod:`cmle.features.render` turns
it into SQL; ``train`` reads the same list of features (:meth:`FeaturePlan.manifest`) to
know which columns are numeric and which categorical, and the description of each, so
later steps can show readable names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cmle.columns import META_COLUMNS
from cmle.features.spec import DEFAULT_LOOKBACK_DAYS, FeatureSpec
from cmle.modelspec.model import EventTypeFeature, ModelSpec, SpecError, slug

NUMERIC, CATEGORICAL = "numeric", "categorical"
# Names the feature SQL uses for its own columns (cmle/sql/features.sql): no feature may take one.
_INTERNAL = re.compile(r"^(us|k|d|g|e|look_us|first_seen_us|goals_before|goals_after|last_us|eligible_events|"
                       r"known_ts|eligible_profile|day_mask_\d+|v\d+|a\d+)$", re.IGNORECASE)
ACTIVITY_GROUP = "activity"
_AGG_WORDS = {"sum": "Total", "avg": "Average", "max": "Largest", "min": "Smallest", "count": "Number of values of"}


@dataclass(frozen=True)
class FeatureInfo:
    """One feature column: its name, kind (numeric | categorical), what it means, where it comes from."""

    name: str
    kind: str
    description: str
    group: str  # event_count | event_recency | activity | ratio | numeric_field | profile
    source: str = ""  # the event type or field path behind it

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "description": self.description, "group": self.group,
                "source": self.source}


def auto_event_feature(event_type: str) -> EventTypeFeature:
    s = slug(event_type)
    return EventTypeFeature(event_type, f"count_{s}", f"minutes_since_{s}")


@dataclass(frozen=True)
class FeaturePlan:
    """A spec resolved for one run (see the module docstring)."""

    spec: ModelSpec
    tenant: str
    windows: FeatureSpec  # look-back, outcome window and recent windows, in days
    auto_types: tuple[str, ...] = ()  # event types chosen by features.auto, in order
    infos: tuple[FeatureInfo, ...] = field(default=(), compare=False)

    @property
    def event_features(self) -> tuple[EventTypeFeature, ...]:
        return self.spec.features.event_types + tuple(auto_event_feature(t) for t in self.auto_types)

    @property
    def recent_windows(self) -> tuple[int, ...]:
        return self.windows.recent_windows

    @property
    def feature_columns(self) -> list[str]:
        return [f.name for f in self.infos]

    @property
    def categorical_columns(self) -> list[str]:
        return [f.name for f in self.infos if f.kind == CATEGORICAL]

    def info(self, name: str) -> FeatureInfo:
        return next(f for f in self.infos if f.name == name)

    def manifest(self) -> dict:
        """The plan as JSON-able data: logged by ``featurize``, read by ``train``."""
        return {"spec": self.spec.name, "spec_fingerprint": self.spec.fingerprint, "goal": self.spec.goal.phrase(),
                "outcome": self.spec.goal.outcome, "lookback_days": self.windows.lookback_days,
                "outcome_days": self.windows.outcome_days, "windows": list(self.recent_windows),
                "auto_event_types": list(self.auto_types), "features": [f.as_dict() for f in self.infos]}


def _event_infos(plan_windows: FeatureSpec, features: tuple[EventTypeFeature, ...], recency: bool) -> list[FeatureInfo]:
    lb = plan_windows.lookback_days
    out = []
    for f in features:
        what = f.description or f"{f.event_type} events"
        out.append(FeatureInfo(f.count, NUMERIC, f"Number of {what} in the {lb} days before the snapshot",
                               "event_count", f.event_type))
        out += [FeatureInfo(f"{f.count}_{w}d", NUMERIC, f"Number of {what} in the last {w} days", "event_count",
                            f.event_type) for w in plan_windows.recent_windows]
        if recency:
            out.append(FeatureInfo(f.recency, NUMERIC, f"Minutes since the last {f.event_type} event (empty: none "
                                                        f"in {lb} days)", "event_recency", f.event_type))
    return out


def _activity_infos(w: FeatureSpec) -> list[FeatureInfo]:
    lb = w.lookback_days
    return [
        FeatureInfo("events", NUMERIC, f"Number of events of any type in the {lb} days before the snapshot",
                    ACTIVITY_GROUP),
        *[FeatureInfo(f"events_{d}d", NUMERIC, f"Number of events of any type in the last {d} days",
                      ACTIVITY_GROUP) for d in w.recent_windows],
        FeatureInfo("active_days", NUMERIC, f"Days with at least one event, of the last {lb}", ACTIVITY_GROUP),
        FeatureInfo("minutes_since_last_event", NUMERIC, "Minutes since the newest event", ACTIVITY_GROUP),
        FeatureInfo("minutes_since_first_event", NUMERIC, f"Minutes since the oldest event in the last {lb} days",
                    ACTIVITY_GROUP),
    ]


def _infos(spec: ModelSpec, w: FeatureSpec, events: tuple[EventTypeFeature, ...]) -> list[FeatureInfo]:
    f = spec.features
    out = _event_infos(w, events, f.recency)
    if f.activity:
        out += _activity_infos(w)
    for r in f.ratios:
        out.append(FeatureInfo(r.name, NUMERIC, r.description or f"{r.numerator} events per {r.denominator} event "
                                                                 f"in the last {w.lookback_days} days",
                               "ratio", f"{r.numerator}/{r.denominator}"))
    for n in f.numeric:
        only = f" of {' or '.join(n.event_types)} events" if n.event_types else ""
        what = n.description or n.field.text
        for agg, col in zip(n.aggregations, n.columns()):
            out.append(FeatureInfo(col, NUMERIC, f"{_AGG_WORDS[agg]} {what}{only} in the last {w.lookback_days} days",
                                   "numeric_field", n.field.text))
    if spec.profiles is not None:
        for kind in ("numeric", "date", "categorical"):
            for a in spec.profiles.of_kind(kind):
                leaf = a.field.text.rsplit(".", 1)[-1]
                desc = a.description or (f"Days since the profile's {leaf}" if kind == "date" else f"Profile {leaf}")
                out.append(FeatureInfo(a.name, CATEGORICAL if kind == "categorical" else NUMERIC, desc, "profile",
                                       a.field.text))
    return out


def make_plan(spec: ModelSpec, tenant: str, windows: FeatureSpec | None = None,
              auto_types: tuple[str, ...] = ()) -> FeaturePlan:
    """The plan of ``spec`` for ``tenant``; ``windows`` defaults to the spec's. Raises
    :class:`SpecError` when two features end up with one name. A look-back the spec leaves to
    the history (featurize resolves it against the data) is taken as the default 56 days here."""
    w = windows or FeatureSpec(lookback_days=spec.features.lookback_days or DEFAULT_LOOKBACK_DAYS,
                               outcome_days=spec.goal.window_days,
                               windows=spec.features.windows)
    explicit = {t.event_type for t in spec.features.event_types}
    auto = tuple(t for t in dict.fromkeys(auto_types) if t not in explicit)
    events = spec.features.event_types + tuple(auto_event_feature(t) for t in auto)
    infos = _infos(spec, w, events)
    seen: set[str] = set()
    for info in infos:
        key = info.name.lower()  # Spark resolves names regardless of case
        if key in seen or info.name in META_COLUMNS or _INTERNAL.match(info.name):
            raise SpecError(f"the feature name {info.name!r} is produced twice (or is reserved); rename the feature "
                            f"from {info.source or info.group}", spec.source, spec.line("features"), ("features",))
        seen.add(key)
    if not infos:
        raise SpecError("the spec defines no feature: list features.event_types, use features.auto, keep "
                        "features.activity, or add profile attributes", spec.source, spec.line("features"),
                        ("features",))
    return FeaturePlan(spec=spec, tenant=tenant, windows=w, auto_types=auto, infos=tuple(infos))


__all__ = ["CATEGORICAL", "FeatureInfo", "FeaturePlan", "NUMERIC", "auto_event_feature", "make_plan"]
