"""Two owners in one AEP sandbox (the double): `main` and `cleanup` interleaved; each owner's
resources carry their ownership record and are untouched by the other's runs."""

from __future__ import annotations

import pytest

from aep.conftest import aep_env
from cmle import naming
from cmle.config import load_settings
from cmle.platform.aep.catalog import OWNER_TAG
from cmle.runner import run_stage

pytestmark = pytest.mark.slow

PARAMS = {"profiles": 600, "weeks": 10, "end_date": "2024-06-01", "seed": 7, "min_positives": 5,
          "min_negatives": 5, "framing": "pit", "skip": "explore,train,promote,score,ingest,audience"}
OWNERS = ("cmle", "Cmle")  # a case variant: the same slug, other names


def owned(double, owner: str) -> dict:
    """What the sandbox holds of one owner: datasets (by their owner tag) with their live batches,
    and the XDM resources named for the owner."""
    datasets = {k: v["name"] for k, v in double.datasets.items() if v["tags"].get(OWNER_TAG) == [owner]}
    batches = sorted(b_id for b_id, b in double.batches.items()
                     if b["relatedObjects"][0]["id"] in datasets and b["status"] == "success")
    titles = sorted(r["title"] for r in [*double.schemas.values(), *double.fieldgroups.values()]
                    if naming.is_ours(r["title"], owner))
    return {"datasets": datasets, "batches": batches, "xdm": titles}


def test_two_owners_in_one_sandbox(double, tmp_cwd):
    settings = {o: load_settings(env=aep_env(double, CMLE_PLATFORM_OWNER=o,
                                             CMLE_PLATFORM_LOCAL_ROOT=str(tmp_cwd / o / "local"),
                                             CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / (o + '.db')}"))
                for o in OWNERS}
    a, b = OWNERS
    run_stage("main", settings[a], PARAMS)
    a1 = owned(double, a)
    run_stage("main", settings[b], PARAMS)
    b1 = owned(double, b)
    assert owned(double, a) == a1
    assert len(a1["datasets"]) == len(b1["datasets"]) == 4 and len(a1["xdm"]) == len(b1["xdm"]) == 4
    assert set(a1["datasets"].values()).isdisjoint(b1["datasets"].values())

    run_stage("cleanup", settings[a], {})
    assert owned(double, a) == {"datasets": {}, "batches": [], "xdm": []}
    assert owned(double, b) == b1, "A's cleanup touched B's resources"

    run_stage("main", settings[b], PARAMS)  # B finds everything as it left it
    assert owned(double, b) == b1
    assert double.duplicates() == {}

    run_stage("cleanup", settings[b], {})
    assert not (double.datasets or double.schemas or double.fieldgroups)
