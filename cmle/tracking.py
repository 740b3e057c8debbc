"""MLflow plumbing shared by every stage: store set-up, safe param logging, tables, figures."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow

from cmle import locks, redact, storage_schemes
from cmle.config import Settings
from cmle.errors import ConfigError, EnvironmentFault

log = logging.getLogger(__name__)


def setup(settings: Settings) -> None:
    """Point MLflow at the configured stores and experiment.

    Under ``mlflow run`` the launcher has already created the run in the store named by
    ``MLFLOW_TRACKING_URI`` and passes ``MLFLOW_RUN_ID``; that store wins so the run resumes.
    A store this environment cannot reach for lack of a package (a SageMaker tracking server
    without its plugin, artifacts on S3 without boto3) is a :class:`ConfigError` naming it.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    launched = bool(os.environ.get("MLFLOW_RUN_ID"))
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        uri = env_uri
        if not launched and env_uri != settings.mlflow.tracking_uri:
            log.info("MLFLOW_TRACKING_URI=%s overrides [MLflow] tracking_uri", env_uri)
    else:
        uri = absolute_sqlite_uri(settings.mlflow.tracking_uri)
    require_tracking_plugin(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if settings.mlflow.registry_uri:
        mlflow.set_registry_uri(settings.mlflow.registry_uri)
    # Two first runs would race the sqlite store's schema migration and the experiment's
    # creation: the first use of the store happens under a lock.
    with locks.store_lock(uri, wait_s=settings.platform.lock_wait):
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
            artifact_uri = None
            if not launched and mlflow.active_run() is None:
                artifact_uri = mlflow.set_experiment(settings.mlflow.experiment_name).artifact_location
            elif launched and mlflow.active_run() is None:
                artifact_uri = mlflow.get_run(os.environ["MLFLOW_RUN_ID"]).info.artifact_uri
        except Exception as exc:  # noqa: BLE001 - whatever the store raises, the user needs one line
            raise EnvironmentFault(f"the MLflow tracking store {redact.scrub(uri)} cannot be used: "
                                   f"{_first_line(exc)}; check [MLflow] tracking_uri (a writable sqlite:/// path "
                                   "or a reachable server)") from exc
    if artifact_uri:
        storage_schemes.require_artifact_driver(artifact_uri)


SAGEMAKER_PLUGIN = "sagemaker-mlflow==0.5.0"


def require_tracking_plugin(uri: str) -> None:
    """A SageMaker managed MLflow tracking server is named by its ARN, which MLflow reaches
    only through AWS's plugin: say so instead of MLflow's unsupported-URI error."""
    if uri.startswith("arn:aws:sagemaker") and not storage_schemes.importable("sagemaker_mlflow"):
        raise ConfigError(f"MLFLOW_TRACKING_URI {uri} is a SageMaker managed MLflow tracking server, which needs "
                          f"AWS's MLflow plugin: pip install 'cmle[s3]' {SAGEMAKER_PLUGIN}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return redact.scrub(text[0][:300] if text else type(exc).__name__)


def check_reachable(uri: str) -> None:
    """Fail in seconds, with one line, when the store cannot work: an http(s) server that does
    not answer (MLflow itself retries for minutes), a sqlite file in a folder that is missing or
    not writable."""
    db = locks.sqlite_path(uri)
    if db is not None:
        folder = db.parent if str(db.parent) else Path(".")
        if not folder.is_dir():
            raise EnvironmentFault(f"the MLflow store {uri}: folder {folder} does not exist; create it or set "
                                   "[MLflow] tracking_uri to a sqlite:/// path in an existing folder")
        if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise EnvironmentFault(f"the MLflow store {uri} is not writable (folder {folder}); make it writable "
                                   "or set [MLflow] tracking_uri elsewhere")
        return
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=10)
        except requests.RequestException as exc:
            raise EnvironmentFault(f"the MLflow tracking server {redact.scrub(uri)} is unreachable "
                                   f"({type(exc).__name__}); start it or fix [MLflow] tracking_uri") from None


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///rel.db`` made absolute against the working directory now (as ``mlflow run``
    does), so a later change of directory cannot point the process at another store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((Path.cwd() / uri[len(prefix):]).resolve())
    return uri


def log_params(params: dict[str, Any], prefix: str = "") -> None:
    """Log params that the run does not hold yet (``mlflow run`` logs declared ones as
    CLI strings, and MLflow refuses to change a param); values are scrubbed of secrets."""
    run = mlflow.active_run()
    if run is None:
        return
    existing = mlflow.get_run(run.info.run_id).data.params
    fresh = {f"{prefix}{k}": redact.scrub(str(v))[:6000] for k, v in params.items()
             if f"{prefix}{k}" not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_dict(data: Any, artifact_file: str) -> None:
    mlflow.log_text(redact.scrub(json.dumps(data, indent=2, default=str, sort_keys=True)), artifact_file)


def log_table(df, artifact_file: str) -> None:
    """Log a DataFrame as a CSV artifact (readable anywhere) and as an MLflow table (UI)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        df.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent) if "/" in artifact_file else None)
    try:
        mlflow.log_table(df.reset_index(drop=True), artifact_file=str(Path(artifact_file).with_suffix(".json")))
    except Exception as exc:  # noqa: BLE001 - the CSV is the artifact of record
        log.debug("log_table skipped for %s: %s", artifact_file, exc)


def log_parquet(df, artifact_file: str) -> str:
    """Log a DataFrame as a Parquet artifact of the active run; returns its ``runs:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        df.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent) if "/" in artifact_file else None)
    return f"runs:/{mlflow.active_run().info.run_id}/{artifact_file}"


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


CACHE_TAG = "cmle.cache_key"


def cache_key(*parts: Any) -> str:
    """A stable key for what a stage's output depends on (parameters, input versions, code)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_outputs(stage: str, key: str) -> dict | None:
    """Outputs of the newest finished run of ``stage`` in this experiment tagged with ``key``.

    The step caching of MLflow's multistep example: a stage whose inputs, parameters and
    code are unchanged finds its previous output instead of redoing (and duplicating) it.
    The caller still checks that the outputs it finds are current.
    """
    run = mlflow.active_run()
    if run is None:
        return None
    found = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id], output_format="list", max_results=1,
        filter_string=f"tags.`cmle.stage` = '{stage}' and tags.`{CACHE_TAG}` = '{key}' "
                      "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"])
    if not found:
        return None
    try:
        return json.loads(mlflow.artifacts.load_text(f"runs:/{found[0].info.run_id}/outputs.json"))
    except Exception as exc:  # noqa: BLE001 - a run without readable outputs is no cache
        log.debug("cache run %s has no outputs: %s", found[0].info.run_id, exc)
        return None


def mark_cached(key: str) -> None:
    """Tag the active run with the cache key of what it produced."""
    if mlflow.active_run() is not None:
        mlflow.set_tag(CACHE_TAG, key)


FEATURE_MANIFEST_ARTIFACT = "features/feature_manifest.json"
FEATURIZE_MANIFEST_ARTIFACT = "featurize/feature_spec.json"  # what featurize logs about its sets


def feature_descriptions(run_id: str) -> dict[str, str]:
    """Feature name -> readable description, from a training run's feature manifest (empty
    when the run has none: a model typed from the data, or no run id)."""
    if not run_id:
        return {}
    try:
        manifest = mlflow.artifacts.load_dict(f"runs:/{run_id}/{FEATURE_MANIFEST_ARTIFACT}")
    except Exception:  # noqa: BLE001 - absent manifest: the feature names are used as they are
        return {}
    return {f["name"]: f.get("description", "") for f in manifest.get("features", [])}


def featurize_manifest(tag: str, value: str) -> dict | None:
    """The manifest logged by the newest featurize run of the active experiment whose ``tag``
    is ``value`` (the version of a set it built); None without an active run, such a run or
    its manifest. Best effort: lineage lookups never fail a stage."""
    active = mlflow.active_run()
    if active is None or not value:
        return None
    try:
        runs = mlflow.search_runs(experiment_ids=[active.info.experiment_id], output_format="list",
                                  filter_string=f"tags.`{tag}` = '{value}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            return None
        return mlflow.artifacts.load_dict(f"runs:/{runs[0].info.run_id}/{FEATURIZE_MANIFEST_ARTIFACT}")
    except Exception as exc:  # noqa: BLE001
        log.debug("featurize manifest lookup (%s = %s) failed: %s", tag, value, exc)
        return None
