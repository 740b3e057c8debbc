"""The model spec as typed data, built from a YAML document that passed the JSON Schema.

:func:`build` turns the validated document into a :class:`ModelSpec` and checks what the
schema cannot (paths and conditions parse, names are unique, the goal and eligibility make
sense together); every error names the spec's file and line (:class:`SpecError`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cmle.columns import CONVERSION_EVENT, META_COLUMNS
from cmle.errors import ConfigError
from cmle.modelspec.conditions import Condition, ConditionError, parse_condition
from cmle.modelspec.paths import FieldPath, Identity, PathError
from cmle.modelspec.yamlpos import dotted, line_of

OCCURS, DOES_NOT_OCCUR = "occurs", "does_not_occur"
AGGREGATIONS = ("sum", "avg", "max", "min", "count")
DEFAULT_AGGREGATIONS = ("sum", "avg", "max")
AUTO_LOOKBACK = 0  # features.lookback_days left out: the look-back follows the history (cmle.features.windows)
DEFAULT_WINDOWS = (7, 14, 28)


class SpecError(ConfigError):
    """The model spec is invalid or does not fit the data; the message names the spec line."""

    def __init__(self, message: str, source: str = "", line: int | None = None, path: tuple = ()):
        where = source + (f", line {line}" if line else "") + (f" ({dotted(path)})" if path else "")
        super().__init__(f"model spec {where}: {message}" if where else f"model spec: {message}")
        self.source, self.line, self.path, self.reason = source, line, tuple(path), message


@dataclass(frozen=True)
class DatasetRef:
    """A dataset by name or by id."""

    name: str = ""
    id: str = ""

    def describe(self) -> str:
        return f"id {self.id}" if self.id else repr(self.name)


@dataclass(frozen=True)
class EventsSource:
    dataset: DatasetRef | None  # None: the synthetic stage's events dataset
    identity: Identity
    timestamp: FieldPath
    event_type: FieldPath


@dataclass(frozen=True)
class Attribute:
    """A profile attribute that becomes a feature: numeric, categorical, or a date (days since)."""

    field: FieldPath
    name: str
    kind: str  # numeric | categorical | date
    description: str = ""


@dataclass(frozen=True)
class ProfilesSource:
    dataset: DatasetRef | None  # None: the synthetic stage's profiles dataset, or the union
    identity: Identity
    known_from: FieldPath | None
    attributes: tuple[Attribute, ...]
    union: bool = False  # the platform's merged (union) profiles, made into a dataset
    merge_policy: str = ""  # with union: a merge policy id ("" = the sandbox's default)

    def of_kind(self, kind: str) -> tuple[Attribute, ...]:
        return tuple(a for a in self.attributes if a.kind == kind)


@dataclass(frozen=True)
class Goal:
    event_types: tuple[str, ...]
    any_event: bool
    condition: Condition | None
    outcome: str
    window_days: int
    description: str = ""

    @property
    def churn(self) -> bool:
        return self.outcome == DOES_NOT_OCCUR

    def phrase(self) -> str:
        """What the score predicts, for descriptions: e.g. 'commerce.purchases within 30 days'."""
        if self.description:
            return self.description
        what = "any event" if self.any_event else " or ".join(self.event_types) if self.event_types else "an event"
        if self.condition is not None:
            what += f" where {self.condition.text}"
        verb = "no " if self.churn else ""
        return f"{verb}{what} within {self.window_days} days"


@dataclass(frozen=True)
class Eligibility:
    active_within_days: int | None
    exclude_goal_reached: bool
    event_condition: Condition | None
    profile_condition: Condition | None

    @property
    def restricted(self) -> bool:
        return bool(self.active_within_days or self.exclude_goal_reached or self.event_condition
                    or self.profile_condition)


@dataclass(frozen=True)
class EventTypeFeature:
    """Counts (look-back and recent windows) and recency of one event type."""

    event_type: str
    count: str
    recency: str
    description: str = ""


@dataclass(frozen=True)
class NumericFeature:
    """A numeric event field aggregated over the look-back (``{name}_{aggregation}`` columns)."""

    field: FieldPath
    name: str
    aggregations: tuple[str, ...]
    event_types: tuple[str, ...] = ()
    description: str = ""

    def columns(self) -> list[str]:
        return [f"{self.name}_{a}" for a in self.aggregations]


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    denominator: str
    description: str = ""


@dataclass(frozen=True)
class Features:
    lookback_days: int
    windows: tuple[int, ...]
    event_types: tuple[EventTypeFeature, ...]
    auto_top: int
    recency: bool
    activity: bool
    ratios: tuple[Ratio, ...]
    numeric: tuple[NumericFeature, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec; see docs/model-spec.md."""

    name: str
    description: str
    model_name: str
    synthetic: bool
    events: EventsSource
    profiles: ProfilesSource | None
    goal: Goal
    eligibility: Eligibility
    features: Features
    funnel: tuple[str, ...]
    source: str = ""
    document: dict = field(default_factory=dict, compare=False, repr=False)
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    def line(self, *path) -> int:
        return line_of(self.lines, tuple(path))

    def error(self, path: tuple, message: str) -> SpecError:
        """A :class:`SpecError` pointing at ``path`` of this spec (its line, or its nearest parent's)."""
        return SpecError(message, self.source, self.line(*path), path)

    @property
    def notebooks_goal(self) -> bool:
        """The CMLE notebooks' question on the synthetic data (subscription, web.formFilledOut):
        the only one their training-set framing (``cmle``) and the synthetic oracle describe."""
        g = self.goal
        return self.synthetic and g.event_types == (CONVERSION_EVENT,) and not g.churn and g.condition is None

    @property
    def fingerprint(self) -> str:
        """A hash of the spec's content (not its comments or layout)."""
        text = json.dumps(self.document, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- building -------------------------------------------------------------------------------
_SLUG = re.compile(r"[^A-Za-z0-9]+")


def slug(text: str) -> str:
    """A column-name piece from an event type or field path: ``commerce.purchases`` -> ``commerce_purchases``."""
    out = _SLUG.sub("_", text.replace("{tenant}", "tenant")).strip("_")
    return out if out and not out[0].isdigit() else f"f_{out}"


class _Builder:
    def __init__(self, doc: dict, lines: dict, source: str):
        self.doc, self.lines, self.source = doc, lines, source

    def fail(self, path: tuple, message: str) -> SpecError:
        return SpecError(message, self.source, line_of(self.lines, path), path)

    def path(self, value: str, where: tuple) -> FieldPath:
        try:
            return FieldPath.parse(value)
        except PathError as exc:
            raise self.fail(where, str(exc)) from None

    def scalar_path(self, value: str, where: tuple) -> FieldPath:
        p = self.path(value, where)
        if p.has_array:
            raise self.fail(where, f"{value}: this field must be a single value, not a path into an array")
        return p

    def condition(self, value: str | None, where: tuple) -> Condition | None:
        if value is None:
            return None
        try:
            return parse_condition(value)
        except ConditionError as exc:
            raise self.fail(where, f"condition {value!r}: {exc}") from None

    def identity(self, value: dict | None, where: tuple, default: Identity | None = None) -> Identity:
        if value is None:
            return default or Identity()
        fld = value.get("field")
        if fld is None:
            return Identity(namespace=value["namespace"])
        return Identity(namespace=value.get("namespace", "ECID"), field=self.scalar_path(fld, (*where, "field")))

    def dataset(self, value: Any, where: tuple, synthetic: bool) -> DatasetRef | None:
        if value is None:
            if not synthetic:
                raise self.fail(where, "name the dataset (dataset: <name>, or {id: <id>}), or set synthetic: true "
                                       "to use the datasets of the synthetic stage")
            return None
        if synthetic:
            raise self.fail((*where, "dataset"), "synthetic: true uses the synthetic stage's datasets; remove "
                                                 "dataset, or remove synthetic: true to name your own")
        if isinstance(value, str):
            return DatasetRef(name=value)
        return DatasetRef(name=value.get("name", ""), id=value.get("id", ""))

    def named(self, item: Any, where: tuple) -> tuple[FieldPath, str, str]:
        if isinstance(item, str):
            p = self.scalar_path(item, where)
            return p, p.segments[-1].name, ""
        p = self.scalar_path(item["field"], (*where, "field"))
        return p, item.get("name") or p.segments[-1].name, item.get("description", "")

    def build(self) -> ModelSpec:
        d = self.doc
        synthetic = bool(d.get("synthetic", False))
        ev = d["events"]
        events = EventsSource(
            dataset=self.dataset(ev.get("dataset"), ("events",), synthetic),
            identity=self.identity(ev["identity"], ("events", "identity")),
            timestamp=self.scalar_path(ev.get("timestamp", "timestamp"), ("events", "timestamp")),
            event_type=self.scalar_path(ev.get("event_type", "eventType"), ("events", "event_type")),
        )
        profiles = self.profiles(d.get("profiles"), synthetic, events.identity)
        goal = self.goal(d["goal"])
        eligibility = self.eligibility(d.get("eligibility") or {}, goal, profiles)
        features = self.features(d.get("features") or {}, goal, eligibility)
        spec = ModelSpec(
            name=d["name"], description=d.get("description", ""), model_name=d.get("model_name", ""),
            synthetic=synthetic, events=events, profiles=profiles, goal=goal, eligibility=eligibility,
            features=features, funnel=tuple((d.get("explore") or {}).get("funnel") or ()), source=self.source,
            document=d, lines=self.lines)
        self.unique_columns(spec)
        return spec

    def profiles(self, p: dict | None, synthetic: bool, events_identity: Identity) -> ProfilesSource | None:
        if p is None:
            return None
        attrs = []
        for key, kind in (("numeric", "numeric"), ("categorical", "categorical"), ("dates", "date")):
            for i, item in enumerate(p.get(key) or []):
                fld, name, desc = self.named(item, ("profiles", key, i))
                attrs.append(Attribute(fld, name, kind, desc))
        known = p.get("known_from")
        union = bool(p.get("union", False))
        if union and "dataset" in p:
            raise self.fail(("profiles", "union"), "profiles come from one dataset or from the profile union, "
                                                   "not both: remove dataset, or remove union: true")
        if "merge_policy" in p and not union:
            raise self.fail(("profiles", "merge_policy"), "merge_policy applies to the profile union only: add "
                                                          "union: true, or remove merge_policy")
        if not union and "dataset" not in p and not synthetic:
            raise self.fail(("profiles",), "say where the profiles come from: dataset: <name> (or {id: <id>}), "
                                           "or union: true for the platform's merged profiles")
        # The union is exported keyed by identityMap: by default the events' namespace there.
        default_identity = Identity(namespace=events_identity.namespace) if union else events_identity
        return ProfilesSource(
            dataset=None if union else self.dataset(p.get("dataset"), ("profiles",), synthetic),
            identity=self.identity(p.get("identity"), ("profiles", "identity"), default=default_identity),
            known_from=self.scalar_path(known, ("profiles", "known_from")) if known else None,
            attributes=tuple(attrs), union=union, merge_policy=p.get("merge_policy", ""))

    def goal(self, g: dict) -> Goal:
        types = tuple(g.get("event_types") or ())
        any_event = bool(g.get("any_event", False))
        cond = self.condition(g.get("condition"), ("goal", "condition"))
        if any_event and types:
            raise self.fail(("goal", "any_event"), "any_event: true and event_types exclude each other; keep one")
        if not (types or any_event or cond):
            raise self.fail(("goal",), "say what the goal is: event_types, a condition, or any_event: true")
        if any_event and cond:
            raise self.fail(("goal", "condition"), "any_event: true counts every event; drop the condition, or "
                                                   "drop any_event to count only events matching it")
        if len(set(types)) != len(types):
            raise self.fail(("goal", "event_types"), "an event type is listed twice")
        return Goal(event_types=types, any_event=any_event, condition=cond, outcome=g.get("outcome", OCCURS),
                    window_days=int(g["window_days"]), description=g.get("description", ""))

    def eligibility(self, e: dict, goal: Goal, profiles: ProfilesSource | None) -> Eligibility:
        exclude = e.get("exclude_goal_reached", not goal.churn)
        if exclude and goal.churn:
            where = ("eligibility", "exclude_goal_reached") if "exclude_goal_reached" in e else ("goal", "outcome")
            raise self.fail(where,
                            "with outcome does_not_occur the goal is the activity itself; exclude_goal_reached "
                            "would leave nobody. Use active_within_days to score active profiles")
        prof_cond = self.condition(e.get("profile_condition"), ("eligibility", "profile_condition"))
        if prof_cond is not None and profiles is None:
            raise self.fail(("eligibility", "profile_condition"), "a profile_condition needs a profiles section")
        return Eligibility(active_within_days=e.get("active_within_days"), exclude_goal_reached=bool(exclude),
                           event_condition=self.condition(e.get("event_condition"), ("eligibility", "event_condition")),
                           profile_condition=prof_cond)

    def features(self, f: dict, goal: Goal, eligibility: Eligibility) -> Features:
        lookback = int(f.get("lookback_days", AUTO_LOOKBACK))  # left out: follow the history
        windows = tuple(f.get("windows", DEFAULT_WINDOWS))
        types: list[EventTypeFeature] = []
        for i, item in enumerate(f.get("event_types") or []):
            where = ("features", "event_types", i)
            if isinstance(item, str):
                item = {"type": item}
            ty = item["type"]
            if ty in [t.event_type for t in types]:
                raise self.fail(where, f"event type {ty} is listed twice")
            if eligibility.exclude_goal_reached and not goal.condition and ty in goal.event_types:
                raise self.fail(where, f"{ty} is the goal and profiles that reached it are not eligible "
                                       "(exclude_goal_reached), so its count would always be 0: remove it")
            s = slug(ty)
            types.append(EventTypeFeature(ty, item.get("name") or f"count_{s}",
                                          item.get("recency_name") or f"minutes_since_{s}",
                                          item.get("description", "")))
        auto = int((f.get("auto") or {}).get("top", 0))
        known = {t.event_type for t in types}
        ratios = []
        for i, r in enumerate(f.get("ratios") or []):
            for part in ("numerator", "denominator"):
                if r[part] not in known:
                    raise self.fail(("features", "ratios", i, part),
                                    f"{r[part]} must be one of features.event_types to be used in a ratio")
            ratios.append(Ratio(r["name"], r["numerator"], r["denominator"], r.get("description", "")))
        numeric = []
        for i, n in enumerate(f.get("numeric") or []):
            fld = self.path(n["field"], ("features", "numeric", i, "field"))
            numeric.append(NumericFeature(fld, n.get("name") or slug(fld.text.replace("[]", "")),
                                          tuple(n.get("aggregations") or DEFAULT_AGGREGATIONS),
                                          tuple(n.get("event_types") or ()), n.get("description", "")))
        return Features(lookback_days=lookback, windows=windows, event_types=tuple(types), auto_top=auto,
                        recency=bool(f.get("recency", True)), activity=bool(f.get("activity", True)),
                        ratios=tuple(ratios), numeric=tuple(numeric))

    def unique_columns(self, spec: ModelSpec) -> None:
        """Every explicitly named column is unique and none is a meta column."""
        seen: dict[str, tuple] = {}

        def claim(name: str, where: tuple) -> None:
            if name in META_COLUMNS:
                raise self.fail(where, f"{name!r} is reserved (the feature sets' {', '.join(META_COLUMNS)} columns)")
            if name in seen:
                raise self.fail(where, f"the feature name {name!r} is used twice (also at line "
                                       f"{line_of(self.lines, seen[name])}); give one of them another name")
            seen[name] = where

        for i, t in enumerate(spec.features.event_types):
            claim(t.count, ("features", "event_types", i))
            if spec.features.recency:
                claim(t.recency, ("features", "event_types", i))
        for i, r in enumerate(spec.features.ratios):
            claim(r.name, ("features", "ratios", i, "name"))
        for i, n in enumerate(spec.features.numeric):
            for col in n.columns():
                claim(col, ("features", "numeric", i))
        if spec.profiles is not None:
            index = {"numeric": 0, "categorical": 0, "date": 0}
            for a in spec.profiles.attributes:
                key = {"date": "dates"}.get(a.kind, a.kind)
                claim(a.name, ("profiles", key, index[a.kind]))
                index[a.kind] += 1


def build(doc: dict, lines: dict, source: str) -> ModelSpec:
    """A :class:`ModelSpec` from a schema-valid document; :class:`SpecError` for what the schema cannot check."""
    return _Builder(doc, lines, source).build()


__all__ = ["AGGREGATIONS", "Attribute", "DOES_NOT_OCCUR", "DatasetRef", "Eligibility", "EventTypeFeature",
           "EventsSource", "Features", "Goal", "ModelSpec", "NumericFeature", "OCCURS", "ProfilesSource", "Ratio",
           "SpecError", "build", "slug"]
