"""The logged pyfunc: signature, outputs, batch independence, bad input, loading without cmle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from cmle.columns import OUTPUT_COLUMNS
from cmle.model import artifact
from cmle.model.preprocess import ModelInputError
from tests.model.fabricate import features, register_version, training_frame

NAME = "pyfunc_test_model"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """One registered version for the module (in its own store), downloaded to a folder."""
    from mlflow.artifacts import download_artifacts

    root = tmp_path_factory.mktemp("pyfunc")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the store's default artifact root is ./mlruns
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("pyfunc")
        version = register_version(NAME, training_frame(1500, seed=5))
        path = download_artifacts(f"models:/{NAME}/{version}", dst_path=str(root / "model"))
    return path


@pytest.fixture
def loaded(model_path):
    return mlflow.pyfunc.load_model(model_path)


def _rows(n: int = 400, seed: int = 9) -> pd.DataFrame:
    return features(n, seed).drop(columns=["userid", "snapshot_ts"])


def test_signature_has_inputs_and_outputs(loaded):
    sig = loaded.metadata.signature
    assert sig.inputs is not None and sig.outputs is not None
    inputs = {c.name: c.type.name for c in sig.inputs.inputs}
    assert inputs["emails_sent"] == "double" and inputs["region"] == "string"
    assert [c.name for c in sig.outputs.inputs] == list(OUTPUT_COLUMNS)


def test_logged_with_pinned_requirements_and_an_input_example(loaded, model_path):
    requirements = open(f"{model_path}/requirements.txt").read().split()
    assert requirements == artifact.pip_requirements()
    assert all("==" in r for r in requirements)
    assert loaded.metadata.saved_input_example_info is not None


def test_outputs_are_in_range_and_typed(loaded):
    rows = _rows()
    out = loaded.predict(artifact.conform_input(rows, loaded.metadata.get_input_schema()))
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == len(rows)
    assert out["propensity"].between(0, 1).all()
    assert out["score"].between(0, 100).all() and out["percentile"].between(1, 100).all()
    assert out["decile"].between(1, 10).all()
    expected = np.where(out["score"] < 25, "low", np.where(out["score"] >= 75, "high", "medium"))
    assert (out["bucket"] == expected).all()
    # higher propensity never gets a lower percentile
    ordered = out.sort_values("propensity")
    assert ordered["percentile"].is_monotonic_increasing and ordered["score"].is_monotonic_increasing


def test_a_rows_outputs_do_not_depend_on_its_batch(loaded):
    rows = artifact.conform_input(_rows(600), loaded.metadata.get_input_schema())
    whole = loaded.predict(rows)
    parts = pd.concat([loaded.predict(rows.iloc[i:i + 50]) for i in range(0, 600, 50)], ignore_index=True)
    one = pd.concat([loaded.predict(rows.iloc[[i]]) for i in (0, 17, 599)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, parts)
    pd.testing.assert_frame_equal(whole.iloc[[0, 17, 599]].reset_index(drop=True), one)


def test_missing_and_mistyped_columns_give_a_clear_error(loaded):
    rows = _rows(20)
    with pytest.raises(MlflowException, match=r"missing inputs \['age', 'region'\]"):
        loaded.predict(rows.drop(columns=["age", "region"]))
    bad = artifact.conform_input(rows, loaded.metadata.get_input_schema()).astype({"age": object})
    bad["age"] = "old"
    with pytest.raises(MlflowException, match="column age"):
        loaded.predict(bad)
    # the model object itself (no MLflow schema enforcement, e.g. called in-process)
    python_model = loaded.unwrap_python_model()
    with pytest.raises(ModelInputError, match="missing 1 feature column.*loyalty_tier"):
        python_model.predict(None, rows.drop(columns=["loyalty_tier"]))
    with pytest.raises(ModelInputError, match="age.*'old'"):
        python_model.predict(None, bad)


def test_int_counts_need_conforming_and_nulls_are_accepted(loaded):
    rows = _rows(30)
    with pytest.raises(MlflowException, match="int64 to float64"):
        loaded.predict(rows)  # MLflow refuses int64 for a double column
    rows.loc[rows.index[:3], ["region", "loyalty_tier", "age", "minutes_since_email_clicked"]] = None
    out = loaded.predict(artifact.conform_input(rows, loaded.metadata.get_input_schema()))
    assert out["propensity"].notna().all()


def test_the_model_loads_where_cmle_is_not_installed(model_path, tmp_path):
    """code_paths ship what the model needs: load and predict with the cmle package hidden."""
    path = model_path
    rows = _rows(5).astype({c: "float64" for c in ("emails_sent", "emails_opened", "emails_clicked",
                                                   "product_views")})
    rows.to_parquet(tmp_path / "rows.parquet")
    script = textwrap.dedent(f"""
        import json, sys
        sys.meta_path = [f for f in sys.meta_path if "editable" not in (getattr(f, "__module__", "") or "")]
        sys.path = [p for p in sys.path if p not in ("", ".") and "__editable__" not in p]
        sys.path_importer_cache.clear()
        try:
            import cmle
            raise SystemExit("cmle is importable: the test cannot hide it")
        except ImportError:
            pass
        import mlflow, pandas as pd
        model = mlflow.pyfunc.load_model({str(path)!r})
        out = model.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))
        import cmle
        print(json.dumps({{"cmle": cmle.__file__, "rows": len(out), "columns": list(out.columns)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cmle"].startswith(str(path)) and result["rows"] == 5
    assert result["columns"] == list(OUTPUT_COLUMNS)
