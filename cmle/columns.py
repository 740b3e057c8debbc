"""Column names shared across stages (feature sets, scores, model outputs)."""

ID_COLUMN = "userid"  # the ECID-like identity, `_{tenant}.userid` on the platform
LABEL_COLUMN = "label"  # 1 = converted (web.formFilledOut) in the outcome window
SNAPSHOT_COLUMN = "snapshot_ts"  # the point in time the features describe (UTC)
# Columns of a feature set that are not model features.
META_COLUMNS = (ID_COLUMN, LABEL_COLUMN, SNAPSHOT_COLUMN)

# What the registered model returns per row (Customer AI's outputs).
OUTPUT_COLUMNS = ("propensity", "score", "percentile", "decile", "bucket")
# What a score row carries besides the model outputs.
SCORE_META_COLUMNS = ("model_name", "model_version", "score_date")
# The influential factors of a score row (cmle.explain): a list of {feature, name, value, contribution}.
FACTORS_COLUMN = "factors"

CONVERSION_EVENT = "web.formFilledOut"


def feature_columns(names) -> list[str]:
    """The model features among a feature set's column names, in their order."""
    return [n for n in names if n not in META_COLUMNS]
