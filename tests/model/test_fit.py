"""Splitting, sampling, calibrated fitting and permutation importance."""

from __future__ import annotations

import numpy as np
import pytest

from cmle.errors import DataCheckError, ParameterError
from cmle.model import fit, metrics
from cmle.model.preprocess import FeatureSpec
from tests.model.fabricate import latent, training_frame

WEIGHTED_LR = {"family": "logreg", "C": 1.0, "transform": "log", "class_weight": "balanced"}


def test_the_split_is_stratified_disjoint_and_independent_of_row_order():
    frame = training_frame(1000, seed=6)
    a = fit.split(frame, 0.2, 0.2, seed=3)
    b = fit.split(frame.sample(frac=1.0, random_state=1), 0.2, 0.2, seed=3)
    for part_a, part_b in zip((a.train, a.valid, a.holdout), (b.train, b.valid, b.holdout)):
        assert list(part_a["userid"]) == list(part_b["userid"])
    assert a.sizes() == {"train_rows": 600, "valid_rows": 200, "holdout_rows": 200}
    assert set(a.train["userid"]).isdisjoint(a.holdout["userid"])
    assert set(a.valid["userid"]).isdisjoint(a.holdout["userid"])
    base = frame["label"].mean()
    assert a.holdout["label"].mean() == pytest.approx(base, abs=0.01)
    assert a.valid["label"].mean() == pytest.approx(base, abs=0.01)


def test_split_refuses_bad_labels_fractions_and_too_few_positives():
    frame = training_frame(300)
    with pytest.raises(ParameterError, match="holdout_fraction"):
        fit.split(frame, 0.6, 0.2, 0)
    with pytest.raises(ParameterError, match="leaves too little"):
        fit.split(frame, 0.4, 0.4, 0)
    with pytest.raises(DataCheckError, match="0 or 1"):
        fit.split(frame.assign(label=frame["label"] * 2), 0.2, 0.2, 0)
    with pytest.raises(DataCheckError, match="no 'label' column"):
        fit.split(frame.drop(columns=["label"]), 0.2, 0.2, 0)
    with pytest.raises(DataCheckError, match="0 positive"):
        fit.split(frame.assign(label=0), 0.2, 0.2, 0)


def test_sample_rows_keeps_the_class_ratio():
    frame = training_frame(3000, seed=2)
    y = fit.labels(frame)
    X, y_part = fit.sample_rows(frame, y, 1000, seed=0)
    assert len(X) == 1000 and y_part.mean() == pytest.approx(y.mean(), abs=0.005)
    assert fit.sample_rows(frame, y, 0, seed=0)[0] is frame


def test_calibration_undoes_class_weights():
    frame = training_frame(8000, seed=8, shift=0.5)
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, 0.25, 0.25, seed=0)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    hold_x, hold_y = xy(parts.holdout)
    raw = fit.fit_calibrated(WEIGHTED_LR, spec, xy(parts.train), xy(parts.valid), seed=0, calibration="none")
    calibrated = fit.fit_calibrated(WEIGHTED_LR, spec, xy(parts.train), xy(parts.valid), seed=0)
    p_raw, p_cal = raw.predict_proba(hold_x)[:, 1], calibrated.predict_proba(hold_x)[:, 1]
    assert p_raw.mean() > 2 * hold_y.mean()  # balanced weights inflate the probabilities
    assert p_cal.mean() == pytest.approx(hold_y.mean(), abs=0.02)
    assert metrics.expected_calibration_error(hold_y, p_cal) < 0.03 < metrics.expected_calibration_error(hold_y, p_raw)
    # Platt scaling is monotone: the ranking, so the ROC-AUC, is unchanged
    assert metrics.roc_auc(hold_y, p_cal) == pytest.approx(metrics.roc_auc(hold_y, p_raw), abs=1e-9)
    with pytest.raises(ParameterError, match="calibration"):
        fit.fit_calibrated(WEIGHTED_LR, spec, xy(parts.train), xy(parts.valid), seed=0, calibration="magic")


def test_permutation_importance_finds_the_features_that_matter():
    frame = training_frame(6000, seed=9, shift=1.0)
    spec = FeatureSpec.infer(frame)
    parts = fit.split(frame, 0.2, 0.3, seed=0)
    xy = lambda f: (spec.prepare(f), fit.labels(f))  # noqa: E731
    model = fit.fit_calibrated(WEIGHTED_LR, spec, xy(parts.train), xy(parts.valid), seed=0)
    importance = fit.feature_importance(model, *xy(parts.valid), seed=0, max_rows=1000)
    assert set(importance["feature"]) == set(spec.columns)
    top = list(importance["feature"][:3])
    assert "emails_clicked" in top  # the strongest term of the fabricated propensity
    assert importance.set_index("feature").loc["age", "importance"] < 0.01  # age plays no part
    assert np.all(np.diff(importance["importance"]) <= 0)


def test_the_fabricated_oracle_is_what_the_labels_were_drawn_from():
    frame = training_frame(20000, seed=1)
    assert latent(frame).mean() == pytest.approx(frame["label"].mean(), abs=0.01)


def test_the_thread_limit_reaches_openmp_even_in_a_fresh_process():
    import subprocess
    import sys

    code = ("from cmle.model.fit import limited_threads\n"
            "from threadpoolctl import threadpool_info\n"
            "with limited_threads(1):\n"
            "    print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'openmp'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"
