"""Feature typing, input checks and the families' preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmle.errors import DataCheckError
from cmle.model.preprocess import MISSING_CATEGORY, FeatureSpec, ModelInputError, signed_log1p
from tests.model.fabricate import training_frame


@pytest.fixture
def frame():
    return training_frame(300)


def test_infer_splits_numeric_and_categorical_and_skips_meta_columns(frame):
    spec = FeatureSpec.infer(frame)
    assert spec.categorical == ("region", "loyalty_tier")
    assert "userid" not in spec.columns and "label" not in spec.columns and "snapshot_ts" not in spec.columns
    assert spec.numeric[0] == "emails_sent"
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_prepare_coerces_types_and_keeps_nulls_distinct(frame):
    spec = FeatureSpec.infer(frame)
    frame.loc[frame.index[0], "region"] = None
    out = spec.prepare(frame.assign(extra=1))
    assert list(out.columns) == list(spec.columns)
    assert all(out[c].dtype == "float64" for c in spec.numeric)
    assert out["region"].iloc[0] == MISSING_CATEGORY
    assert out["minutes_since_email_clicked"].isna().any()  # "never" stays missing, not 0


def test_missing_columns_are_named(frame):
    spec = FeatureSpec.infer(frame)
    with pytest.raises(ModelInputError, match="missing 2 feature column.*age, region"):
        spec.prepare(frame.drop(columns=["age", "region"]))


def test_non_numeric_values_in_a_numeric_column_are_named(frame):
    spec = FeatureSpec.infer(frame)
    bad = frame.astype({"age": object})
    bad.loc[bad.index[3], "age"] = "forty"
    with pytest.raises(ModelInputError, match="age.*'forty'"):
        spec.prepare(bad)
    numeric_text = frame.astype({"emails_sent": str})  # numbers as text are accepted
    assert spec.prepare(numeric_text)["emails_sent"].dtype == "float64"


def test_model_input_error_is_a_user_error_and_a_value_error():
    assert issubclass(ModelInputError, DataCheckError) and issubclass(ModelInputError, ValueError)


def test_a_feature_set_without_features_is_refused():
    with pytest.raises(DataCheckError, match="no feature columns"):
        FeatureSpec.infer(pd.DataFrame({"userid": ["a"], "label": [1]}))


def test_signed_log1p():
    x = np.array([-9.0, 0.0, np.e - 1, np.nan])
    out = signed_log1p(x)
    assert out[0] == pytest.approx(-np.log(10)) and out[1] == 0 and out[2] == pytest.approx(1) and np.isnan(out[3])
