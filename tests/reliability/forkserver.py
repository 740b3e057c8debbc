"""A process that imports cmle once and forks one child per `cmle` command it is sent.

The kill-and-resume test runs `main` a dozen times, each killed with SIGKILL somewhere; a
fresh interpreter per run would spend most of the test importing MLflow, pandas and
scikit-learn. Each request (one JSON line on stdin: cwd, env, argv, stdout and stderr
files) forks a child that runs :func:`cmle.cli.run_cli` exactly as the console script
does; the answer is one JSON line with the child's exit code (-9 when it was killed).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import cmle.cli  # noqa: E402
from cmle.stages import ALL_STAGES, get_stage  # noqa: E402

for _name in ALL_STAGES:  # import every stage module (and what it imports) before forking
    get_stage(_name)
import mlflow.pyfunc  # noqa: E402,F401
import sklearn.linear_model  # noqa: E402,F401


def _child(req: dict) -> None:
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    code = 1
    try:
        code = cmle.cli.run_cli(req["argv"][0], req["argv"][1:])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
