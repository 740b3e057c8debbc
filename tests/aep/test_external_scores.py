"""`ingest --scores PATH` with ``backend = aep`` against the double: the ids are looked up
in the profiles dataset through Query Service (PostgreSQL), the file goes in as one batch
of the profile-enabled scores dataset, audiences evaluate on it; a file with unknown ids
creates nothing on the platform."""

from __future__ import annotations

import shutil

import pytest

from aep.conftest import aep_env
from cmle import naming
from cmle.config import load_settings
from cmle.errors import DataCheckError
from cmle.runner import run_stage
from tests.scoring.external_files import make_profiles, propensities, write_csv
from tests.scoring.toy import mlflow_db_template  # noqa: F401 - fixture


@pytest.fixture
def settings(double, tmp_cwd, mlflow_db_template):
    shutil.copyfile(mlflow_db_template, tmp_cwd / "mlflow.db")
    return load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / 'mlflow.db'}"))


def _datasets(double, name):
    return [d for d in double.datasets.values() if d["name"] == name]


def test_external_scores_go_to_the_profile_scores_dataset_on_aep(double, aep, settings, tmp_cwd):
    ids = make_profiles(aep, 120)
    p = propensities(100)
    good = write_csv(tmp_cwd / "scores.csv", ["userid", "propensity", "model_name"],
                     [[i, f"{v:.5f}", "datarobot"] for i, v in zip(ids[:100], p)])
    bad = write_csv(tmp_cwd / "bad.csv", ["userid", "propensity"],
                    [[i, "0.5"] for i in ids[:10]] + [["4" * 38, "0.5"]])

    with pytest.raises(DataCheckError, match=r"1 profile id not in the profiles dataset .*line 12"):
        run_stage("ingest", settings, {"scores": str(bad)})
    assert _datasets(double, naming.scores_dataset("cmle")) == []
    assert not [s for s in double.schemas.values() if s["title"] == naming.score_schema("cmle")]

    out = run_stage("ingest", settings, {"scores": str(good)})
    assert out["records"] == 100 and out["model_name"] == "datarobot" and not out["reused"]
    (scores,) = _datasets(double, naming.scores_dataset("cmle"))
    assert "enabled:true" in scores["tags"]["unifiedProfile"]
    batch = double.batches[out["batch_id"]]
    assert batch["status"] == "success" and batch["tags"]["cmle.key"][0].startswith("scores:external:")
    assert run_stage("ingest", settings, {"scores": str(good)})["reused"]

    audiences = run_stage("audience", settings, {"destination": "", "rules": "top10:top:10;hot:bucket:high"})
    assert audiences["scored_profiles"] == 100
    assert audiences["audiences"]["top10"]["qualified"] == 10
    assert double.duplicates() == {}
