import os

import mlflow
import pytest

from cmle import naming, storage
from cmle.errors import DataCheckError, NotFoundError, RegistryError
from cmle.runner import run_stage
from tests.scoring.toy import (  # noqa: F401 - fixtures
    champion,
    mlflow_db_template,
    own_store_settings,
    put_scoring_set,
    register_toy_model,
    scoring_table,
    toy_registry,
)


def _score_runs(settings):
    return storage.list_exports(settings.storage_url, settings.cloud.import_path,
                                naming.scores_folder(settings.platform.owner))


def _stage_runs(stage):
    return mlflow.search_runs(experiment_names=["cmle"], filter_string=f"tags.`cmle.stage` = '{stage}'",
                              order_by=["attributes.start_time ASC"])


def test_score_stage_scores_every_profile_once_with_the_champion(settings, platform, champion):
    put_scoring_set(platform, settings, scoring_table(n=40))
    out = run_stage("score", settings, {"batch_rows": 9})
    assert (out["model_version"], out["rows"], out["reused"]) == ("1", 40, False)
    assert out["model_uri"] == f"models:/{settings.cloud.model_name}/1"
    assert out["scores_url"] == storage.join(settings.storage_url, settings.cloud.import_path,
                                             naming.scores_folder("cmle"), f"exportTime={out['export_time']}")
    scores = storage.read_export(out["scores_url"]).to_pandas()
    assert len(scores) == 40 and scores["userid"].is_unique
    assert set(scores["model_version"]) == {"1"}

    run = _stage_runs("score").iloc[-1]
    assert run["metrics.rows"] == 40 and run["params.model_version"] == "1"
    assert sum(run[f"metrics.bucket_{b}"] for b in ("low", "medium", "high")) == 40
    assert run["tags.cmle.model_version"] == "1"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "scores")}
    assert {"scores/score_histogram.png", "scores/buckets.csv"} <= artifacts


def test_rerun_reuses_the_score_run_until_the_model_or_the_export_changes(settings, platform, champion):
    put_scoring_set(platform, settings, scoring_table(n=12))
    first = run_stage("score", settings)
    again = run_stage("score", settings)
    assert again["reused"] and again["export_time"] == first["export_time"] and len(_score_runs(settings)) == 1
    assert _stage_runs("score").iloc[-1]["metrics.rows"] == 12  # the summary is logged either way
    scoring_set = platform.find_dataset(naming.scoring_set("cmle"))
    platform.export_dataset(scoring_set.id, settings.cloud.export_path)  # a new export of the same rows
    reexported = run_stage("score", settings)
    assert reexported["reused"] and reexported["scoring_export"] != first["scoring_export"]

    version = register_toy_model(settings.cloud.model_name, alias="champion", shift=1.0)  # promote a new one
    moved = run_stage("score", settings)
    assert (moved["model_version"], moved["reused"]) == (version, False)
    assert len(_score_runs(settings)) == 2
    old = run_stage("score", settings, {"model": "1", "rescore": True})
    assert old["model_version"] == "1" and not old["reused"] and len(_score_runs(settings)) == 3
    a = storage.read_export(first["scores_url"]).to_pandas()
    b = storage.read_export(moved["scores_url"]).to_pandas()
    assert (b["propensity"] > a["propensity"]).all()  # the shifted version scored every row
    put_scoring_set(platform, settings, scoring_table(n=12, seed=5))  # new data, same version
    assert not run_stage("score", settings, {"model": "1"})["reused"] and len(_score_runs(settings)) == 4


@pytest.mark.parametrize("model, message", [
    ("gold", r"no alias 'gold' \(aliases: champion -> v1\)"),
    ("7", "no version 7"),
])
def test_missing_alias_or_version_is_a_registry_error_and_writes_nothing(settings, platform, champion, model,
                                                                          message):
    put_scoring_set(platform, settings, scoring_table(n=5))
    with pytest.raises(RegistryError, match=message):
        run_stage("score", settings, {"model": model})
    assert not os.path.exists(storage.join(settings.storage_url, settings.cloud.import_path))


def test_a_scoring_set_that_does_not_match_the_signature_writes_nothing(settings, platform, champion):
    put_scoring_set(platform, settings, scoring_table(n=5, drop=("visits",)))
    with pytest.raises(DataCheckError, match=r"missing: \['visits'\].*featurize and export"):
        run_stage("score", settings)
    assert not os.path.exists(storage.join(settings.storage_url, settings.cloud.import_path))


def test_without_a_scoring_export_the_error_says_what_to_run(settings, champion):
    with pytest.raises(NotFoundError, match="run `featurize` then `export`"):
        run_stage("score", settings)
