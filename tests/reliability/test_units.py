"""The pieces behind the reliability guarantees, one by one: holders, sweeps, ownership,
promotion order, the gate in `main`, content-keyed training, the non-finite policy, the
CLI's help and warnings."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cmle import holder, ingestion, naming, storage
from cmle.cli import run_cli
from cmle.config import load_settings
from cmle.errors import ConfigError, PlatformError, RegistryError
from cmle.model.preprocess import FeatureSpec
from cmle.platform.base import PROFILE
from cmle.platform.local import LocalPlatform
from cmle.registry import CHALLENGER, CHAMPION, Registry
from cmle.stages import pipeline
from cmle.stages.promote import promote
from cmle.stages.train import content_fingerprint
from tests.model.fabricate import empty_mlflow_db, register_version, store, training_frame  # noqa: F401


def dead_holder() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{holder.this_process().split('/')[0]}/{proc.pid}/1"


# --- holders ---------------------------------------------------------------------------------
def test_holder_tells_live_from_dead_and_unknown():
    assert holder.is_alive(holder.this_process()) is True
    assert holder.is_alive(dead_holder()) is False
    assert holder.is_alive("otherhost/1/1") is None and holder.is_alive("") is None
    host, pid, start = holder.parse(holder.this_process())
    assert holder.is_alive(f"{host}/{pid}/{int(start) + 1}") is False or pid == os.getpid()


# --- the embedded platform: abandoned batches, temp files, ownership, destinations ------------------
def _profiles(platform, owner="cmle"):
    fg = platform.get_or_create_field_group(naming.profile_field_group(owner), {"userid": "string"}, PROFILE)
    schema = platform.get_or_create_schema(naming.profile_schema(owner), PROFILE, [fg])
    return platform.get_or_create_dataset(naming.profiles_dataset(owner), schema)


def _table(n: int) -> pa.Table:
    return pa.table({"_cmle": pa.array([{"userid": f"u{i}"} for i in range(n)],
                                       pa.struct([("userid", pa.string())]))})


def test_a_dead_runs_loading_batch_and_temp_files_are_swept(tmp_path):
    plat = LocalPlatform(tmp_path / "p", owner="cmle")
    ds = _profiles(plat)
    stale = plat.create_batch(ds.id, {ingestion.KEY_TAG: "k", ingestion.HOLDER_TAG: dead_holder()})
    plat.upload_file(stale, ds.id, "part-00000.parquet", ingestion.parquet_bytes(_table(2)))
    live = plat.create_batch(ds.id, {ingestion.KEY_TAG: "other"})
    dead_tmp = tmp_path / "p" / "staging" / f"put-{dead_holder().replace('/', '~')}~abcd.parquet"
    dead_tmp.write_bytes(b"x")
    plat.close()
    again = LocalPlatform(tmp_path / "p", owner="cmle")  # opening the platform sweeps
    assert again.get_batch(stale).status == "aborted" and again.get_batch(live).status == "loading"
    assert sorted(p.name for p in (tmp_path / "p" / "staging").iterdir()) == [live]
    with pytest.raises(PlatformError, match="only a loading batch can be completed"):
        again.complete_batch(stale)
    result = ingestion.ingest_tables(again, ds.id, [_table(3)], key="k", timeout_s=5)
    assert result.batch.records == 3 and not result.reused


def test_partial_export_folders_of_dead_writers_are_removed(tmp_path):
    root = str(tmp_path / "landing")
    folder = storage.dataset_folder(root, "cmle/ingress", "scores")
    os.makedirs(folder)
    dead = os.path.join(folder, f".tmp-20240101000000-{dead_holder().replace('/', '~')}~abcd1234")
    alive = os.path.join(folder, f".tmp-20240101000001-{holder.this_process().replace('/', '~')}~abcd1234")
    for d in (dead, alive):
        os.makedirs(d)
    assert storage.list_exports(root, "cmle/ingress", "scores") == []
    assert not os.path.exists(dead) and os.path.exists(alive)


def test_another_owners_resource_is_never_reused_or_cleaned(tmp_path):
    a = LocalPlatform(tmp_path / "p", owner="alice")
    ds = _profiles(a, "alice")
    b = LocalPlatform(tmp_path / "p", owner="bob")
    with pytest.raises(PlatformError, match="belongs to owner 'alice'"):
        b.get_or_create_dataset(ds.name, ds.schema_id)
    owners = {r.name: r.owner for r in b.list_resources()}
    assert owners[ds.name] == "alice"


def test_the_embedded_platform_refuses_unknown_destinations(tmp_path):
    plat = LocalPlatform(tmp_path / "p")
    plat.check_destination("local-files")
    with pytest.raises(PlatformError, match="does not exist on the embedded platform"):
        plat.check_destination("local_files")


# --- promotion order and the gate in main -------------------------------------------------------
@pytest.fixture(scope="module")
def frame():
    return training_frame(3000, seed=11, shift=1.0)


def test_a_killed_promotion_leaves_a_pending_record_that_the_next_run_settles(store, settings, frame, ctx):
    name = settings.cloud.model_name
    v1 = register_version(name, frame)
    registry = Registry.current()
    # as a kill after "record pending" and before the alias moved leaves it
    registry.record_promotion(name, v1, {"time": "2024-01-01T00:00:00+00:00", "status": "passed",
                                         "state": "pending", "version": v1, "promoted": True})
    assert "promotion" not in (registry.version(name, v1).description or "")
    out = promote(ctx, min_auc=0.5)
    assert out["promoted"] and registry.aliases(name)[CHAMPION] == v1
    states = [r["state"] for r in registry.promotion_history(name)]
    assert states == ["interrupted", "done"]


def test_main_stops_without_a_champion_and_goes_on_with_one(caplog):
    refused = {"status": "failed", "promoted": False, "challenger_version": "2", "model_name": "m",
               "reason": "ROC-AUC 0.55 is below the floor 0.6", "mode": "enabled"}
    with pytest.raises(RegistryError, match="refused challenger v2 .*below the floor 0.6.*min_auc"):
        pipeline._after_gate({**refused, "champion_version": None}, {"min_auc": 0.6}, [])
    with caplog.at_level(logging.WARNING):
        pipeline._after_gate({**refused, "champion_version": "1"}, {"min_auc": 0.6}, [])
    assert "going on with the existing champion v1" in caplog.text


# --- training keyed on content ------------------------------------------------------------------
def test_the_content_fingerprint_ignores_row_order_and_sees_values():
    df = training_frame(300, seed=1)
    assert content_fingerprint(df) == content_fingerprint(df.sample(frac=1, random_state=3))
    changed = df.copy()
    changed.iloc[0, changed.columns.get_loc("age")] += 1
    assert content_fingerprint(changed) != content_fingerprint(df)


# --- the non-finite policy ------------------------------------------------------------------------
def test_infinities_are_missing_values_with_a_count_in_the_log(caplog):
    frame = pd.DataFrame({"a": [1.0, np.inf, -np.inf, np.nan], "b": ["x", "y", None, "x"]})
    spec = FeatureSpec(numeric=("a",), categorical=("b",))
    with caplog.at_level(logging.WARNING):
        out = spec.prepare(frame)
    assert out["a"].isna().tolist() == [False, True, True, True]
    assert "2 non-finite feature value(s)" in caplog.text and "a 2" in caplog.text


def test_training_and_scoring_treat_infinities_alike(store, frame):
    import mlflow

    version = register_version("inf_model", frame)
    model = mlflow.pyfunc.load_model(f"models:/inf_model/{version}")
    rows = frame.drop(columns=["label"]).head(50).copy()
    col = next(c for c in FeatureSpec.infer(frame).numeric)
    as_inf, as_nan = rows.copy(), rows.copy()
    as_inf[col] = np.inf
    as_nan[col] = np.nan
    from cmle.model.artifact import conform_input

    schema = model.metadata.get_input_schema()
    got = model.predict(conform_input(as_inf, schema))
    want = model.predict(conform_input(as_nan, schema))
    assert np.isfinite(got["propensity"]).all()
    pd.testing.assert_series_equal(got["propensity"], want["propensity"])


# --- the CLI ----------------------------------------------------------------------------------------------
def test_help_prints_each_default_once(capsys):
    with pytest.raises(SystemExit):
        run_cli("train", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(default: 'sigmoid')") == 1 and "(default: None)" not in text


def test_a_misspelt_environment_variable_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        load_settings(env={"CMLE_PLATFORM_OWNR": "x", "CMLE_PLATFORM_OWNER": "y"})
    assert "CMLE_PLATFORM_OWNR is not a cmle setting" in caplog.text and "CMLE_PLATFORM_OWNER?" in caplog.text


def test_a_client_secret_in_a_config_file_is_warned_about_outside_databricks(tmp_path, caplog):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[Authentication]\nclient_secret = s3cr3t-value\n")
    with caplog.at_level(logging.WARNING):
        load_settings(cfg, env={})
    assert "client_secret is set in a config file" in caplog.text and "s3cr3t-value" not in caplog.text
    with pytest.raises(ConfigError, match="on Databricks secrets are not read from files"):
        load_settings(cfg, env={"DATABRICKS_RUNTIME_VERSION": "15.4"})  # refused there, not just warned


def test_a_bug_keeps_its_traceback(tmp_cwd, capsys, monkeypatch):
    from cmle.stages import cleanup as cleanup_stage

    def boom(ctx, dry_run=False):
        raise KeyError("internal")

    monkeypatch.setattr("cmle.runner.get_stage", lambda name: type(cleanup_stage.STAGE)(
        name="cleanup", func=boom, params=cleanup_stage.STAGE.params))
    assert run_cli("cleanup", []) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err and "This is a bug" in err


def test_re_exporting_unchanged_data_trains_nothing_new(store, platform, settings, frame):
    from cmle.runner import run_stage
    from tests.model.fabricate import arrow

    ds = platform.put_table(naming.training_set(settings.platform.owner), arrow(frame))
    platform.export_dataset(ds.id, settings.cloud.export_path)
    quick = {"max_evals": 1, "families": "logreg", "framing": "pit"}
    first = run_stage("train", settings, quick)
    import time

    time.sleep(1.1)  # a later export time
    again_url = platform.export_dataset(ds.id, settings.cloud.export_path).url
    second = run_stage("train", settings, quick)
    assert again_url != first["training_export"]
    assert second["reused"] is True and second["model_version"] == first["model_version"]
    versions = Registry.current().versions(settings.cloud.model_name)
    assert len(versions) == 1 and "cmle.fingerprint" in versions[0].tags
    assert Registry.current().aliases(settings.cloud.model_name) == {CHALLENGER: first["model_version"]}


def test_all_tuning_trials_failing_is_one_clear_error(monkeypatch):
    from cmle.errors import DataCheckError
    from cmle.model import space, tuning

    def broken(*args, **kwargs):
        raise ValueError("This solver needs samples of at least 2 classes")

    monkeypatch.setattr(space, "build_estimator", broken)
    df = training_frame(200, seed=2)
    spec = FeatureSpec.infer(df)
    xy = (spec.prepare(df), df["label"].to_numpy())
    with pytest.raises(DataCheckError, match="all 2 tuning trials failed; first error: ValueError: This solver"):
        tuning.tune(xy, xy, spec, ("logreg",), max_evals=2, seed=0, log_runs=False)
