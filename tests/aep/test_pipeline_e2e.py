"""The whole pipeline (`main`, small size) with ``backend = aep`` against the double, Query
Service served by the real PostgreSQL server; then `cleanup`. Checks the stages' results,
that the feature sets equal the embedded platform's for the same data (the same Spark SQL
on PostgreSQL and on DuckDB), that nothing was created twice, and that no secret or token
appears in any log line, MLflow param, tag or artifact."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pytest

from aep.conftest import aep_env
from aep.test_faults import _destination
from cmle import naming, redact
from cmle.config import load_settings
from cmle.runner import run_stage

PARAMS = {"profiles": 1200, "weeks": 10, "end_date": "2024-06-01", "seed": 7, "min_positives": 15,
          "min_negatives": 15, "max_evals": 2, "families": "logreg", "min_auc": 0.5, "min_eval_positives": 3,
          "destination": "Audience exports"}
FEATURE_KEYS = ("training_rows", "training_positives", "training_negatives", "training_features",
                "cmle_training_rows", "cmle_training_positives", "scoring_rows")


def _secrets(double) -> list[str]:
    return [double.client_secret, double.dlz_sas_token, *double.tokens]


def _scan_mlflow(tracking_uri: str, secrets: list[str], dst: Path) -> list[str]:
    """Every place in the MLflow store that holds a secret."""
    client = mlflow.MlflowClient(tracking_uri)
    found = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            for kind, values in (("param", run.data.params), ("tag", run.data.tags)):
                for k, v in values.items():
                    if any(s in f"{k}={v}" for s in secrets):
                        found.append(f"{kind} {k} of run {run.info.run_id}")
            local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(dst / run.info.run_id),
                                                             tracking_uri=tracking_uri))
            for f in local.rglob("*"):
                if f.is_file():
                    data = f.read_bytes()
                    if any(s.encode() in data for s in secrets):
                        found.append(f"artifact {f.relative_to(dst)}")
    return found


@pytest.mark.slow
def test_main_runs_on_aep_and_leaves_no_secret(double, tmp_cwd, monkeypatch):
    import cmle.platform.aep as aep_mod

    # aepp's own DEBUG logging (which writes the Authorization header) is switched on, to
    # show that the redaction filter keeps tokens out of the log.
    real_build = aep_mod.build_client

    def build_with_aepp_debug(*args, **kwargs):
        c = real_build(*args, **kwargs)
        for svc in (c.schema, c.catalog, c.query):
            svc.connector.loggingEnabled = True
            svc.connector.logger = logging.getLogger("aepp.connector")
        return c

    monkeypatch.setattr(aep_mod, "build_client", build_with_aepp_debug)
    log_file = tmp_cwd / "all.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for name in ("aepp", "cmle", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    redact.install()
    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    try:
        settings = load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=uri,
                                             CMLE_PLATFORM_LOCAL_ROOT=str(tmp_cwd / "local")))
        _destination(double)
        out = run_stage("main", settings, PARAMS)

        # --- every stage ran and did its job on the platform -------------------------------
        assert out["synthetic"]["events"] > 10_000 and out["synthetic"]["profiles"] == 1200
        assert out["featurize"]["training_positives"] >= 15
        assert out["export"]["training_export_rows"] == out["featurize"]["training_rows"]
        assert out["export"]["training_export_url"].startswith(str(double.landing_zone))
        assert out["ingest"], out
        scores = next(d for d in double.datasets.values() if d["name"] == naming.scores_dataset("cmle"))
        assert "enabled:true" in scores["tags"]["unifiedProfile"]
        activations = list((double.landing_zone / "activations" / "dest1").glob("*.parquet"))
        assert len(activations) == 3
        assert double.duplicates() == {}

        # --- a re-run of the data stages creates nothing new ------------------------------
        # (without a destination, as the README's command: on AEP activation is skipped with a note)
        counts = (len(double.schemas), len(double.fieldgroups), len(double.flows), len(double.segments))
        jobs = len(double.jobs)
        rerun = {k: v for k, v in PARAMS.items() if k != "destination"}
        again = run_stage("main", settings, {**rerun, "skip": "explore,train,promote"})
        assert again["synthetic"]["reused"] is True
        assert again["audience"]["activations"] == [] and "no destination configured" in \
            again["audience"]["activation_note"]
        assert len(double.jobs) == jobs  # same scores, same rules: the evaluation job is reused
        assert (len(double.schemas), len(double.fieldgroups), len(double.flows), len(double.segments)) == counts
        assert double.duplicates() == {}

        # --- time moves forward: realised outcomes joined in Query Service, factor rules in PQL ---
        synthetic = {k: PARAMS[k] for k in ("profiles", "weeks", "end_date", "seed")}
        ext = run_stage("synthetic", settings, {**synthetic, "extend_weeks": 2})
        assert ext["extension_events"] > 0 and double.duplicates() == {}
        mon = run_stage("monitor", settings, {})
        assert mon["ripe_runs"] == 1 and mon["realised"]["score_export_time"] == out["score"]["export_time"]
        assert mon["realised_profiles"] == out["score"]["rows"] and 0 < mon["realised_positives"]
        assert 0.0 <= mon["realised_auc"] <= 1.0 and mon["psi_score"] is not None
        from cmle import storage

        scored = storage.read_export(out["score"]["scores_url"]).to_pandas()
        feature = scored["factors"].explode().dropna().map(lambda f: f["feature"]).value_counts().index[0]
        aud = run_stage("audience", settings, {"rules": f"f1:top:50:factor={feature}", "destination": ""})
        expected = sum(p >= 51 and any(f["feature"] == feature for f in fs)
                       for p, fs in zip(scored["percentile"], scored["factors"]))
        assert aud["audiences"]["f1"]["qualified"] == expected > 0
        assert "exists F from" in next(s["expression"]["value"] for s in double.segments.values()
                                       if s["name"].startswith("[CMLE] Audience f1"))

        # --- cleanup deletes everything the pipeline created on the platform ---------------
        done = run_stage("cleanup", settings, {})
        assert done["resources"] > 10
        assert not (double.schemas or double.fieldgroups or double.datasets or double.segments
                    or double.source_connections or double.target_connections)  # ad-hoc schemas included
        assert not list(double.landing_zone.glob("cmle/egress/*"))  # and the export files
        assert list(double.flows) == ["dest1"]  # the user's destination stays, without our audiences
        assert double.flows["dest1"]["transformations"][0]["params"]["segmentSelectors"]["selectors"] == []
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)

    # --- the same data gives the same feature sets on the embedded platform --------------
    local = load_settings(env={"CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_cwd / 'local-mlflow.db'}",
                               "CMLE_PLATFORM_LOCAL_ROOT": str(tmp_cwd / "embedded")})
    ref = run_stage("main", local, {**PARAMS, "skip": "explore,export,train,promote,score,ingest,audience"})
    assert {k: ref["featurize"][k] for k in FEATURE_KEYS} == {k: out["featurize"][k] for k in FEATURE_KEYS}

    # --- no secret or token anywhere ------------------------------------------------------
    secrets = _secrets(double)
    assert len(secrets) >= 3
    text = log_file.read_text()
    assert "Start GET request" in text or "Start POST request" in text  # aepp's DEBUG lines are there
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets in the log: {leaked}"
    assert not _scan_mlflow(uri, secrets, tmp_cwd / "artifacts")
