"""Test helpers for scoring, ingest and audiences, independent of the training code:
the toy model registered in the test's sqlite registry, a scoring set on the local
platform, and hand-made score runs in the score files layout.

Import as ``from tests.scoring.toy import ...`` (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cmle import naming, storage
from cmle.scoring.schema import SCORE_COLUMNS, SCORE_SCHEMA

MODEL_CODE = Path(__file__).with_name("toy_model.py")
FEATURES = ("visits", "days_since_last_visit", "region")


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", "visits"), ColSpec("double", "days_since_last_visit"),
                       ColSpec("string", "region", required=False)]),
        outputs=Schema([ColSpec("double", "propensity"), ColSpec("long", "score"), ColSpec("long", "percentile"),
                        ColSpec("long", "decile"), ColSpec("string", "bucket")]))


def register_toy_model(name: str, alias: str | None = "champion", shift: float = 0.0) -> str:
    """Log the toy model from code, register a new version of ``name``, point ``alias`` at it."""
    import mlflow

    with mlflow.start_run(run_name="toy-model"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE), signature=signature(),
                                       model_config={"shift": shift}, pip_requirements=["mlflow"],
                                       registered_model_name=name)
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return version


def scoring_table(n: int = 57, seed: int = 0, drop: tuple[str, ...] = ()) -> pa.Table:
    """A scoring set: userid, snapshot_ts, then the toy features (with NULLs, an int column)."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, n).astype("float64")
    visits[rng.random(n) < 0.1] = np.nan
    days = rng.integers(0, 90, n)
    days_mask = rng.random(n) < 0.1  # "never happened": NULL
    regions = rng.choice(["north", "south", "west"], n).astype(object)
    regions[rng.random(n) < 0.1] = None
    cols = {
        "userid": pa.array([f"u{i:05d}" for i in range(n)]),
        "snapshot_ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)] * n, pa.timestamp("us", "UTC")),
        "visits": pa.array(visits, from_pandas=True),
        "days_since_last_visit": pa.array(days, pa.int64(), mask=days_mask),
        "region": pa.array(regions, pa.string()),
    }
    return pa.table({k: v for k, v in cols.items() if k not in drop})


def put_scoring_set(platform, settings, table: pa.Table):
    """Make ``table`` the scoring set on the local platform and export it (AEP layout)."""
    ds = platform.put_table(naming.scoring_set(settings.platform.owner), table)
    return platform.export_dataset(ds.id, settings.cloud.export_path)


def make_scores(n: int = 200, seed: int = 1, version: str = "1", model_name: str = "cmle_propensity_model",
                ids: list[str] | None = None) -> pd.DataFrame:
    """Hand-made score rows that follow the contract (percentile by rank, bucket by score)."""
    rng = np.random.default_rng(seed)
    ids = ids or [f"u{i:05d}" for i in range(n)]
    p = rng.beta(1.2, 3.0, len(ids))
    score = np.rint(100 * p).astype("int32")
    pct = np.clip(np.ceil(100 * pd.Series(p).rank(pct=True).to_numpy()), 1, 100).astype("int32")
    return pd.DataFrame({
        "userid": ids, "propensity": p, "score": score, "percentile": pct,
        "decile": (11 - np.ceil(pct / 10)).astype("int32"),
        "bucket": np.where(score < 25, "low", np.where(score >= 75, "high", "medium")),
        "model_name": model_name, "model_version": version,
        "score_date": pd.Timestamp("2026-01-02", tz="UTC"),
        "factors": [[{"feature": "f1", "name": "feature one", "value": "3", "contribution": 0.5}]
                    if i % 2 else [] for i in range(len(ids))],
    })[list(SCORE_COLUMNS)]


def write_score_run(settings, scores: pd.DataFrame | pa.Table, when: dt.datetime | None = None) -> str:
    """Write ``scores`` as one score run (score files layout); returns its export time."""
    table = scores if isinstance(scores, pa.Table) else pa.Table.from_pandas(scores, schema=SCORE_SCHEMA,
                                                                                preserve_index=False)
    with storage.atomic_export_folder(settings.storage_url, settings.cloud.import_path,
                                      naming.scores_folder(settings.platform.owner), when=when) as (folder, t):
        storage.write_table(folder, table)
    return t


def own_mlflow_store(settings, folder: Path):
    """``settings`` with an absolute sqlite tracking URI in ``folder`` (where the fixtures
    below copy a prepared database: making MLflow's tables takes seconds per test)."""
    from dataclasses import replace

    uri = f"sqlite:///{Path(folder).absolute() / 'mlflow.db'}"
    return replace(settings, mlflow=replace(settings.mlflow, tracking_uri=uri))


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """An MLflow sqlite database with its tables made, once per session (tests copy it:
    creating the tables takes seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlruns"))
    return folder / "mlflow.db"


@pytest.fixture(name="settings")
def own_store_settings(settings, tmp_cwd, mlflow_db_template):
    """The default test settings, with an MLflow store of this test's own (a copy of the template)."""
    shutil.copyfile(mlflow_db_template, tmp_cwd / "mlflow.db")
    return own_mlflow_store(settings, tmp_cwd)


@pytest.fixture(scope="session")
def toy_registry(tmp_path_factory, mlflow_db_template) -> Path:
    """A sqlite registry (made once per session) holding the toy model as version 1 of the
    default model name, alias champion; tests copy its database (artifacts stay here)."""
    import mlflow

    from cmle.config import CloudSettings

    folder = tmp_path_factory.mktemp("toy-registry")
    shutil.copyfile(mlflow_db_template, folder / "mlflow.db")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    try:
        # An explicit experiment (the fluent API may still hold an earlier test's experiment
        # id) whose artifacts stay in this folder, not in the working directory.
        exp = mlflow.create_experiment("toy-registry", artifact_location=(folder / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        register_toy_model(CloudSettings().model_name, alias="champion")
    finally:
        mlflow.set_tracking_uri(previous)
    return folder


@pytest.fixture
def champion(settings, toy_registry):
    """This test's MLflow store, a copy of the toy registry; yields the resolved champion."""
    import mlflow

    from cmle import tracking
    from cmle.scoring import model_ref

    shutil.copyfile(toy_registry / "mlflow.db", settings.mlflow.tracking_uri[len("sqlite:///"):])
    tracking.setup(settings)
    yield model_ref.resolve(settings.cloud.model_name, "champion")
    while mlflow.active_run() is not None:
        mlflow.end_run()
