"""What the feature sets hold: the event types, the windows, the feature columns.

Pure data and names, no SQL. :mod:`cmle.features.render` turns a :class:`FeatureSpec`
into the Spark SQL of a training or scoring set.

Point-in-time framing (``pit``, the default), for a snapshot time T::

    look-back window  [T - lookback_days, T)      features (events strictly before T)
    outcome window    (T, T + outcome_days]       label: converted (web.formFilledOut)
    eligible          profiles that had not converted at or before T (and existed at T)

The notebooks' framing (``cmle``) keeps the CMLE Week 2 definition for comparison: see
:data:`NOTEBOOK_FEATURES` and ``cmle/sql/features_cmle.sql``.
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


EVENT_FEATURES: tuple[EventFeature, ...] = (
    # The notebooks' seven (CMLE Week 2), with their column names.
    EventFeature("directMarketing.emailSent", "emailsReceived", "minutes_since_emailSent", True),
    EventFeature("directMarketing.emailOpened", "emailsOpened", "minutes_since_emailOpened", True),
    EventFeature("directMarketing.emailClicked", "emailsClicked", "minutes_since_emailClick", True),
    EventFeature("commerce.productViews", "productsViewed", "minutes_since_productView", True),
    EventFeature("decisioning.propositionInteract", "propositionInteracts", "minutes_since_propositionInteract", True),
    # The notebooks matched 'propositionDismiss' (no prefix) here, so the feature was always NULL.
    EventFeature("decisioning.propositionDismiss", "propositionDismissed", "minutes_since_propositionDismiss", True),
    EventFeature("web.webinteraction.linkClicks", "webLinkClicks", "minutes_since_linkClick", True),
    # The types the notebooks simulated but left out of the features.
    EventFeature("advertising.impressions", "adImpressions", "minutes_since_adImpression"),
    EventFeature("advertising.clicks", "adClicks", "minutes_since_adClick"),
    EventFeature("web.webpagedetails.pageViews", "pageViews", "minutes_since_pageView"),
    EventFeature("commerce.purchases", "purchases", "minutes_since_purchase"),
    EventFeature("decisioning.propositionDisplay", "propositionDisplays", "minutes_since_propositionDisplay"),
)

NOTEBOOK_FEATURES: tuple[EventFeature, ...] = tuple(f for f in EVENT_FEATURES if f.in_notebooks)

# Profile attributes (fields of `_{tenant}` in the profiles dataset) used as features.
PROFILE_NUMERIC = ("age",)
PROFILE_CATEGORICAL = ("gender", "region", "loyaltyTier")
SIGNUP_FIELD = "signupDate"  # becomes tenure_days = whole days from sign-up to T


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


def activity_columns(spec: FeatureSpec) -> list[str]:
    """Features over every event type of the look-back window."""
    return ["events", *[f"events_{w}d" for w in spec.recent_windows], "active_days",
            "minutes_since_last_event", "minutes_since_first_event", "email_open_rate", "email_click_rate"]


def event_columns(spec: FeatureSpec) -> list[str]:
    cols: list[str] = []
    for f in EVENT_FEATURES:
        cols += [f.count, *[f"{f.count}_{w}d" for w in spec.recent_windows], f.recency]
    return cols


def profile_columns(spec: FeatureSpec) -> list[str]:
    return [*PROFILE_NUMERIC, "tenure_days", *PROFILE_CATEGORICAL]


def feature_columns(spec: FeatureSpec) -> list[str]:
    """Every feature column of a point-in-time set, in output order."""
    return [*event_columns(spec), *activity_columns(spec), *profile_columns(spec)]


def categorical_columns() -> list[str]:
    """The string-valued features (the rest are numeric)."""
    return list(PROFILE_CATEGORICAL)


def notebook_feature_columns() -> list[str]:
    """The 14 features of the notebooks' framing: 7 running counts, 7 minutes-since."""
    return [f.count for f in NOTEBOOK_FEATURES] + [f.recency for f in NOTEBOOK_FEATURES]


__all__ = [
    "CONVERSION_EVENT", "DEFAULT_CMLE_SEED", "DEFAULT_LOOKBACK_DAYS", "DEFAULT_MIN_NEGATIVES",
    "DEFAULT_MIN_POSITIVES", "DEFAULT_OUTCOME_DAYS", "DEFAULT_WINDOWS", "EVENT_FEATURES", "EventFeature",
    "FRAMINGS", "FeatureSpec", "NOTEBOOK_FEATURES", "activity_columns", "categorical_columns", "event_columns",
    "feature_columns", "notebook_feature_columns", "profile_columns",
]
