"""`main` against a remote MLflow tracking server whose artifacts are on S3, with exports and
score files on S3 too: the SageMaker managed MLflow shape, on a local S3 server (moto) and a
real ``mlflow server``. The client knows the stack only by MLFLOW_TRACKING_URI,
``storage_url = s3://...`` and the standard AWS variables (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import re

import mlflow
import pytest
from mlflow import MlflowClient

from cmle import naming, storage
from cmle.config import load_settings
from cmle.platform.local import LocalPlatform
from cmle.runner import run_stage

pytestmark = pytest.mark.slow

# explore is skipped: it logs only run artifacts, as every other stage does, and takes a third of the time
SMALL = dict(skip="explore", profiles=3000, end_date="2024-06-01", min_positives=20, min_negatives=20, max_evals=2, min_auc=0.5,
             min_eval_positives=5)
MODEL = "cmle_propensity_model"
EXPORT_PART = re.compile(r"/exportTime=\d{14}/part-[^/]+\.parquet$")


def _scores_batches(settings) -> list[str]:
    plat = LocalPlatform(settings.local_root)
    try:
        ds = plat.find_dataset(naming.scores_dataset(settings.platform.owner))
        return sorted(b.id for b in plat.list_batches(ds.id) if b.status == "success")
    finally:
        plat.close()


def test_main_with_a_remote_tracking_server_and_s3_storage(remote_env, prefix, tmp_cwd):
    stack = remote_env
    settings = load_settings(env={"CMLE_CLOUD_STORAGE_URL": stack.storage_url(f"landing/{prefix}")})
    out = run_stage("main", settings, SMALL)

    # the runs went to the server, not to a local store, and nothing landed on the local disk
    assert mlflow.get_tracking_uri() == stack.mlflow.url
    assert not (tmp_cwd / "mlflow.db").exists() and not (tmp_cwd / "mlruns").exists()
    assert not (tmp_cwd / "mlartifacts").exists() and not (settings.local_root / "landing").exists()

    # exports and score files are in the bucket, in AEP's layout
    keys = stack.s3.keys(stack.bucket, f"landing/{prefix}/")
    assert keys == stack.s3.keys(stack.bucket, f"landing/{prefix}/")  # listing is stable
    export_root = f"landing/{prefix}/{settings.cloud.export_path}/"
    scores_root = f"landing/{prefix}/{settings.cloud.import_path}/{naming.scores_folder(settings.platform.owner)}/"
    exports = [k for k in keys if k.startswith(export_root) and EXPORT_PART.search(k)]
    score_files = [k for k in keys if k.startswith(scores_root) and EXPORT_PART.search(k)]
    assert {k[len(export_root):].split("/")[0] for k in exports} >= {out["export"]["training_dataset_id"],
                                                                      out["export"]["scoring_dataset_id"]}
    assert score_files and out["score"]["scores_url"].startswith(f"s3://{stack.bucket}/{scores_root}")
    assert not [k for k in keys if k.endswith(storage.IN_PROGRESS)]

    # the champion is in the remote registry and its model artifacts are in the bucket
    client = MlflowClient(tracking_uri=stack.mlflow.url)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    model_keys = stack.s3.keys(stack.bucket, "mlartifacts/")
    model_id = champion.model_id or champion.source.rsplit("/", 1)[-1]  # source: models:/m-...
    champion_files = [k for k in model_keys if f"/models/{model_id}/artifacts/" in k]
    assert {"MLmodel", "requirements.txt"} <= {k.rsplit("/", 1)[-1] for k in champion_files}, model_keys[:20]

    # scoring loaded that version from the remote registry: the score run on the server and
    # every score row name it
    assert (out["score"]["model_name"], out["score"]["model_version"]) == (MODEL, champion.version)
    score_runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                    filter_string="tags.`cmle.stage` = 'score'")
    assert [r.data.tags["cmle.model_version"] for r in score_runs] == [champion.version]
    scores = storage.read_export(out["score"]["scores_url"]).to_pandas()
    assert len(scores) == out["score"]["rows"] > 100 and scores["userid"].is_unique
    assert set(scores["model_version"]) == {champion.version}
    # and the run's own artifacts (outputs, tables, figures) went through the server to S3
    score_run_keys = [k for k in model_keys if f"/{score_runs[0].info.run_id}/artifacts/" in k]
    assert any(k.endswith("outputs.json") for k in score_run_keys)

    versions = sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'"))
    batches = _scores_batches(settings)
    assert len(batches) == 1

    # run main again: nothing new in storage, no new model version or model artifact, no new batch
    again = run_stage("main", settings, SMALL)
    assert stack.s3.keys(stack.bucket, f"landing/{prefix}/") == keys
    assert sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")) == versions
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion.version
    models_after = [k for k in stack.s3.keys(stack.bucket, "mlartifacts/") if "/models/" in k]
    assert models_after == [k for k in model_keys if "/models/" in k]
    assert again["train"]["reused"] and again["score"]["reused"]
    assert again["score"]["scores_url"] == out["score"]["scores_url"]
    assert _scores_batches(settings) == batches
