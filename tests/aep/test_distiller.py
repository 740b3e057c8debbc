"""Data Distiller's SQL ML on the AEP double: the statements as Adobe documents them train a
real logistic regression and evaluate it; malformed ones are refused; `train` with
``distiller = logistic_reg`` trains Data Distiller's model on the same rows as cmle's,
evaluates it on the same holdout and logs both in one run; on the embedded platform the
option is refused before any work."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aep.conftest import aep_env
from aep.helpers import ecid
from aep.seed import seed_dataset
from cmle import naming, storage
from cmle.config import load_settings
from cmle.distiller import results
from cmle.errors import ParameterError, QueryError
from cmle.platform.base import PROFILE
from cmle.runner import run_stage
from tests.model.fabricate import arrow, training_frame
from tests.scoring.toy import mlflow_db_template  # noqa: F401 - fixture

ALIAS = "churn_model"


def _rows(n: int = 400, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 1.5 * x1 - 0.8 * x2)))).astype("int64")
    return pa.table({"id": [f"c{i}" for i in range(n)], "x1": x1, "x2": x2, "visits": rng.poisson(3, n),
                     "plan": rng.choice(["basic", "pro"], n), "label": label})


@pytest.fixture
def table(double):
    ds_id = seed_dataset(double, "churn rows", _rows(), PROFILE)
    return double.datasets[ds_id]["tags"]["adobe/pqs/table"][0]


def _create(table, transform="numeric_imputer(x1, 'mean') i1, vector_assembler(array(i1, x2)) features",
            options="MODEL_TYPE='logistic_reg', LABEL='label'", head=f"CREATE MODEL {ALIAS}"):
    return f"{head} TRANSFORM ({transform}) OPTIONS({options}) AS SELECT * FROM {table}"


def test_create_evaluate_predict_as_documented(aep, double, table):
    aep.run_statement(_create(table, options="MODEL_TYPE='logistic_reg', LABEL='label', MAX_ITER=50, "
                                             "REG_PARAM=0.0"), "create")
    assert results.model_versions(aep.query("SHOW MODELS")) == {ALIAS: 1}
    metrics = results.evaluation(aep.query(f"SELECT * FROM model_evaluate({ALIAS}, 1, SELECT x1, x2, label FROM "
                                           f"{table})"))
    assert set(metrics) == {"auc_roc", "accuracy", "precision", "recall"}
    # a real logistic regression: the same ranking as scikit-learn's on the same rows
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = _rows().to_pandas()
    sk = LogisticRegression(C=1e6).fit(rows[["x1", "x2"]], rows["label"])
    assert metrics["auc_roc"] == pytest.approx(roc_auc_score(rows["label"], sk.decision_function(rows[["x1", "x2"]])),
                                               abs=1e-6)
    plain = aep.query(f"SELECT * FROM model_predict({ALIAS}, 1, SELECT id, x1, x2 FROM {table})")
    assert list(plain.columns) == ["id", "x1", "x2", "prediction"] and len(plain) == 400
    aep.query("set advanced_statistics_show_hidden_fields=true")
    full = aep.query(f"SELECT id, probability FROM model_predict({ALIAS}, 1, SELECT id, x1, x2 FROM {table})")
    p = results.predictions(full.rename(columns={"id": "key"}), "key")
    np.testing.assert_allclose(p.loc[rows["id"]].to_numpy(), sk.predict_proba(rows[["x1", "x2"]])[:, 1], atol=1e-3)
    # the documented re-runs: IF NOT EXISTS does nothing, OR REPLACE keeps the version, UPDATE adds one
    aep.run_statement(_create(table, head=f"CREATE MODEL IF NOT EXISTS {ALIAS}"), "again")
    aep.run_statement(_create(table, head=f"CREATE OR REPLACE MODEL {ALIAS}"), "replace")
    assert results.model_versions(aep.query("SHOW MODELS")) == {ALIAS: 1}
    aep.run_statement(_create(table, head=f"UPDATE MODEL {ALIAS}"), "update")
    assert results.model_versions(aep.query("SHOW MODELS")) == {ALIAS: 2}
    aep.query(f"DROP MODEL IF EXISTS {ALIAS}")
    assert results.model_versions(aep.query("SHOW MODELS")) == {}


REFUSED = {
    "no alias": (dict(transform="numeric_imputer(x1, 'mean'), vector_assembler(array(x1, x2)) features"),
                 "alias name is mandatory"),
    "unknown option": (dict(options="MODEL_TYPE='logistic_reg', LABEL='label', DEPTH=3"), "unknown model option"),
    "no model type": (dict(options="LABEL='label'"), "must give MODEL_TYPE"),
    "bad model type": (dict(options="MODEL_TYPE='deep_net', LABEL='label'"), "is not one of LINEAR_REG"),
    "integer to numeric_imputer": (dict(transform="numeric_imputer(visits, 'mean') v, vector_assembler(array(v)) f"),
                                   "should be either DoubleType or FloatType"),
    "last clause not a vector": (dict(transform="numeric_imputer(x1, 'mean') i1"), "last clause of TRANSFORM"),
    "unknown transformation": (dict(transform="magic(x1) m, vector_assembler(array(m)) f"), "unknown transformation"),
    "label missing": (dict(options="MODEL_TYPE='logistic_reg', LABEL='churned'"), "column churned"),
    "no AS SELECT": (dict(head=f"CREATE MODEL {ALIAS}"), None),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_malformed_create_model_is_refused(aep, double, table, case):
    kwargs, message = REFUSED[case]
    statement = _create(table, **kwargs)
    if message is None:
        statement, message = statement.split(" AS SELECT")[0], "malformed CREATE MODEL"
    with pytest.raises(QueryError, match=f"ended FAILED .*{message}"):
        aep.run_statement(statement, "bad")
    with pytest.raises(QueryError, match=message):  # the interactive wire refuses it the same way
        aep.query(statement)
    assert results.model_versions(aep.query("SHOW MODELS")) == {}


def test_evaluation_and_prediction_refuse_what_training_did_not_see(aep, double, table):
    aep.run_statement(_create(table, transform="string_indexer(plan) p, one_hot_encoder(p) o, "
                                               "vector_assembler(array(o, x1)) features"), "create")
    with pytest.raises(QueryError, match="already exists"):
        aep.run_statement(_create(table), "exists")
    cases = {
        f"SELECT * FROM model_evaluate({ALIAS}, 2, SELECT plan, x1, label FROM {table})": "version 2 does not exist",
        f"SELECT * FROM model_evaluate({ALIAS}, 1, SELECT x1, label FROM {table})": "column plan",
        f"SELECT * FROM model_evaluate({ALIAS}, 1, SELECT plan, x1 FROM {table})": "needs the label column",
        f"SELECT * FROM model_evaluate({ALIAS}, 1, SELECT 'gold' AS plan, x1, label FROM {table})": "Unseen label: gold",
        f"SELECT * FROM model_evaluate({ALIAS}, 1, SELECT plan, CAST(NULL AS DOUBLE) AS x1, label FROM {table})":
            "Encountered null while assembling",
        f"SELECT * FROM model_predict({ALIAS}, 1, {table})": "third argument must be a SELECT",
        f"SELECT * FROM model_predict(nope, 1, SELECT plan, x1 FROM {table})": "model nope version 1 does not exist",
    }
    for statement, message in cases.items():
        with pytest.raises(QueryError, match=message):
            aep.query(statement)
    assert len(aep.query(f"SELECT * FROM model_predict({ALIAS}, 1, SELECT plan, x1 FROM {table})")) == 400


# --- the train stage's option ----------------------------------------------------------------
@pytest.fixture
def aep_settings_own_store(double, tmp_cwd, mlflow_db_template):
    shutil.copyfile(mlflow_db_template, tmp_cwd / "mlflow.db")
    return load_settings(env=aep_env(double, CMLE_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_cwd / 'mlflow.db'}"))


def _training_set_on_aep(double, settings, n: int = 1200) -> pd.DataFrame:
    """A point-in-time training set as featurize and export leave it on AEP: the dataset in
    Query Service, and its export in the landing zone (ids are valid ECIDs)."""
    frame = training_frame(n, seed=4, shift=0.8)
    frame["userid"] = [ecid(i) for i in range(n)]
    ds_id = seed_dataset(double, naming.training_set(settings.platform.owner), arrow(frame), PROFILE)
    with storage.atomic_export_folder(settings.storage_url, settings.cloud.export_path, ds_id) as (folder, _):
        storage.write_table(folder, arrow(frame))
    return frame


def test_train_logs_data_distillers_model_next_to_cmles_on_the_same_rows(double, aep_settings_own_store):
    settings = aep_settings_own_store
    frame = _training_set_on_aep(double, settings)
    params = {"max_evals": 1, "families": "logreg", "framing": "pit", "distiller": "logistic_reg"}
    out = run_stage("train", settings, params)

    alias = naming.distiller_model(settings.platform.owner)
    assert out["distiller_model"] == alias and out["distiller_version"] == 1
    run = mlflow.get_run(out["training_run_id"])
    m = run.data.metrics
    # both models on the same holdout, in one run; a logistic regression either way, so close
    assert {"holdout_roc_auc", "distiller_auc_roc", "distiller_holdout_roc_auc", "distiller_accuracy",
            "distiller_precision", "distiller_recall", "distiller_holdout_pr_auc", "distiller_holdout_ece"} <= set(m)
    assert 0.6 < m["distiller_auc_roc"] < 1.0 and abs(m["distiller_auc_roc"] - m["holdout_roc_auc"]) < 0.05
    # model_evaluate's AUC and the AUC of model_predict's probabilities: the same model, the same rows
    assert m["distiller_holdout_roc_auc"] == pytest.approx(m["distiller_auc_roc"], abs=1e-9)
    assert run.data.tags["cmle.distiller_model"] == alias
    comparison = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/distiller/comparison.csv"))
    assert {"auc_roc", "accuracy", "roc_auc", "log_loss"} <= set(comparison["metric"])
    assert set(comparison["source"]) == {"model_evaluate", "model_predict probabilities"}
    create = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/distiller/create_model.sql")
    assert create.startswith(f"CREATE OR REPLACE MODEL {alias}")
    # the statements went over the wire and REST as written: Spark SQL, the documented forms
    sent = double.wire_queries()
    assert any(q.startswith(f"SELECT * FROM model_evaluate({alias}, 1,") for q in sent)
    assert any(q.startswith(f"SELECT * FROM model_predict({alias}, 1,") for q in sent)
    creates = [q for q in double.queries.values() if q["request"]["sql"].startswith("CREATE OR REPLACE MODEL")]
    assert len(creates) == 1 and creates[0]["state"] == "SUCCESS"
    # the holdout's profiles are exactly the rows cmle held out
    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/holdout/holdout.parquet"))
    keys = next(d for d in double.datasets.values() if d["name"] == naming.holdout_dataset("cmle"))
    held = aep_ids(double, keys)
    assert held == sorted(holdout["userid"])

    # asked again: cmle's version is reused, not retrained; Data Distiller's model is replaced, not duplicated
    again = run_stage("train", settings, params)
    assert again["reused"] and again["model_version"] == out["model_version"]
    assert again["distiller_version"] == 1 and again["distiller_auc_roc"] == pytest.approx(out["distiller_auc_roc"])
    assert double.duplicates() == {}

    done = run_stage("cleanup", settings, {})
    assert done["by_kind"].get("model") == 1
    assert not [d for d in double.datasets.values() if d["name"] == naming.holdout_dataset("cmle")]
    assert not [s for s in double.schemas.values() if s["title"] == naming.holdout_schema("cmle")]
    assert results.model_versions(aep_query(settings, "SHOW MODELS")) == {}


def aep_ids(double, dataset: dict) -> list[str]:
    with double.admin() as cur:
        cur.execute(f'SELECT ("_{double.tenant}")."userid" FROM "{dataset["tags"]["adobe/pqs/table"][0]}"')
        return sorted(r[0] for r in cur.fetchall())


def aep_query(settings, sql: str) -> pd.DataFrame:
    from cmle.platform.aep import AEPPlatform

    platform = AEPPlatform.from_settings(settings)
    try:
        return platform.query(sql)
    finally:
        platform.close()


def test_on_the_embedded_platform_the_option_says_it_needs_aep(tmp_cwd, mlflow_db_template):
    shutil.copyfile(mlflow_db_template, tmp_cwd / "mlflow.db")
    settings = load_settings(env={"CMLE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_cwd / 'mlflow.db'}"})
    with pytest.raises(ParameterError, match="Data Distiller's own model in AEP Query Service.*backend = aep"):
        run_stage("train", settings, {"distiller": "logistic_reg"})  # before looking for a training set
    with pytest.raises(ParameterError, match="not one of: off, logistic_reg"):
        run_stage("train", settings, {"distiller": "kmeans"})
