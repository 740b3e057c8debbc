"""A stage run whose process is gone is marked KILLED by the next stage; live ones are left."""

import mlflow

from cmle import holder
from cmle.runner import HOLDER_TAG, end_abandoned_runs


def _running(client, experiment_id: str, who: str) -> str:
    run = client.create_run(experiment_id, tags={HOLDER_TAG: who})
    return run.info.run_id


def test_only_runs_of_processes_that_are_gone_are_ended(mlflow_store):
    client = mlflow.MlflowClient()
    exp = client.create_experiment("abandoned")
    host = holder.this_process().split("/")[0]
    gone = _running(client, exp, f"{host}/999999999/1")  # no such pid
    alive = _running(client, exp, holder.this_process())
    elsewhere = _running(client, exp, "another-host/1/1")
    untagged = client.create_run(exp).info.run_id
    assert end_abandoned_runs(exp) == [gone]
    status = {r: client.get_run(r).info.status for r in (gone, alive, elsewhere, untagged)}
    assert status == {gone: "KILLED", alive: "RUNNING", elsewhere: "RUNNING", untagged: "RUNNING"}
