"""Two owners in one embedded platform (one shared sandbox) run `main` and `cleanup` in
interleaved order: each owner's data is untouched by the other."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmle import naming, storage
from cmle.config import load_settings
from cmle.runner import run_stage
from tests.reliability.helpers import platform_state

pytestmark = pytest.mark.slow

PARAMS = {"profiles": 6000, "end_date": "2024-06-01", "min_positives": 10, "min_negatives": 10, "max_evals": 2,
          "families": "logreg", "framing": "pit", "min_auc": 0.5, "min_eval_positives": 10, "skip": "explore"}
# The collisions: an owner folded into another's suffix, and a case variant.
OWNERS = ("cmle", "cmle_cmle")


def settings_for(owner: str, home: Path, root: Path):
    """One user: their own folder and MLflow store, the shared platform folder."""
    (home / owner).mkdir(parents=True, exist_ok=True)
    return load_settings(env={"CMLE_PLATFORM_OWNER": owner, "CMLE_PLATFORM_LOCAL_ROOT": str(root),
                              "CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{home / owner / 'mlflow.db'}"})


def main(settings) -> dict:
    return run_stage("main", settings, PARAMS)


def score_files(settings, owner: str) -> int:
    return len(storage.list_exports(settings.storage_url, settings.cloud.import_path, naming.scores_folder(owner)))


def test_two_owners_interleave_main_and_cleanup(tmp_cwd):
    root = tmp_cwd / "shared-platform"
    a, b = (settings_for(o, tmp_cwd, root) for o in OWNERS)
    main(a)
    a1 = platform_state(root, "cmle")
    main(b)
    b1 = platform_state(root, "cmle_cmle")
    assert platform_state(root, "cmle") == a1, "B's main changed A's data"
    assert len(a1["kinds"]) == len(b1["kinds"]) >= 10 and set(a1["datasets"]).isdisjoint(b1["datasets"])

    out = run_stage("cleanup", a, {})
    assert out["resources"] == len(a1["kinds"])
    assert platform_state(root, "cmle")["kinds"] == [] and score_files(a, "cmle") == 0
    assert platform_state(root, "cmle_cmle") == b1, "A's cleanup touched B's data"
    assert score_files(b, "cmle_cmle") == 1

    main(b)  # B re-runs after A's cleanup and finds everything as it left it
    assert platform_state(root, "cmle_cmle") == b1
    run_stage("synthetic", a, {"profiles": PARAMS["profiles"], "end_date": PARAMS["end_date"]})  # A starts again
    a2 = platform_state(root, "cmle")
    assert len(a2["datasets"]) == 2

    run_stage("cleanup", b, {})
    assert platform_state(root, "cmle_cmle")["kinds"] == [] and score_files(b, "cmle_cmle") == 0
    assert platform_state(root, "cmle") == a2
    assert os.listdir(root / "staging") == []
