"""`main` killed (SIGKILL) at many points and re-run ends exactly where an uninterrupted run
ends; two `main` at once on a fresh and on an existing folder finish without duplicates; and
a recognisable fake secret appears nowhere a run writes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.reliability.helpers import TINY, ForkServer, clean_env, newest_scores, start_cmle, state

pytestmark = pytest.mark.slow

SECRET = "fake-Secret-4f9Zq-do-not-leak"
# In pipeline order: each killed run resumes what the previous one left, then dies further on.
KILL_POINTS = [
    "batch.uploaded",           # synthetic: the events batch is loading, files uploaded
    "stage.synthetic.done",
    "stage.featurize.done",
    "export_folder.written",    # export: the parts written into a hidden folder, not published
    "register.logged",          # train: model logged, no version yet
    "register.created",         # train: version created, no alias yet
    "promote.recorded",         # promote: decision recorded as pending, alias not moved
    "promote.moved",            # promote: alias moved, decision still pending
    "export_folder.written",    # score: score parts written, not published
    "batch.uploaded",           # ingest: the scores batch is loading
    "stage.audience.done",
]


@pytest.fixture(scope="module")
def forks():
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, forks):
    """An uninterrupted `main`, run with a fake client secret in the environment and a log file."""
    folder = tmp_path_factory.mktemp("reference")
    env = clean_env(CMLE_AUTHENTICATION_CLIENT_SECRET=SECRET, CMLE_AUTHENTICATION_CLIENT_ID="fake-client")
    rc, out, err = forks.run(folder, ["main", *TINY, "--log-file", str(folder / "cmle.log")], env)
    assert rc == 0, err[-3000:]
    return folder, out, err


def assert_same_end(got: dict, want: dict) -> None:
    assert got["leftovers"] == [], got["leftovers"]
    for key in ("datasets", "audiences", "kinds", "versions", "aliases"):
        assert got[key] == want[key], key
    assert got["fingerprinted"] and got["pending"] == []


def test_killed_main_resumes_to_the_state_of_an_uninterrupted_run(reference, forks, tmp_path):
    ref_folder = reference[0]
    want = state(ref_folder)
    assert want["versions"] == ["1"] and want["aliases"] == {"challenger": "1", "champion": "1"}
    folder = tmp_path / "killed"
    for point in KILL_POINTS:
        rc, _, err = forks.run(folder, ["main", *TINY], clean_env(CMLE_FAILPOINT=point))
        assert rc == -9, f"main was to be killed at {point}, it ended {rc}:\n{err[-3000:]}"
    started = time.monotonic()
    rc, _, err = forks.run(folder, ["main", *TINY], clean_env())
    assert rc == 0, err[-3000:]
    assert time.monotonic() - started < 120, "the re-run waited on something the killed runs left"
    logs = "".join(p.read_text() for p in sorted(folder.glob("fork*.err")))
    assert logs.count("aborting it") >= 2  # the loading batches of the runs killed while loading
    assert_same_end(state(folder), want)
    pd.testing.assert_frame_equal(newest_scores(folder), newest_scores(ref_folder))
    # the killed runs are no longer shown as running
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert sum(r.info.status == "KILLED" for r in runs) >= len(KILL_POINTS)


def _two_at_once(folder: Path, env: dict) -> list[tuple[int, str]]:
    procs = [start_cmle(folder, ["main", *TINY], env, tag=f"concurrent{i}") for i in (1, 2)]
    codes = [p.wait(timeout=600) for p in procs]
    return [(c, (folder / f"concurrent{i}.err").read_text()) for i, c in zip((1, 2), codes)]


def test_two_mains_at_once_on_a_fresh_and_on_an_existing_folder(reference, tmp_path):
    want = state(reference[0])
    fresh = tmp_path / "fresh"
    results = _two_at_once(fresh, clean_env())
    for code, err in results:
        assert code == 0, err[-3000:]
    assert any("waiting for cmle main" in err for _, err in results), "the second run waits for the first"
    assert_same_end(state(fresh), want)

    existing = tmp_path / "existing"
    shutil.copytree(reference[0], existing, ignore=shutil.ignore_patterns("*.out", "*.err", "*.log"))
    results = _two_at_once(existing, clean_env())
    for code, err in results:
        assert code == 0, err[-3000:]
    assert_same_end(state(existing), want)


def test_a_fake_secret_appears_nowhere(reference):
    folder, out, err = reference
    assert "client_secret" not in err or SECRET not in err
    places = [("stdout", out), ("stderr", err)]
    places += [(str(p.relative_to(folder)), p.read_bytes().decode("latin-1")) for p in folder.rglob("*")
               if p.is_file()]
    assert len(places) > 20 and any(name == "cmle.log" for name, _ in places)
    assert [name for name, text in places if SECRET in text] == []
