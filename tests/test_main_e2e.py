"""`main` end to end through `mlflow run . -e main --env-manager local`, twice: the second run
duplicates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from cmle import naming, storage
from cmle.platform.local import LocalPlatform
from tests.test_entrypoints import mlflow_run, project_copy

pytestmark = pytest.mark.slow

SMALL = ("profiles=6000", "end_date=2024-06-01", "min_positives=40", "min_negatives=40", "max_evals=3",
         "min_auc=0.5", "min_eval_positives=10")
MODEL = "cmle_propensity_model"


def state(proj: Path) -> dict:
    """What a user would count after a run: rows, batches, versions, audiences, files."""
    plat = LocalPlatform(proj / ".cmle" / "platform")
    try:
        datasets = {r.name: r.id for r in plat.list_resources() if r.kind == "dataset"}
        batches = {name: sorted(b.id for b in plat.list_batches(ds) if b.status == "success")
                   for name, ds in datasets.items()}
        scores_ds = datasets[naming.scores_dataset("cmle")]
        scores_rows = plat.read_dataset(scores_ds).num_rows
        profile = plat.profile_attributes(["propensity", "model_version"])
        audiences = sorted(r.name for r in plat.list_resources() if r.kind == "audience")
        counts = plat.evaluate_audiences([r.id for r in plat.list_resources() if r.kind == "audience"])
    finally:
        plat.close()
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    client = MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    landing = str(proj / ".cmle" / "platform" / "landing")
    newest = storage.newest_export(landing, "cmle/ingress", naming.scores_folder("cmle"))
    scores = storage.read_export(newest.url).to_pandas()
    scoring_ds = datasets[naming.scoring_set("cmle")]
    scoring_rows = storage.read_export(storage.newest_export(landing, "cmle/egress", scoring_ds).url).num_rows
    dest = proj / ".cmle" / "platform" / "destinations" / "local_files"
    return dict(batches=batches, scores_rows=scores_rows, profile=profile, audiences=audiences,
                counts=sorted(counts.values()), versions=versions, champion=champion, scores=scores,
                scoring_rows=scoring_rows, dest=dest,
                score_runs=len(storage.list_exports(landing, "cmle/ingress", naming.scores_folder("cmle"))))


def test_main_end_to_end_and_rerun_duplicates_nothing(tmp_path):
    proj = project_copy(tmp_path)
    mlflow_run(proj, "main", *SMALL)
    first = state(proj)

    # a champion exists and every eligible profile has exactly one score row with its version
    scores = first["scores"]
    assert len(scores) == first["scoring_rows"] > 1000
    assert scores["userid"].is_unique
    assert set(scores["model_version"]) == {str(first["champion"])}
    assert scores["propensity"].between(0, 1).all() and scores["score"].between(0, 100).all()
    assert set(scores["bucket"]) <= {"low", "medium", "high"}
    # the scores dataset and the profile attributes hold them
    assert first["scores_rows"] == len(scores)
    prof = first["profile"].dropna(subset=["propensity"])
    assert set(prof["userid"]) == set(scores["userid"])
    assert set(prof["model_version"]) == {str(first["champion"])}
    # audiences exist with counts, and the destination holds their members files and a log
    assert len(first["audiences"]) == 3 and sum(first["counts"]) > 0
    files = sorted(p.name for p in first["dest"].glob("*.parquet"))
    assert len(files) == 3
    log_lines = (first["dest"] / "activation_log.jsonl").read_text().splitlines()
    assert len(log_lines) == 3 and all(json.loads(x)["status"] == "success" for x in log_lines)
    members = sum(pq.read_metadata(p).num_rows for p in first["dest"].glob("*.parquet"))
    assert members == sum(first["counts"])

    # main's nested runs: one parent, one child per stage
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parents = [r for r in runs if r.data.tags.get("cmle.stage") == "main"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert [c.data.tags["cmle.stage"] for c in sorted(children, key=lambda r: r.info.start_time)] == [
        "synthetic", "explore", "featurize", "export", "train", "promote", "score", "ingest", "audience", "monitor"]

    # run main again: the same rows, batches, model versions and audiences
    mlflow_run(proj, "main", *SMALL)
    second = state(proj)
    for key in ("batches", "scores_rows", "audiences", "counts", "versions", "champion", "score_runs"):
        assert second[key] == first[key], key
    assert second["scores"].equals(first["scores"])
    log_lines = (second["dest"] / "activation_log.jsonl").read_text().splitlines()
    assert len(log_lines) == 6, "every send is logged, the second run's too"
