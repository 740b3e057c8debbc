"""Scoring features measured the way the model's were: the look-back window.

A look-back left to follow the history (``lookback_days = 0``) grows with the data: a
champion trained at 56 days, kept by ``retrain=auto`` or by a gate that refused its
challenger, would otherwise be scored on a scoring set built at 70 days, where every count
and recency means something else (a train/score skew no metric shows). ``train`` records the
look-back on the version (:data:`LOOKBACK_TAG`), ``featurize`` tags its run with the version
of the scoring set it built (:data:`SCORING_SET_TAG`); ``score`` refuses a mismatch and
``main`` rebuilds the scoring set at the model's look-back before scoring.
"""

from __future__ import annotations

from cmle import tracking
from cmle.registry import TAG_PREFIX

LOOKBACK_TAG = f"{TAG_PREFIX}lookback_days"  # on a model version: the look-back its features used
SCORING_SET_TAG = f"{TAG_PREFIX}scoring_set_version"  # on a featurize run: the scoring set it built


def model_lookback(tags: dict | None) -> int | None:
    """The look-back (days) a version's features used; None for versions that do not say."""
    value = (tags or {}).get(LOOKBACK_TAG)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def scoring_set_lookback(set_version: str) -> int | None:
    """The look-back of the featurize run that built this version of the scoring set (its
    manifest); None when no run of the active experiment records it."""
    manifest = tracking.featurize_manifest(SCORING_SET_TAG, set_version)
    try:
        return int(manifest["lookback_days"]) if manifest else None
    except (KeyError, TypeError, ValueError):
        return None


def mismatch(model: int | None, scoring: int | None) -> bool:
    """True when both look-backs are known and differ."""
    return model is not None and scoring is not None and model != scoring


def advice(name: str, version: str, model: int, scoring: int) -> str:
    return (f"model {name} v{version} was trained on features over {model} days of events, the scoring set's "
            f"features cover {scoring} days (its look-back followed the grown history): the scores would mean "
            f"something else. Rebuild the scoring set at the model's look-back (`cmle featurize --lookback_days "
            f"{model}` then `cmle export`; `main` does this itself), or score with a version trained on the "
            f"current windows (`cmle train` then `cmle promote`)")
