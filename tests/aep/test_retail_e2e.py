"""Bring your own data, on AEP: a Luma-style retail dataset that is already in the sandbox
(the customer's schema with identityMap, productListItems and a tenant order value) runs
through `main` with conf/models/retail.yaml against the AEP double, Query Service served by
the real PostgreSQL server. The feature sets equal the embedded platform's for the same rows
(`cmle load` of the same export), the scores dataset declares the spec's identity
namespace, and cleanup leaves the customer's datasets alone."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aep.conftest import aep_env
from aep.seed import seed_dataset
from aep.test_faults import _destination
from cmle import naming
from cmle.config import load_settings
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE
from cmle.runner import run_stage
from cmle.synthetic import retail

RETAIL = Path(__file__).resolve().parents[2] / "conf" / "models" / "retail.yaml"
PARAMS = {"min_positives": 15, "min_negatives": 15, "max_evals": 2, "families": "logreg", "min_auc": 0.5,
          "destination": "Audience exports"}
FEATURE_KEYS = ("training_rows", "training_positives", "training_negatives", "training_features", "scoring_rows",
                "snapshot_ts")


@pytest.mark.slow
def test_retail_main_on_aep_equals_the_embedded_platform(double, tmp_cwd):
    data = retail.generate(users=700, weeks=13, seed=5, tenant=double.tenant)
    events_id = seed_dataset(double, "Luma web events", data.events, EXPERIENCE_EVENT)
    profiles_id = seed_dataset(double, "Luma CRM profiles", data.profiles, PROFILE)
    settings = load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / 'mlflow.db'}",
                                         CMLE_PLATFORM_LOCAL_ROOT=str(tmp_cwd / "local"),
                                         CMLE_MODEL_SPEC=str(RETAIL)))
    _destination(double)
    out = run_stage("main", settings, PARAMS)

    assert out["synthetic"]["skipped"] is True
    assert out["explore"]["filled_fields"] > 10 and out["explore"]["candidate_goals"]
    f = out["featurize"]
    assert f["training_positives"] >= 15 and f["training_negatives"] >= 15 and f["training_features"] > 30
    assert out["train"]["model_name"] == "cmle_retail_purchase_model"
    assert out["ingest"]["records"] == f["scoring_rows"] and out["ingest"]["identity_namespace"] == "ECID"
    scores = next(s for s in double.schemas.values() if s["title"] == naming.score_schema("cmle"))
    (ident,) = [d for d in double.descriptors.values() if d["xdm:sourceSchema"] == scores["$id"]]
    assert ident["xdm:namespace"] == "ECID" and ident["xdm:isPrimary"]
    assert double.duplicates() == {}

    run_stage("cleanup", settings, {})
    assert set(double.datasets) == {events_id, profiles_id}  # the customer's data stays

    # --- the same export on the embedded platform gives the same feature sets -------------
    for kind, table in (("events", data.events), ("profiles", data.profiles)):
        (tmp_cwd / kind).mkdir()
        pq.write_table(table, tmp_cwd / kind / f"{kind}.parquet")
    local = load_settings(env={"CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_cwd / 'local-mlflow.db'}",
                               "CMLE_PLATFORM_LOCAL_ROOT": str(tmp_cwd / "embedded"),
                               "CMLE_PLATFORM_TENANT_ID": double.tenant, "CMLE_MODEL_SPEC": str(RETAIL)})
    run_stage("load", local, {"files": str(tmp_cwd / "events")})
    run_stage("load", local, {"files": str(tmp_cwd / "profiles"), "kind": "profiles"})
    ref = run_stage("featurize", local, {"min_positives": 15, "min_negatives": 15})
    assert {k: ref[k] for k in FEATURE_KEYS} == {k: f[k] for k in FEATURE_KEYS}
