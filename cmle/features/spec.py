"""Windows of a feature set, the defaults, and the synthetic spec's feature names.

What a feature set holds comes from a model spec (:mod:`cmle.modelspec`, resolved by
:mod:`cmle.features.plan`); :mod:`cmle.features.render` turns it into the Spark SQL of a
training or scoring set. This module keeps the windows (:class:`FeatureSpec`), the
defaults, and, for the synthetic data's spec (``conf/models/synthetic.yaml``), its event
features and columns as constants and helpers used across the package and its tests.

Point-in-time framing (``pit``, the default), for a snapshot time T::

    look-back window  [T - lookback_days, T)      features (events strictly before T)
    outcome window    (T, T + outcome_days]       label: the goal happened (or, churn, did not)
    eligible          the spec's eligibility (by default: not reached the goal at or before T)
                      among profiles known at T

The notebooks' framing (``cmle``) keeps the CMLE Week 2 definition for comparison: see
:data:`NOTEBOOK_FEATURES` and ``cmle/sql/features_cmle.sql``; it exists for the synthetic data.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmle.columns import CONVERSION_EVENT

FRAMINGS = ("pit", "cmle")

# Defaults sized for the synthetic data's 10 weeks (70 days): the look-back (8 weeks) plus
# the outcome window (2 weeks) use the whole history once, with no overlap.
DEFAULT_LOOKBACK_DAYS = 56
DEFAULT_OUTCOME_DAYS = 14
# Recent-activity windows (days) counted besides the whole look-back; windows not shorter
# than the look-back are dropped (they would repeat the look-back count).
DEFAULT_WINDOWS = (7, 14, 28)
# Customer AI refuses to train below 500 qualifying and 500 non-qualifying profiles.
DEFAULT_MIN_POSITIVES = 500
DEFAULT_MIN_NEGATIVES = 500
# The seed of the notebooks' "one random row per non-converted user" (made deterministic).
DEFAULT_CMLE_SEED = 42


@dataclass(frozen=True)
class EventFeature:
    """One event type and the names of its features.

    ``count`` is the number of such events in the look-back window (``{count}_{n}d`` in the
    last n days); ``recency`` the minutes from the newest such event to T, NULL if none.
    The seven types the notebooks used keep the notebooks' column names.
    """

    event_type: str
    count: str
    recency: str
    in_notebooks: bool = False


# The seven event types of the CMLE notebooks' features (Week 2), in their order.
NOTEBOOK_TYPES = (
    "directMarketing.emailSent", "directMarketing.emailOpened", "directMarketing.emailClicked",
    "commerce.productViews", "decisioning.propositionInteract",
    # The notebooks matched 'propositionDismiss' (no prefix) here, so the feature was always NULL.
    "decisioning.propositionDismiss", "web.webinteraction.linkClicks",
)


def _synthetic_event_features() -> tuple[EventFeature, ...]:
    from cmle.modelspec import spec_for_synthetic

    return tuple(EventFeature(f.event_type, f.count, f.recency, f.event_type in NOTEBOOK_TYPES)
                 for f in spec_for_synthetic().features.event_types)


# The synthetic spec's event features (conf/models/synthetic.yaml): the notebooks' seven with
# their column names, then the types the notebooks simulated but left out of the features.
EVENT_FEATURES: tuple[EventFeature, ...] = _synthetic_event_features()
NOTEBOOK_FEATURES: tuple[EventFeature, ...] = tuple(
    sorted((f for f in EVENT_FEATURES if f.in_notebooks), key=lambda f: NOTEBOOK_TYPES.index(f.event_type)))


@dataclass(frozen=True)
class FeatureSpec:
    """The windows of a point-in-time feature set (all in whole days)."""

    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    outcome_days: int = DEFAULT_OUTCOME_DAYS
    windows: tuple[int, ...] = DEFAULT_WINDOWS

    def __post_init__(self):
        if self.lookback_days < 1:
            raise ValueError(f"lookback_days must be at least 1, not {self.lookback_days}")
        if self.outcome_days < 1:
            raise ValueError(f"outcome_days must be at least 1, not {self.outcome_days}")
        if any(w < 1 for w in self.windows):
            raise ValueError(f"windows must be positive day counts, not {self.windows}")

    @property
    def recent_windows(self) -> tuple[int, ...]:
        """The recent-activity windows shorter than the look-back, ascending, no repeats."""
        return tuple(sorted({w for w in self.windows if w < self.lookback_days}))


def _synthetic_plan(spec: FeatureSpec):
    from cmle.features.plan import make_plan
    from cmle.modelspec import spec_for_synthetic

    return make_plan(spec_for_synthetic(), "cmle", spec)


def feature_columns(spec: FeatureSpec) -> list[str]:
    """Every feature column of a point-in-time set of the synthetic spec, in output order."""
    return _synthetic_plan(spec).feature_columns


def categorical_columns() -> list[str]:
    """The string-valued features of the synthetic spec (the rest are numeric)."""
    return _synthetic_plan(FeatureSpec()).categorical_columns


def notebook_feature_columns() -> list[str]:
    """The 14 features of the notebooks' framing: 7 running counts, 7 minutes-since."""
    return [f.count for f in NOTEBOOK_FEATURES] + [f.recency for f in NOTEBOOK_FEATURES]


__all__ = [
    "CONVERSION_EVENT", "DEFAULT_CMLE_SEED", "DEFAULT_LOOKBACK_DAYS", "DEFAULT_MIN_NEGATIVES",
    "DEFAULT_MIN_POSITIVES", "DEFAULT_OUTCOME_DAYS", "DEFAULT_WINDOWS", "EVENT_FEATURES", "EventFeature",
    "FRAMINGS", "FeatureSpec", "NOTEBOOK_FEATURES", "NOTEBOOK_TYPES", "categorical_columns", "feature_columns",
    "notebook_feature_columns",
]
