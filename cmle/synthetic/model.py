"""The simulation model: event types, rates, propensity deltas, dependencies, churn, profiles.

Pure data (no randomness here). Two parameter sets:

* :data:`LEGACY_MODEL` — the CMLE notebooks' table (``SimulationHelpers.py``) unchanged. With
  ``overwrite_children`` the generator reproduces their bug: for each parent type, only the
  children of the *last* parent survive and they *replace* the child type's list, and a
  dependent type's mean number of children per parent is ``weekly_rate * weeks``.
* :data:`DEFAULT_MODEL` — the same event types, dependency graph, timing and propensity
  deltas, with every parent's children kept (a real branching process) and the branching
  factors re-calibrated so that the data stay realistic: see ``docs/stages/synthetic.md`` and
  :func:`SimulationModel.expected_counts`.

A model's meaning (both modes): base events arrive as a Poisson process over the window;
each event of a parent type spawns ``Poisson(children_per_parent)`` events of each child type
at ``parent + Exponential(mean_hours_after_parent)``. A user's latent propensity starts at the
initial propensity and after every event becomes ``clip(p + delta, 0, 1)``; at every event
that is not direct marketing or advertising the user converts with probability ``p`` (a
``web.formFilledOut`` event exactly :data:`CONVERSION_DELAY_S` later), until converted.
With churn rules (default model), a user's history ends at the churn event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cmle.columns import CONVERSION_EVENT

CONVERSION_DELAY_S = 60
# The event types that never trigger a conversion draw (prefixes of eventType).
NO_DRAW_PREFIXES = ("directMarketing", "advertising")


@dataclass(frozen=True)
class EventType:
    """One row of the event table.

    ``weekly_rate``: base events per week (base types). In legacy mode it is also what the
    notebooks used for dependents: ``weekly_rate * weeks`` children per parent.
    ``children_per_parent``: expected children per parent event (default model, dependents).
    ``propensity_delta``: change of the latent propensity at each such event.
    ``mean_hours_after_parent``: mean of the exponential delay after the parent event.
    """

    name: str
    weekly_rate: float
    propensity_delta: float
    mean_hours_after_parent: float
    children_per_parent: float = 0.0

    @property
    def draws(self) -> bool:
        """True when an event of this type gives the user a chance to convert."""
        return self.name != CONVERSION_EVENT and not self.name.startswith(NO_DRAW_PREFIXES)


@dataclass(frozen=True)
class ChurnRule:
    """The user churns at the event that makes the count of ``event_type`` exceed ``limit``:
    that event is the user's last one, and the user's latent propensity is 0 from it on."""

    event_type: str
    limit: int


@dataclass(frozen=True)
class Profiles:
    """How profile attributes are drawn and how they shift the initial propensity.

    Choices are ``(value, probability, propensity_shift)``; the age shift applies to ages in
    ``[lo, hi]``. Shifts add to the model's initial propensity.
    """

    genders: tuple[tuple[str, float, float], ...]
    regions: tuple[tuple[str, float, float], ...]
    tiers: tuple[tuple[str, float, float], ...]
    age_mean: float = 42.0
    age_sd: float = 14.0
    age_min: int = 18
    age_max: int = 90
    age_shifts: tuple[tuple[int, int, float], ...] = ()
    # sign-up happens between these many days before the window start
    signup_days: tuple[int, int] = (14, 5 * 365)


@dataclass(frozen=True)
class SimulationModel:
    name: str
    events: tuple[EventType, ...]
    base_types: tuple[str, ...]
    # parent -> children, processed in this order (a topological order of the graph)
    dependencies: tuple[tuple[str, tuple[str, ...]], ...]
    initial_propensity: float
    profiles: Profiles
    churn_rules: tuple[ChurnRule, ...] = ()
    overwrite_children: bool = False  # the notebooks' bug (legacy)
    children_from_weekly_rate: bool = False  # legacy: children per parent = weekly_rate * weeks
    _index: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {e.name: i for i, e in enumerate(self.events)})
        names = set(self._index)
        for parent, children in self.dependencies:
            unknown = {parent, *children} - names
            if unknown:
                raise ValueError(f"model {self.name}: unknown event types in dependencies: {sorted(unknown)}")
        if CONVERSION_EVENT not in names:
            raise ValueError(f"model {self.name}: the event table lacks {CONVERSION_EVENT}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)

    def code(self, name: str) -> int:
        """The integer code of an event type (its position in the table)."""
        return self._index[name]

    def event(self, name: str) -> EventType:
        return self.events[self._index[name]]

    def mean_children(self, child: str, weeks: int) -> float:
        """Expected number of ``child`` events each parent event spawns."""
        e = self.event(child)
        return e.weekly_rate * weeks if self.children_from_weekly_rate else e.children_per_parent

    def expected_counts(self, weeks: int) -> dict[str, float]:
        """Expected events of each type per user, before churn, window cut-off and conversion.

        Exact for the default (branching) model. The legacy model's overwrite bug makes its
        expectation depend on who the last parent is; it is not given here (measured instead).
        """
        if self.overwrite_children:
            raise ValueError("expected counts are defined for the branching (non-legacy) model only")
        counts = {n: 0.0 for n in self.names}
        for b in self.base_types:
            counts[b] += self.event(b).weekly_rate * weeks
        for parent, children in self.dependencies:
            for child in children:
                counts[child] += counts[parent] * self.mean_children(child, weeks)
        return counts


# The CMLE notebooks' table (eventType, weekly average, propensity delta, mean hours after
# parent), in the notebooks' order; web.formFilledOut is the conversion (label) event.
_NOTEBOOK_TABLE = (
    ("advertising.impressions", 0.1, 0.001, 0.0),
    ("advertising.clicks", 0.01, 0.002, 0.5),
    ("web.webpagedetails.pageViews", 0.1, 0.005, 0.1),
    ("web.webinteraction.linkClicks", 0.05, 0.005, 0.1),
    ("commerce.productViews", 0.05, 0.005, 0.2),
    ("commerce.purchases", 0.01, 0.1, 1.0),
    ("decisioning.propositionDisplay", 0.05, 0.005, 0.1),
    ("decisioning.propositionInteract", 0.01, 0.1, 0.05),
    ("decisioning.propositionDismiss", 0.01, -0.2, 0.05),
    ("directMarketing.emailSent", 0.5, 0.005, 0.0),
    ("directMarketing.emailOpened", 0.2, 0.02, 24.0),
    ("directMarketing.emailClicked", 0.05, 0.1, 0.5),
    (CONVERSION_EVENT, 0.0, 0.0, 0.0),
)

BASE_TYPES = ("advertising.impressions", "web.webpagedetails.pageViews", "directMarketing.emailSent")

DEPENDENCIES = (
    ("advertising.impressions", ("advertising.clicks",)),
    ("directMarketing.emailSent", ("directMarketing.emailOpened",)),
    ("directMarketing.emailOpened", ("directMarketing.emailClicked",)),
    ("directMarketing.emailClicked", ("web.webpagedetails.pageViews",)),
    ("web.webpagedetails.pageViews", ("web.webinteraction.linkClicks", "commerce.productViews",
                                      "decisioning.propositionDisplay")),
    ("commerce.productViews", ("commerce.purchases",)),
    ("decisioning.propositionDisplay", ("decisioning.propositionInteract", "decisioning.propositionDismiss")),
)

# "If more than 10 advertising impressions, or 5 emails are sent, the user churns, and no
# more events for that user are generated" (Week1 notebook; never implemented there).
CHURN_RULES = (ChurnRule("advertising.impressions", 10), ChurnRule("directMarketing.emailSent", 5))

_GENDERS = (("female", 0.49, 0.0), ("male", 0.47, 0.0), ("non_specific", 0.02, 0.0), ("not_specified", 0.02, 0.0))
_REGIONS = (("north", 0.22, 0.0), ("south", 0.26, 0.0), ("east", 0.2, 0.0), ("west", 0.24, 0.0),
            ("international", 0.08, 0.0))
_TIERS = (("none", 0.45, 0.0), ("bronze", 0.3, 0.0), ("silver", 0.17, 0.0), ("gold", 0.08, 0.0))

LEGACY_MODEL = SimulationModel(
    name="legacy",
    events=tuple(EventType(n, w, d, h) for n, w, d, h in _NOTEBOOK_TABLE),
    base_types=BASE_TYPES,
    dependencies=DEPENDENCIES,
    initial_propensity=0.001,
    # attributes are drawn the same way but carry no signal, as in the notebooks (no profiles)
    profiles=Profiles(genders=_GENDERS, regions=_REGIONS, tiers=_TIERS),
    churn_rules=(),
    overwrite_children=True,
    children_from_weekly_rate=True,
)

# The default model's re-calibration (see docs/stages/synthetic.md for the why):
# expected children per parent event, and the base rates that differ from the notebooks'.
# Propensity deltas, timing and the dependency graph are the notebooks'.
DEFAULT_WEEKLY_RATES = {"advertising.impressions": 0.5}
DEFAULT_CHILDREN_PER_PARENT = {
    "advertising.clicks": 0.05,
    "directMarketing.emailOpened": 0.4,
    "directMarketing.emailClicked": 0.2,
    "web.webpagedetails.pageViews": 1.0,
    "web.webinteraction.linkClicks": 0.25,
    "commerce.productViews": 0.25,
    "decisioning.propositionDisplay": 0.25,
    "commerce.purchases": 0.1,
    "decisioning.propositionInteract": 0.1,
    "decisioning.propositionDismiss": 0.1,
}

DEFAULT_MODEL = SimulationModel(
    name="default",
    events=tuple(EventType(n, DEFAULT_WEEKLY_RATES.get(n, w), d, h, DEFAULT_CHILDREN_PER_PARENT.get(n, 0.0))
                 for n, w, d, h in _NOTEBOOK_TABLE),
    base_types=BASE_TYPES,
    dependencies=DEPENDENCIES,
    initial_propensity=0.001,
    profiles=Profiles(
        genders=_GENDERS,
        regions=_REGIONS,
        tiers=(("none", 0.45, 0.0), ("bronze", 0.3, 0.005), ("silver", 0.17, 0.01), ("gold", 0.08, 0.02)),
        age_shifts=((25, 44, 0.005),),
    ),
    churn_rules=CHURN_RULES,
)


def get_model(legacy: bool) -> SimulationModel:
    return LEGACY_MODEL if legacy else DEFAULT_MODEL
