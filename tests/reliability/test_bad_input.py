"""Bad input, table-driven: config, parameters, data, registry, environment, names.

Every case runs a stage through the CLI (in this process, on a folder where a small `main`
has already run) and must exit non-zero with ONE line naming what is wrong, and no
traceback. At the end a good `main` runs on the same folder and finds everything as it was:
the bad runs left nothing half-written and the good run duplicates nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

from cmle import naming, storage
from cmle.cli import run_cli
from tests.reliability.helpers import TINY, leftovers, platform_state, registry_state

pytestmark = pytest.mark.slow

Setup = Callable[[Path, pytest.MonkeyPatch], Callable[[], None] | None]


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    match: str  # a fragment of the one error line
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None  # a config file's text (written as bad.ini and passed with --config)
    setup: Setup | None = None
    code: int = 2


def _newest_training_part(folder: Path) -> Path:
    landing = folder / ".cmle" / "platform" / "landing" / "cmle" / "egress"
    from cmle.platform.local import LocalPlatform

    plat = LocalPlatform(folder / ".cmle" / "platform")
    ds = plat.find_dataset(naming.training_set("cmle"))
    plat.close()
    newest = storage.newest_export(str(landing.parent.parent), "cmle/egress", ds.id)
    return Path(storage.part_files(newest.url)[0])


def corrupt_training_export(folder: Path, mp) -> Callable[[], None]:
    part = _newest_training_part(folder)
    original = part.read_bytes()
    part.write_bytes(b"PAR1 this is not parquet" + original[:100])
    return lambda: part.write_bytes(original)


def bad_score_run(folder: Path, mp) -> Callable[[], None]:
    scores = folder / ".cmle" / "platform" / "landing" / "cmle" / "ingress" / naming.scores_folder("cmle")
    run = scores / "exportTime=29990101000000"
    run.mkdir(parents=True)
    (run / "part-00000.parquet").write_bytes(b"not parquet at all")
    return lambda: shutil.rmtree(run)


def a_file_in_the_way(folder: Path, mp) -> Callable[[], None]:
    (folder / "afile").write_text("a file where a folder should be")
    return lambda: (folder / "afile").unlink()


def lock_held_by_another(folder: Path, mp) -> Callable[[], None]:
    lock = FileLock(str(folder / ".cmle" / "platform" / "locks" / f"run-{naming.owner_token('cmle')}.lock"))
    lock.acquire()
    return lock.release


CASES = [
    # --- configuration ---------------------------------------------------------------------
    Case("config-missing-file", ["cleanup", "--config", "missing.ini"], "missing.ini"),
    Case("config-unknown-section", ["cleanup"], "unknown section [Plaform]", config="[Plaform]\nowner = x\n"),
    Case("config-unknown-key", ["cleanup"], "[Platform] ownr: unknown key", config="[Platform]\nownr = x\n"),
    Case("config-malformed", ["cleanup"], "is malformed", config="owner = x\n"),
    Case("config-backend", ["cleanup"], "backend = 'azure' is not one of", env={"CMLE_PLATFORM_BACKEND": "azure"}),
    Case("config-timeout-text", ["cleanup"], "request_timeout = 'soon' is not a number",
         env={"CMLE_PLATFORM_REQUEST_TIMEOUT": "soon"}),
    Case("config-timeout-negative", ["cleanup"], "must be positive", env={"CMLE_PLATFORM_POLL_INTERVAL": "-1"}),
    Case("config-aep-without-credentials", ["cleanup"], "backend = aep needs",
         env={"CMLE_PLATFORM_BACKEND": "aep"}),
    Case("config-data-format", ["cleanup"], "data_format = 'xml' is not one of", env={"CMLE_CLOUD_DATA_FORMAT": "xml"}),
    Case("config-compression", ["cleanup"], "compression_type = 'lz4'", env={"CMLE_CLOUD_COMPRESSION_TYPE": "lz4"}),
    Case("config-export-path-absolute", ["cleanup"], "export_path = '/abs' must be a relative folder",
         env={"CMLE_CLOUD_EXPORT_PATH": "/abs"}),
    Case("config-import-path-up", ["cleanup"], "import_path = '../up'", env={"CMLE_CLOUD_IMPORT_PATH": "../up"}),
    Case("config-mlruns-file-store", ["cleanup"], "refuses the file store",
         env={"CMLE_MLFLOW_TRACKING_URI": "./mlruns"}),
    Case("config-qs-sslmode", ["cleanup"], "qs_sslmode = 'maybe'", env={"CMLE_PLATFORM_QS_SSLMODE": "maybe"}),
    # --- names -------------------------------------------------------------------------------
    Case("name-owner-spaces", ["cleanup"], "owner = 'a b' must be", env={"CMLE_PLATFORM_OWNER": "a b"}),
    Case("name-owner-punctuation", ["cleanup"], "owner = 'x(y)' must be", env={"CMLE_PLATFORM_OWNER": "x(y)"}),
    Case("name-tenant", ["cleanup"], "tenant_id = 'x-y' must be", env={"CMLE_PLATFORM_TENANT_ID": "x-y"}),
    Case("name-sandbox", ["cleanup"], "sandbox_name = 'my sandbox!'", env={"CMLE_PLATFORM_SANDBOX_NAME": "my sandbox!"}),
    Case("name-model-spaces", ["train"], "model_name = 'my model' must be", env={"CMLE_CLOUD_MODEL_NAME": "my model"}),
    Case("name-model-slash", ["train"], "model_name = 'team/model' is not a valid registered model name",
         env={"CMLE_CLOUD_MODEL_NAME": "team/model"}),
    Case("name-unknown-stage", ["deploy-all"], "unknown stage 'deploy-all'"),
    # --- parameters ----------------------------------------------------------------------------
    Case("param-unknown", ["train", "--max_evalz", "3"], "unrecognized arguments: --max_evalz"),
    Case("param-profiles-zero", ["synthetic", "--profiles", "0"], "profiles = 0 must be at least 1"),
    Case("param-profiles-text", ["synthetic", "--profiles", "many"], "profiles = 'many' is not a valid int"),
    Case("param-weeks-too-many", ["synthetic", "--weeks", "100000000"], "weeks = 100000000 is above"),
    Case("param-end-date", ["synthetic", "--end_date", "yesterday"], "end_date"),
    Case("param-end-date-overflow", ["synthetic", "--end_date", "0001-01-02"], "out of range"),
    Case("param-seed-negative", ["synthetic", "--seed", "-5"], "seed = -5 must be at least 0"),
    Case("param-bool", ["synthetic", "--legacy", "perhaps"], "legacy = 'perhaps' is not a valid bool"),
    Case("param-snapshot", ["featurize", "--snapshot_date", "last week"], "snapshot_date = 'last week' is not a date"),
    Case("param-snapshot-after-data", ["featurize", "--snapshot_date", "2030-01-01"], "ends after the data"),
    Case("param-lookback-overflow", ["featurize", "--lookback_days", "100000000"], "out of range"),
    Case("param-windows", ["featurize", "--windows", "7,a"], "windows = '7,a' must be whole days"),
    Case("param-null-rate", ["featurize", "--max_null_rate", "2", "--rebuild", "true"], "max_null_rate = 2.0"),
    Case("param-framing", ["featurize", "--framing", "future"], "framing = 'future' is not one of"),
    Case("param-export-sets", ["export", "--sets", "everything"], "sets = 'everything' is not one of"),
    Case("param-metric", ["train", "--metric", "accuracy"], "metric = 'accuracy' is not one of"),
    Case("param-families", ["train", "--families", "svm"], "svm"),
    Case("param-fractions", ["train", "--holdout_fraction", "0.7", "--validation_fraction", "0.5"], "fraction"),
    Case("param-max-evals", ["train", "--max_evals", "-1"], "max_evals = -1 must be at least 0"),
    Case("param-tune-rows", ["train", "--max_tune_rows", "1"], "max_tune_rows = 1 is too few rows"),
    Case("param-promote-mode", ["promote", "--mode", "yolo"], "mode = 'yolo' is not one of"),
    Case("param-min-auc", ["promote", "--min_auc", "1.5"], "min_auc"),
    Case("param-batch-rows", ["score", "--batch_rows", "0"], "batch_rows = 0 must be at least 1"),
    Case("param-rules", ["audience", "--rules", "vip"], "vip"),
    Case("param-fields", ["audience", "--fields", "propensity,salary"], "salary"),
    Case("param-destination", ["audience", "--destination", "local-file"],
         "destination 'local-file' does not exist on the embedded platform"),
    Case("param-skip", ["main", "--skip", "explroe"], "skip names unknown stages ['explroe']"),
    Case("param-factors", ["score", "--factors", "-1"], "factors = -1 must be at least 0"),
    Case("param-factor-rule", ["audience", "--rules", "a:bucket:high:factor=x y"], "factor= takes feature"),
    Case("param-retrain", ["train", "--retrain", "sometimes"], "retrain = 'sometimes' is not one of"),
    Case("param-extend", ["synthetic", "--extend_weeks", "1", "--shift_events", "20"], "shift_events = 20.0"),
    Case("config-monitor-levels", ["monitor"], "psi_warn = 0.5 must be below psi_alert = 0.25",
         config="[Monitor]\npsi_warn = 0.5\n"),
    Case("config-monitor-rule", ["monitor"], "retrain_violations = 4 (N) cannot exceed",
         config="[Monitor]\nretrain_violations = 4\n"),
    Case("data-monitor-no-score-run", ["monitor", "--export_time", "20000101000000"],
         "no score run at exportTime=20000101000000"),
    # --- registry --------------------------------------------------------------------------------
    Case("registry-version-missing", ["score", "--model", "99"], "has no version 99"),
    Case("registry-alias-missing", ["score", "--model", "staging"], "has no alias 'staging'"),
    Case("registry-model-missing", ["promote"], "does not exist", env={"CMLE_CLOUD_MODEL_NAME": "nobody_model"}),
    Case("registry-gate-refuses-first-model", ["main", *TINY[:-4], "--min_auc", "0.99", "--skip", "explore"],
         "the promotion gate refused challenger v1", env={"CMLE_CLOUD_MODEL_NAME": "strict_model"}),
    Case("param-gate-metrics", ["promote", "--metrics", "roc_auc,f1"], "metrics: unknown metric 'f1'"),
    Case("param-gate-confidence", ["promote", "--confidence", "0.3"], "confidence = 0.3"),
    Case("param-label-band", ["train", "--min_label_rate", "0.5", "--max_label_rate", "0.1"], "min_label_rate"),
    Case("registry-nothing-to-approve", ["approve", "--reason", "fine"], "no version of cmle_propensity_model "
         "awaits approval"),
    Case("registry-rollback-first-champion", ["promote", "--rollback"], "v1 was the first champion"),
    Case("env-webhook-local-store", ["webhook", "--url", "https://hooks.example.com/cmle"], "fires no webhooks",
         env={"CMLE_WEBHOOK_SECRET": "x"}),
    # --- data ----------------------------------------------------------------------------------------
    Case("data-corrupt-export", ["train", "--retrain", "true", "--max_evals", "2", "--families", "logreg",
                                 "--framing", "pit"], "is not a readable Parquet file",
         setup=corrupt_training_export),
    Case("data-corrupt-score-file", ["ingest"], "is not a readable Parquet file", setup=bad_score_run),
    Case("data-no-score-run", ["ingest", "--export_time", "20000101000000"], "no score run at exportTime=20000101000000"),
    # --- environment -------------------------------------------------------------------------------
    Case("env-platform-folder", ["featurize"], "local_root",
         env={"CMLE_PLATFORM_LOCAL_ROOT": "afile/platform"}, setup=a_file_in_the_way),
    Case("env-storage-folder", ["export", "--force", "true"], "afile",
         env={"CMLE_CLOUD_STORAGE_URL": "afile/landing"}, setup=a_file_in_the_way),
    Case("env-tracking-folder", ["cleanup"], "does not exist", env={"CMLE_MLFLOW_TRACKING_URI": "sqlite:///no/such/dir/m.db"}),
    Case("env-tracking-unreachable", ["cleanup"], "is unreachable", env={"CMLE_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("env-log-file", ["cleanup", "--log-file", "no/such/dir/cmle.log"], "cannot write the log file"),
    Case("env-busy", ["cleanup"], "holds", env={"CMLE_PLATFORM_LOCK_WAIT": "0.5"}, setup=lock_held_by_another),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder where a small `main` ran; its state before the bad runs."""
    folder = tmp_path_factory.mktemp("badinput")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("CMLE_", "MLFLOW_RUN_ID",
                                                                             "MLFLOW_TRACKING_URI"))}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert run_cli("main", TINY) == 0
    finally:
        os.chdir(cwd)
        os.environ.update(saved)
    return folder, _state(folder)


def _state(folder: Path) -> dict:
    return {"leftovers": leftovers(folder), **platform_state(folder / ".cmle" / "platform"),
            **registry_state(folder / "mlflow.db")}


def test_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, project, monkeypatch, capsys):
    folder = project[0]
    for key in list(os.environ):
        if key.startswith(("CMLE_", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(folder)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    argv = list(case.argv)
    if case.config is not None:
        (folder / "bad.ini").write_text(case.config)
        argv += ["--config", "bad.ini"]
    undo = case.setup(folder, monkeypatch) if case.setup else None
    capsys.readouterr()
    try:
        code = run_cli(argv[0], argv[1:])
    finally:
        if undo:
            undo()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"cmle {argv[0]}: error:")]
    assert code == case.code, err[-2000:]
    assert len(errors) == 1, err[-2000:]
    assert case.match in errors[0], errors[0]
    assert "Traceback" not in err and "internal error" not in err
    assert leftovers(folder) == [], "a bad run left something half-written"


def test_a_good_run_afterwards_works_and_duplicates_nothing(project, monkeypatch):
    folder, before = project
    for key in list(os.environ):
        if key.startswith(("CMLE_", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(folder)
    assert run_cli("main", TINY) == 0
    assert _state(folder) == before
