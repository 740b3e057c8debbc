"""Feature sets: point-in-time training and scoring sets from the events and profiles.

``spec`` says what the sets hold, ``render`` writes their Spark SQL (``cmle/sql/``),
``checks`` decides whether a set is fit to use; the ``featurize`` stage
(:mod:`cmle.stages.featurize`) runs them through the platform.
"""

from cmle.features.render import FeatureQuery, feature_query
from cmle.features.spec import FRAMINGS, FeatureSpec, feature_columns

__all__ = ["FRAMINGS", "FeatureQuery", "FeatureSpec", "feature_columns", "feature_query"]
