"""Label and leakage checks of the train stage (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmle.errors import DataCheckError, ParameterError
from cmle.model import train_checks
from cmle.model.preprocess import FeatureSpec
from tests.model.fabricate import training_frame


@pytest.fixture(scope="module")
def frame():
    return training_frame(3000, seed=2, shift=1.0)


def test_a_sound_training_set_passes(frame):
    summary = train_checks.check_labels(frame, expected_rows=len(frame))
    assert summary.rows == len(frame) and summary.positives == int(frame["label"].sum())
    assert summary.as_dict()["label_rate"] == pytest.approx(frame["label"].mean(), abs=1e-6)


@pytest.mark.parametrize("change, words", [
    (lambda f: f.assign(label=f["label"].where(f.index % 7 != 0)), "rows have no label: the label join"),
    (lambda f: f[f["label"] == 1], "every one of .* rows is positive: the label join kept only"),
    (lambda f: f.assign(label=0), "no positive label"),
    (lambda f: f.assign(label=np.where(f.index < 2, 1, 0)), r"label rate 0\.0667% .* outside the plausible band"),
    (lambda f: pd.concat([f, f.head(5)]), "5 rows repeat a profile .*fanned rows out"),
    (lambda f: f.assign(label=f["label"].astype(object).where(f.index != 3, "yes")), "other than 0 or 1"),
])
def test_each_label_problem_is_named(frame, change, words):
    with pytest.raises(DataCheckError, match=words):
        train_checks.check_labels(change(frame.copy()))


def test_rows_in_must_equal_rows_out(frame):
    with pytest.raises(DataCheckError, match=r"rows in != rows out: featurize counted 3100 rows and train read 3000 "
                                             r"\(lost 100\)"):
        train_checks.check_labels(frame, expected_rows=3100)
    train_checks.check_labels(frame, expected_rows=None)  # unknown: not checked


def test_the_band_is_a_parameter(frame):
    rare = frame.assign(label=np.where(frame.index < 2, 1, 0))
    train_checks.check_labels(rare, min_rate=0.0005)
    with pytest.raises(ParameterError, match="min_label_rate"):
        train_checks.check_parameters(0.5, 0.1, 0.9, 0.95)
    with pytest.raises(ParameterError, match="leakage_auc"):
        train_checks.check_parameters(0.0, 0.9, 0.4, 0.95)


def test_a_feature_that_is_the_label_is_flagged_and_honest_ones_are_not(frame):
    rng = np.random.default_rng(0)
    leaky = frame.assign(days_to_conversion=np.where(frame["label"] == 1, rng.integers(1, 28, len(frame)), np.nan),
                         customer_ref=[f"c{i}" for i in range(len(frame))])  # unique per row: no signal out of fold
    spec = FeatureSpec.infer(leaky)
    report, table = train_checks.leakage_report(leaky, spec, holdout_auc=0.80)
    assert list(report.features) == ["days_to_conversion"] and report.features["days_to_conversion"] == 1.0
    assert report.flagged and not report.ceiling_reached
    aucs = dict(zip(table["feature"], table["auc"]))
    assert aucs["customer_ref"] < 0.6 and aucs["emails_clicked"] < 0.9 and aucs["emails_clicked"] > 0.6
    assert "days_to_conversion (ROC-AUC 1.000) > 0.9" in report.summary()
    tag = train_checks.read_leakage({train_checks.LEAKAGE_TAG: report.tag_value()})
    assert tag["features"] == {"days_to_conversion": 1.0} and tag["holdout_roc_auc"] == 0.8


def test_a_holdout_auc_above_the_ceiling_is_flagged(frame):
    spec = FeatureSpec.infer(frame)
    report, _ = train_checks.leakage_report(frame, spec, holdout_auc=0.97)
    assert report.flagged and report.ceiling_reached and not report.features
    assert "holdout ROC-AUC 0.9700 above the ceiling 0.95" in report.summary()
    clean, _ = train_checks.leakage_report(frame, spec, holdout_auc=0.80)
    assert not clean.flagged and clean.tag_value()
    assert train_checks.read_leakage({}) is None


def test_a_single_feature_auc_is_its_better_side_with_missing_values_at_either_end():
    from cmle.model import metrics

    rng = np.random.default_rng(3)
    for n in (5, 40, 301):
        y = (rng.random(n) < 0.3).astype(int)
        y[:2] = [1, 0]
        x = rng.integers(1, 6, n) / 10.0  # in [0.1, 0.5], with ties
        x[rng.random(n) < 0.3] = np.nan
        finite = np.isfinite(x)
        expected = max(max(a, 1 - a) for a in (metrics.roc_auc(y, np.where(finite, x, fill))
                                                for fill in (0.0, 1.0)))  # missing below, or above
        spec = FeatureSpec(numeric=("x",), categorical=())
        table = train_checks.single_feature_auc(pd.DataFrame({"x": x}), y, spec)
        assert table["auc"].iloc[0] == pytest.approx(max(expected, 0.5), abs=1e-12)
