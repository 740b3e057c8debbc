"""The ``featurize`` stage end to end on the local platform, as an MLflow run."""

from __future__ import annotations

import mlflow
import pytest

from cmle import naming
from cmle.errors import DataCheckError, NotFoundError, ParameterError
from cmle.features.spec import FeatureSpec, feature_columns
from cmle.runner import run_stage
from tests.features.eventdata import put_data, random_data

SMALL = {"min_positives": 5, "min_negatives": 5}


@pytest.fixture
def data(platform):
    rows, profiles = random_data(200, seed=5)
    return put_data(platform, "cmle", rows, profiles)


def _rows(platform, name):
    ds = platform.find_dataset(name)
    return platform.read_dataset(ds.id).to_pandas() if ds else None


def _sorted(df):
    return df.sort_values("userid").reset_index(drop=True)


def _last_run():
    runs = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'featurize'",
                              order_by=["attributes.start_time DESC"])
    return runs.iloc[0]


def test_builds_both_framings_and_the_scoring_set(settings, platform, data):
    out = run_stage("featurize", settings, SMALL)
    assert out["snapshot_ts"] == "2025-02-26T00:00:00+00:00"  # 14 days before the end of the last event's day
    assert out["scoring_ts"] == "2025-03-12T00:00:00+00:00"
    train = _rows(platform, naming.training_set("cmle"))
    cmle = _rows(platform, naming.training_set("cmle", "cmle"))
    scoring = _rows(platform, naming.scoring_set("cmle"))
    assert list(train.columns) == ["userid", "snapshot_ts", "label", *feature_columns(FeatureSpec())]
    assert list(scoring.columns) == ["userid", "snapshot_ts", *feature_columns(FeatureSpec())]
    assert (out["training_rows"], out["training_positives"]) == (len(train), train["label"].sum())
    assert out["training_positives"] + out["training_negatives"] == len(train)
    assert out["cmle_training_rows"] == len(cmle) and out["scoring_rows"] == len(scoring)
    assert out["training_dataset_id"] == platform.find_dataset(naming.training_set("cmle")).id
    # no candidate is left behind once a set is accepted
    assert not [r for r in platform.list_resources() if "candidate" in r.name]

    run = _last_run()
    assert run["status"] == "FINISHED" and run["params.framing"] == "both"
    assert run["metrics.training_positives"] == out["training_positives"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "featurize")}
    assert {"featurize/checks_training.csv", "featurize/checks_cmle_training.csv", "featurize/checks_scoring.csv",
            "featurize/training.sql", "featurize/null_rates_training.csv", "featurize/feature_spec.json"} <= artifacts


def test_rerun_replaces_never_appends(settings, platform, data):
    first = run_stage("featurize", settings, SMALL)
    before = {n: _rows(platform, n) for n in (naming.training_set("cmle"), naming.training_set("cmle", "cmle"),
                                              naming.scoring_set("cmle"))}
    second = run_stage("featurize", settings, SMALL)
    for key in ("training_dataset_id", "cmle_training_dataset_id", "scoring_dataset_id", "training_rows",
                "cmle_training_rows", "scoring_rows", "training_positives"):
        assert second[key] == first[key], key
    for name, df in before.items():
        again = _rows(platform, name)
        assert again["userid"].is_unique and len(again) == len(df)
        assert _sorted(again).equals(_sorted(df))


def test_explicit_snapshot_and_windows(settings, platform, data):
    out = run_stage("featurize", settings, {"min_positives": 1, "min_negatives": 5, "snapshot_date": "2025-02-10",
                                            "lookback_days": 20, "outcome_days": 7, "windows": "14, 7,28",
                                            "framing": "pit"})
    assert out["snapshot_ts"] == "2025-02-10T00:00:00+00:00"
    train = _rows(platform, naming.training_set("cmle"))
    assert list(train.columns) == ["userid", "snapshot_ts", "label",
                                   *feature_columns(FeatureSpec(lookback_days=20, windows=(7, 14)))]
    assert "emailsReceived_14d" in train.columns and "emailsReceived_28d" not in train.columns
    assert platform.find_dataset(naming.training_set("cmle", "cmle")) is None
    assert "cmle_training_rows" not in out


@pytest.mark.parametrize("snapshot, message", [
    ("2025-03-01", "ends after the data"),
    ("2024-12-01", "not after the first event"),
    ("next tuesday", "is not a date"),
])
def test_snapshot_outside_the_data_is_refused(settings, platform, data, snapshot, message):
    with pytest.raises(ParameterError, match=message):
        run_stage("featurize", settings, {**SMALL, "snapshot_date": snapshot})


@pytest.mark.parametrize("params", [{"windows": "7,x"}, {"windows": "0"}, {"max_null_rate": 0.0},
                                    {"framing": "weekly"}, {"lookback_days": -1}])
def test_bad_parameters_are_refused(settings, platform, data, params):
    with pytest.raises(ParameterError):
        run_stage("featurize", settings, {**SMALL, **params})


def test_failed_checks_keep_the_accepted_set_and_are_logged(settings, platform, data):
    good = run_stage("featurize", settings, {**SMALL, "framing": "pit"})
    accepted = _rows(platform, naming.training_set("cmle"))
    with pytest.raises(DataCheckError, match=r"\[positives\] only \d+ positives .* fewer than min_positives=100000"):
        run_stage("featurize", settings, {"min_positives": 100_000, "min_negatives": 5, "framing": "pit"})
    after = _rows(platform, naming.training_set("cmle"))
    assert after.equals(accepted) and good["training_rows"] == len(after)
    assert platform.find_dataset(naming.candidate(naming.training_set("cmle"))) is not None  # kept to inspect

    run = _last_run()
    assert run["status"] == "FAILED" and run["metrics.training_checks_failed"] == 1
    client = mlflow.MlflowClient()
    path = client.download_artifacts(run["run_id"], "featurize/checks_training.csv")
    text = open(path, encoding="utf-8").read()
    assert "positives,False" in text and "negatives,True" in text


def test_default_minimums_are_customer_ais(settings, platform, data):
    with pytest.raises(DataCheckError, match="min_positives=500"):
        run_stage("featurize", settings, {"framing": "pit"})


def test_missing_source_data_is_a_clear_error(settings, platform):
    with pytest.raises(NotFoundError, match="run the synthetic stage first"):
        run_stage("featurize", settings, SMALL)


def test_labels_of_the_sources_are_copied_onto_the_feature_sets(settings, platform, data):
    events, _profiles = data
    platform.set_labels(events.id, {"C9", "I1"})
    run_stage("featurize", settings, {**SMALL, "framing": "pit"})
    for name in (naming.training_set("cmle"), naming.scoring_set("cmle")):
        assert platform.get_labels(platform.find_dataset(name).id) == {"C9", "I1"}
