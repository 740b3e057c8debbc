"""A fabricated training set with a known latent propensity, shaped like the featurize
stage's output (userid, snapshot_ts, label, numeric features with NULLs, string
categoricals), plus its oracle file in the synthetic stage's format. Shared by the model,
registry and stage tests."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow sqlite database with every table created (the migrations take seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("mlflow-template")
    SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "mlruns")).engine.dispose()
    return root / "mlflow.db"


@pytest.fixture
def store(empty_mlflow_db, settings, tmp_cwd, monkeypatch):
    """An MLflow tracking store and registry of this test alone (a copy of an empty database).

    MLflow caches a store per URI string, so the relative ``sqlite:///mlflow.db`` of the
    default settings would reach the first test's database from every later test; an
    absolute URI (through the environment, which ``tracking.setup`` honours) keeps each
    test's registry its own.
    """
    import mlflow

    from cmle import tracking

    shutil.copyfile(empty_mlflow_db, tmp_cwd / "mlflow.db")
    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.setup(settings)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


SNAPSHOT = datetime(2024, 3, 1, tzinfo=timezone.utc)
WINDOW_START = SNAPSHOT - timedelta(weeks=10)


def latent(frame: pd.DataFrame, shift: float = 0.0) -> np.ndarray:
    """The true P(label = 1) of each fabricated row."""
    recency = frame["minutes_since_email_clicked"].fillna(1e6).to_numpy()
    logit = (-3.2 + shift + 0.9 * frame["emails_clicked"] + 0.35 * frame["product_views"]
             + 0.1 * frame["emails_opened"] - 0.45 * np.log1p(recency / 60.0) / 3.0
             + np.where(frame["loyalty_tier"] == "gold", 0.8, 0.0)
             + np.where(frame["region"].isna(), -0.4, 0.0))
    return 1.0 / (1.0 + np.exp(-logit.to_numpy()))


def features(n: int, seed: int = 0) -> pd.DataFrame:
    """Feature rows (no label) for ``n`` fabricated profiles."""
    rng = np.random.default_rng(seed)
    sent = rng.poisson(5.0, n)
    opened = rng.binomial(sent, 0.4)
    clicked = rng.binomial(opened, 0.25)
    minutes = np.where(clicked > 0, rng.exponential(60 * 24 * 10, n), np.nan)
    region = rng.choice(np.array(["north", "south", "east", "west", None], dtype=object), n,
                        p=[0.3, 0.3, 0.2, 0.15, 0.05])
    age = rng.integers(18, 80, n).astype("float64")
    age[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "userid": [f"u{seed}-{i:07d}" for i in range(n)],
        "snapshot_ts": pd.Timestamp(SNAPSHOT),
        "emails_sent": sent.astype("int64"),
        "emails_opened": opened.astype("int64"),
        "emails_clicked": clicked.astype("int64"),
        "product_views": rng.poisson(0.6, n).astype("int64"),
        "minutes_since_email_clicked": minutes,
        "age": age,
        "region": region,
        "loyalty_tier": rng.choice(np.array(["bronze", "silver", "gold"], dtype=object), n, p=[0.6, 0.3, 0.1]),
    })


def training_frame(n: int = 2000, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """A training set: meta columns, label drawn from :func:`latent`, features."""
    frame = features(n, seed)
    p = latent(frame, shift)
    label = (np.random.default_rng(seed + 1000).random(n) < p).astype("int64")
    frame.insert(2, "label", label)
    return frame


def oracle_frame(frame: pd.DataFrame, shift: float = 0.0) -> pd.DataFrame:
    """The oracle in the synthetic stage's layout: a window-start row per user with the
    initial propensity, then an 'event' row a day before the snapshot with the latent one."""
    start = pd.DataFrame({"userid": frame["userid"], "timestamp": pd.Timestamp(WINDOW_START),
                          "propensity": 0.001})
    event = pd.DataFrame({"userid": frame["userid"], "timestamp": pd.Timestamp(SNAPSHOT - timedelta(days=1)),
                          "propensity": latent(frame, shift)})
    return pd.concat([start, event], ignore_index=True)


def arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as the platform stores it (timestamp[us, UTC], int64 / double / string)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.set_column(table.schema.get_field_index("snapshot_ts"), "snapshot_ts",
                            table["snapshot_ts"].cast(pa.timestamp("us", tz="UTC")))


def register_version(name: str, frame: pd.DataFrame, columns: list[str] | None = None, seed: int = 0,
                     alias: str | None = "challenger", stable: bool = True, holdout_fraction: float = 0.3,
                     tags: dict | None = None) -> str:
    """Fit a logistic regression on ``columns`` of ``frame`` (all features by default), log it
    as the pyfunc with a stored holdout the way ``train`` does, register it under ``name``
    and point ``alias`` at it. Needs an active MLflow store; returns the version. Faster than
    the train stage, for tests that need several versions of known quality.

    ``stable``: the holdout is the model's stable split (salt on the registered model, split
    record on the version) as ``train`` makes it; False: a seeded random split and no split
    record, as versions trained before the stable split have."""
    import mlflow

    from cmle.model import artifact, fit, scoring
    from cmle.model.holdout import describe
    from cmle.model.preprocess import FeatureSpec
    from cmle.registry import Registry
    from cmle.stages.train import HOLDOUT_TAG, SPLIT_TAG, _log_holdout

    spec = FeatureSpec.infer(frame)
    if columns is not None:
        spec = FeatureSpec(numeric=tuple(c for c in spec.numeric if c in columns),
                           categorical=tuple(c for c in spec.categorical if c in columns))
    salt = Registry.current().split_salt(name) if stable else None
    parts = fit.split(frame, holdout_fraction, 0.2, seed, salt=salt)
    params = {"family": "logreg", "C": 1.0, "transform": "log", "class_weight": None}
    estimator = fit.fit_calibrated(params, spec, (spec.prepare(parts.train), fit.labels(parts.train)),
                                   (spec.prepare(parts.valid), fit.labels(parts.valid)), seed)
    p = estimator.predict_proba(spec.prepare(parts.holdout))[:, 1]
    with mlflow.start_run(run_name="fabricated", nested=mlflow.active_run() is not None):
        holdout_uri = _log_holdout(parts.holdout, FeatureSpec.infer(frame))
        info = artifact.log_model(estimator, spec, scoring.Reference.from_propensities(p),
                                  artifact.input_example(spec, parts.holdout), {"family": "logreg"},
                                  registered_model_name=name)
    version = str(info.registered_model_version)
    registry = Registry.current()
    registry.set_tags(name, version, {HOLDOUT_TAG: holdout_uri, **(tags or {}),
                                      **({SPLIT_TAG: describe(salt, holdout_fraction).to_json()} if stable else {})})
    if alias:
        registry.set_alias(name, alias, version)
    return version


BANK_SALT = "bank-salt"
BANK_HOLDOUT = 0.3
# Models of known quality on the fabricated frame (holdout ROC-AUC): every feature ≈ 0.79;
# emails_opened alone ≈ 0.71; age alone ≈ 0.52 (below the floor).
BANK_COLUMNS = {"strong": None, "weak": ["emails_opened"], "noise": ["age"],
                "no_clicks": ["emails_sent", "emails_opened", "product_views", "age", "region", "loyalty_tier"]}


class ModelBank:
    """Models fitted and logged ONCE per test session, in a store of their own, that any test
    registers as versions of its own registry in a fraction of a second (a model version from
    the logged model's folder; its stored holdout and split record as tags, as ``train``
    sets them). Every version of a kind is the same model; different kinds differ."""

    def __init__(self, root: Path, db_template: Path):
        self.root = root
        self.frame = training_frame(4000, seed=11, shift=1.0)
        self.uri = f"sqlite:///{root / 'bank.db'}"
        shutil.copyfile(db_template, root / "bank.db")
        self._logged: dict[str, tuple[str, str]] = {}

    def _log(self, kind: str) -> tuple[str, str]:
        import mlflow

        from cmle.model import artifact, fit, scoring
        from cmle.model.preprocess import FeatureSpec
        from cmle.stages.train import _holdout_columns

        if kind in self._logged:
            return self._logged[kind]
        frame, columns = self.frame, BANK_COLUMNS[kind]
        full = FeatureSpec.infer(frame)
        spec = full if columns is None else FeatureSpec(numeric=tuple(c for c in full.numeric if c in columns),
                                                        categorical=tuple(c for c in full.categorical if c in columns))
        parts = fit.split(frame, BANK_HOLDOUT, 0.2, 0, salt=BANK_SALT)
        params = {"family": "logreg", "C": 1.0, "transform": "log", "class_weight": None}
        estimator = fit.fit_calibrated(params, spec, (spec.prepare(parts.train), fit.labels(parts.train)),
                                       (spec.prepare(parts.valid), fit.labels(parts.valid)), 0)
        p = estimator.predict_proba(spec.prepare(parts.holdout))[:, 1]
        folder = self.root / kind
        folder.mkdir()
        holdout = folder / "holdout.parquet"
        _holdout_columns(parts.holdout, full).to_parquet(holdout, index=False)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            with mlflow.start_run(experiment_id="0", nested=False):
                info = artifact.log_model(estimator, spec, scoring.Reference.from_propensities(p),
                                          artifact.input_example(spec, parts.holdout), {"family": "logreg"})
                source = mlflow.artifacts.download_artifacts(info.model_uri)
        finally:
            mlflow.set_tracking_uri(previous)
        self._logged[kind] = (source, str(holdout))
        return self._logged[kind]

    def register(self, name: str, kind: str, alias: str | None = "challenger", tags: dict | None = None) -> str:
        """A new version of ``name`` in the current registry holding the ``kind`` model."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from cmle.model.holdout import describe
        from cmle.registry import Registry
        from cmle.stages.train import HOLDOUT_TAG, SPLIT_TAG

        source, holdout = self._log(kind)
        client = MlflowClient()
        try:
            client.create_registered_model(name)
        except MlflowException:
            pass
        all_tags = {HOLDOUT_TAG: holdout, SPLIT_TAG: describe(BANK_SALT, BANK_HOLDOUT).to_json(), **(tags or {})}
        version = str(client.create_model_version(name, source=source, tags=all_tags).version)
        if alias:
            Registry.current().set_alias(name, alias, version)
        return version


@pytest.fixture(scope="session")
def bank(tmp_path_factory, empty_mlflow_db) -> ModelBank:
    return ModelBank(tmp_path_factory.mktemp("model-bank"), empty_mlflow_db)
