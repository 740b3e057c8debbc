"""featurize checks its windows against the data's history before any feature query."""

from __future__ import annotations

import mlflow
import pytest

from cmle import naming
from cmle.features.windows import WindowError
from cmle.runner import run_stage
from tests.features.eventdata import put_data, random_data

SMALL = {"min_positives": 5, "min_negatives": 5, "framing": "pit"}


@pytest.fixture
def six_weeks(platform):
    rows, profiles = random_data(150, seed=3, days=42)
    return put_data(platform, "cmle", rows, profiles)


def test_default_windows_follow_a_short_history(settings, platform, six_weeks):
    out = run_stage("featurize", settings, SMALL)
    assert (out["lookback_days"], out["outcome_days"]) == (28, 14)
    assert out["snapshot_ts"] == "2025-01-29T00:00:00+00:00"  # 14 days before the end (2025-02-12)
    train = platform.read_dataset(platform.find_dataset(naming.training_set("cmle")).id).to_pandas()
    assert "events_14d" in train.columns and "events_28d" not in train.columns  # 28 is the whole look-back
    run = mlflow.search_runs(experiment_names=["cmle"], filter_string="tags.`cmle.stage` = 'featurize'").iloc[0]
    assert run["params.lookback_days"] == "0"  # as given ...
    assert (run["params.resolved.lookback_days"], run["params.resolved.outcome_days"]) == ("28", "14")  # ... as used
    text = open(mlflow.MlflowClient().download_artifacts(run["run_id"], "featurize/windows.txt")).read()
    assert "featurize [windows.auto] the events span 42 days" in text and "[windows.recent]" in text


def test_windows_longer_than_the_history_are_refused_before_any_query(settings, platform, six_weeks):
    with pytest.raises(WindowError, match=r"\[windows.lookback\] lookback_days = 56 .* Use lookback_days <= 28"):
        run_stage("featurize", settings, {**SMALL, "lookback_days": 56, "outcome_days": 14})
    assert platform.find_dataset(naming.training_set("cmle")) is None
    assert not [r for r in platform.list_resources() if "candidate" in r.name]
