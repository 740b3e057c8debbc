"""Data Distiller's own model as a challenger of cmle's, on the same rows (AEP backend).

``train`` with ``distiller = logistic_reg`` calls :func:`compare` once cmle's model is
trained (or found trained) and evaluated:

1. the holdout's profile ids go to a small dataset of their own (one batch, replaced when
   the holdout changes), so SQL in Query Service can name the same rows as cmle's split;
2. one query checks that the training set's dataset still holds the rows train read (its
   row count, and every holdout profile in it): a rebuilt set would not be the same rows;
3. ``CREATE OR REPLACE MODEL`` trains Data Distiller's model on the training set's rows
   that are not in the holdout (a REST query, polled, as a CTAS), under one model alias per
   owner (:func:`cmle.naming.distiller_model`, replaced on every run, dropped by cleanup);
   ``SHOW MODELS`` gives the version it made;
4. ``model_evaluate`` on the holdout rows gives Data Distiller's own metrics (``auc_roc``,
   ``accuracy``, ``precision``, ``recall``), and ``model_predict`` (with the hidden
   ``probability`` field switched on) its probabilities, from which cmle computes the same
   holdout metrics it computes for its own model (ROC-AUC, PR-AUC, log loss, Brier, ECE);
5. everything is logged in the active run, next to cmle's own holdout metrics: metrics
   ``distiller_*``, a side-by-side table ``distiller/comparison.csv``, and the three
   statements as ``distiller/*.sql``.

On any other backend the option is refused before training starts.
"""

from __future__ import annotations

import hashlib
import logging

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa

from cmle import naming, tracking
from cmle.columns import ID_COLUMN, LABEL_COLUMN
from cmle.context import Context
from cmle.distiller import results, sql
from cmle.errors import DataCheckError, NotFoundError, ParameterError, QueryError
from cmle.exports import feature_set_name
from cmle.ingestion import ingest_tables
from cmle.model import metrics
from cmle.platform.base import PROFILE, Dataset, Platform

log = logging.getLogger(__name__)

CHOICES = ("off", *sql.MODEL_TYPES)
MAX_PREDICT_ROWS = 50_000  # Query Service's cap on interactive results
THRESHOLD = 0.5  # model_evaluate's accuracy, precision and recall are at the default 0.5
# cmle's holdout metrics, computed for Data Distiller's model from its probabilities
COMPARED = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_decile_1", "gain_decile_1")


def require_aep(platform: Platform, model_type: str) -> None:
    """Refuse the option on a backend without Data Distiller, before any work is done."""
    if model_type == "off":
        return
    if model_type not in CHOICES:
        raise ParameterError(f"train: distiller = {model_type!r} is not one of {', '.join(CHOICES)}")
    if platform.backend != "aep" or not hasattr(platform, "run_statement"):
        raise ParameterError(f"train: distiller = {model_type} trains Data Distiller's own model in AEP Query Service, "
                             f"which the {platform.backend} platform does not have: set [Platform] backend = aep (a "
                             "sandbox with the Data Distiller add-on), or leave distiller = off")


def holdout_dataset(platform: Platform, owner: str, namespace: str) -> Dataset:
    """Get or create the dataset of the holdout's profile ids (not enabled for Profile)."""
    fg = platform.get_or_create_field_group(naming.holdout_field_group(owner), {ID_COLUMN: "string"}, PROFILE)
    schema = platform.get_or_create_schema(naming.holdout_schema(owner), PROFILE, [fg], identity_field=ID_COLUMN,
                                           identity_namespace=namespace)
    return platform.get_or_create_dataset(naming.holdout_dataset(owner), schema)


def upload_holdout(platform: Platform, owner: str, namespace: str, ids: list[str]) -> Dataset:
    """The holdout's profile ids as the holdout dataset's one live batch (kept when unchanged)."""
    ds = holdout_dataset(platform, owner, namespace)
    ids = sorted(ids)
    key = "holdout:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    rows = pa.array([{ID_COLUMN: i} for i in ids], pa.struct([(ID_COLUMN, pa.string())]))
    ingest_tables(platform, ds.id, [pa.table({f"_{platform.tenant_id}": rows})], key=key, replace=True,
                  file_prefix="holdout")
    return ds


def compare(ctx: Context, model_type: str, frame: pd.DataFrame, holdout: pd.DataFrame, cmle_propensity,
            numeric, categorical, framing: str, namespace: str, timeout_s: float = 3600.0) -> dict:
    """Train, evaluate and log Data Distiller's model on ``frame`` (the training set as train
    read it) without the ``holdout`` rows, evaluated on those rows; see the module docstring."""
    platform = ctx.platform
    require_aep(platform, model_type)
    if model_type == "off":
        return {}
    if frame[ID_COLUMN].duplicated().any():
        raise DataCheckError("the Data Distiller comparison names rows by profile, but the training set holds a "
                             "profile more than once; use the point-in-time set (framing = pit)")
    name = feature_set_name(ctx, "training", framing)
    training = platform.find_dataset(name)
    if training is None:
        raise NotFoundError(f"the training set {name!r} is not on the platform any more; run featurize, export and "
                            "train again")
    holdout_ids = holdout[ID_COLUMN].astype(str).tolist()
    keys = upload_holdout(platform, ctx.owner, namespace, holdout_ids)
    tenant = platform.tenant_id
    counts = platform.query(sql.split_counts(training.table, keys.table, tenant), max_rows=1).iloc[0]
    if (int(counts["cmle_rows"]), int(counts["cmle_holdout_rows"])) != (len(frame), len(holdout)):
        raise DataCheckError(f"the training set {name!r} now holds {int(counts['cmle_rows'])} rows with "
                             f"{int(counts['cmle_holdout_rows'])} of the holdout's, but train read {len(frame)} rows "
                             f"with {len(holdout)} holdout rows: it was rebuilt since its export. Run export and train "
                             "again so both models see the same rows")
    train_rows = frame[~frame[ID_COLUMN].astype(str).isin(set(holdout_ids))]
    features = sql.Features.from_frame(train_rows, numeric, categorical)
    alias = naming.distiller_model(ctx.owner)
    statements = {
        "create_model": sql.create_model(alias, features, sql.rows_select(features, training.table, keys.table,
                                                                           tenant, holdout=False), model_type),
    }
    log.info("train: Data Distiller %s on %d training rows (%d features)", model_type, len(train_rows),
             len(features.columns(with_label=False)) - 1)
    platform.run_statement(statements["create_model"], label=f"Data Distiller CREATE MODEL {alias}",
                           timeout_s=timeout_s)
    version = results.model_versions(platform.query(sql.show_models())).get(alias)
    if version is None:
        raise QueryError(f"CREATE MODEL {alias} succeeded but SHOW MODELS does not list it")
    holdout_select = sql.rows_select(features, training.table, keys.table, tenant, holdout=True)
    statements["model_evaluate"] = sql.model_evaluate(alias, version, holdout_select)
    evaluated = results.evaluation(platform.query(statements["model_evaluate"], timeout_s=timeout_s, max_rows=1))
    statements["model_predict"] = sql.model_predict(alias, version, sql.rows_select(
        features, training.table, keys.table, tenant, holdout=True, with_label=False))
    probability = _predictions(platform, statements["model_predict"], len(holdout), timeout_s)
    return _log(alias, version, model_type, features, statements, evaluated, probability, holdout, cmle_propensity)


def _predictions(platform: Platform, statement: str, rows: int, timeout_s: float) -> pd.Series:
    if rows > MAX_PREDICT_ROWS:
        log.warning("train: the holdout has %d rows, more than Query Service returns to a client (%d): Data "
                    "Distiller's probabilities are not read; its model_evaluate metrics are", rows, MAX_PREDICT_ROWS)
        return pd.Series(dtype="float64")
    platform.query(sql.HIDDEN_FIELDS)
    return results.predictions(platform.query(statement, timeout_s=timeout_s, max_rows=rows), sql.KEY)


def _at_threshold(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy, precision and recall at 0.5: what model_evaluate reports, for cmle's model."""
    pred = p >= THRESHOLD
    tp = float(np.sum(pred & (y == 1)))
    return {"accuracy": float(np.mean(pred == (y == 1))),
            "precision": tp / float(pred.sum()) if pred.sum() else float("nan"),
            "recall": tp / float((y == 1).sum()) if (y == 1).sum() else float("nan")}


def _log(alias: str, version: int, model_type: str, features: sql.Features, statements: dict, evaluated: dict,
         probability: pd.Series, holdout: pd.DataFrame, cmle_propensity) -> dict:
    y = holdout[LABEL_COLUMN].to_numpy(dtype="int64")
    p_cmle = np.asarray(cmle_propensity, dtype="float64")
    cmle = metrics.classification_metrics(y, p_cmle) | _at_threshold(y, p_cmle)
    cmle["auc_roc"] = cmle["roc_auc"]
    dd = {k: evaluated[k] for k in ("auc_roc", "accuracy", "precision", "recall") if k in evaluated}
    ids = holdout[ID_COLUMN].astype(str)
    predicted = probability.reindex(ids.to_numpy()).to_numpy(dtype="float64") if len(probability) else None
    computed = {}
    if predicted is not None and np.isfinite(predicted).all():
        every = metrics.classification_metrics(y, predicted)
        computed = {k: every[k] for k in COMPARED}
    elif predicted is not None:
        log.warning("train: Data Distiller returned no probability for %d of %d holdout rows; its holdout metrics are "
                    "model_evaluate's alone", int((~np.isfinite(predicted)).sum()), len(predicted))
    rows = [{"metric": k, "source": "model_evaluate", "cmle": cmle.get(k, np.nan), "data_distiller": v}
            for k, v in dd.items()]
    rows += [{"metric": k, "source": "model_predict probabilities", "cmle": cmle.get(k, np.nan), "data_distiller": v}
             for k, v in computed.items()]
    table = pd.DataFrame(rows)
    if len(table):
        table["difference"] = table["cmle"] - table["data_distiller"]
    logged = {f"distiller_{k}": v for k, v in dd.items()} | {f"distiller_holdout_{k}": v for k, v in computed.items()}
    mlflow.log_metrics({k: float(v) for k, v in logged.items() if np.isfinite(v)})
    if np.isfinite(cmle["roc_auc"]) and "auc_roc" in dd:
        mlflow.log_metric("distiller_auc_margin", float(cmle["roc_auc"] - dd["auc_roc"]))
    mlflow.set_tags({"cmle.distiller_model": alias, "cmle.distiller_version": str(version),
                     "cmle.distiller_model_type": model_type,
                     "cmle.distiller_skipped_features": "; ".join(features.skipped)[:250] or "none"})
    tracking.log_table(table, "distiller/comparison.csv")
    for name, text in statements.items():
        mlflow.log_text(text, f"distiller/{name}.sql")
    log.info("train: holdout ROC-AUC cmle %.4f, Data Distiller %s %.4f (%s v%s)", cmle["roc_auc"], model_type,
             dd.get("auc_roc", float("nan")), alias, version)
    return {"distiller_model": alias, "distiller_version": version,
            "distiller_auc_roc": dd.get("auc_roc"), "distiller_holdout_roc_auc": computed.get("roc_auc"),
            "distiller_auc_margin": (cmle["roc_auc"] - dd["auc_roc"]) if "auc_roc" in dd else None}


def registered_holdout(holdout_uri: str, model_uri: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout rows stored with a registered version's training run, and that version's
    propensities on them (when train found the version already trained)."""
    from cmle.scoring import batch
    from cmle.scoring.model_ref import ModelRef, load

    if not holdout_uri:
        raise NotFoundError(f"{model_uri} has no stored holdout (tag cmle.holdout_uri); train with retrain = true")
    path = mlflow.artifacts.download_artifacts(holdout_uri)
    holdout = pd.read_parquet(path)
    name, version = model_uri.removeprefix("models:/").rsplit("/", 1)
    model = load(ModelRef(name=name, version=version, requested=version))
    types, _ = batch.signature_inputs(model, model_uri)
    inputs = pa.RecordBatch.from_pandas(holdout[[ID_COLUMN, *[c for c in types if c in holdout.columns]]],
                                        preserve_index=False)
    checked = batch.check_columns(inputs.schema, model, model_uri)
    propensity = model.predict(batch.model_input(inputs, checked, model_uri)[1])
    return holdout, np.asarray(propensity["propensity"], dtype="float64")
