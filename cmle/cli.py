"""Command line: ``cmle <stage> [--param value ...]`` and one ``cmle-<stage>`` script per stage.

The ``MLproject`` entry points (``entrypoints/*.py``) and the Databricks wheel tasks call
these same functions. A user mistake (:class:`cmle.errors.CmleError`) prints one clear
message and exits 2; the MLflow run is marked FAILED.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from cmle import redact
from cmle.config import load_settings
from cmle.errors import CmleError
from cmle.stages import ALL_STAGES, Stage, get_stage

log = logging.getLogger("cmle")


# Job parameters of the Databricks job that are no stage's parameter (databricks.yml).
JOB_ONLY_PARAMETERS = ("synthetic",)
_OTHER = "_other__"


def other_parameters(stage: Stage) -> list[str]:
    """Parameters of the other stages (and of the Databricks job) that ``stage`` accepts and ignores.

    Databricks pushes every job parameter down to every Python wheel task as ``--name=value``;
    accepting the pipeline's parameters everywhere lets a run set, say, ``min_positives`` or
    ``spec`` without the tasks that do not use them refusing the run. Unknown names (typos)
    are still refused."""
    own = {p.name for p in stage.params} | {"config"}
    names = {p.name for s in ALL_STAGES for p in get_stage(s).params} | set(JOB_ONLY_PARAMETERS)
    return sorted(names - own)


def _parser(stage: Stage, prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=stage.help,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="", help="config file (default: $CMLE_CONFIG or conf/config.ini)")
    for p in stage.params:
        flags = sorted({f"--{p.name}", f"--{p.name.replace('_', '-')}"})
        parser.add_argument(*flags, dest=p.name, default=None, metavar=p.type.__name__.upper(),
                            help=f"{p.help} (default: {p.default!r})")
    for name in other_parameters(stage):
        parser.add_argument(f"--{name}", dest=_OTHER + name, default=None, help=argparse.SUPPRESS)
    return parser


def run_cli(name: str, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` for stage ``name``, run it, print its outputs as JSON; return the exit code."""
    redact.install()
    logging.getLogger().setLevel(logging.INFO)
    try:
        stage = get_stage(name)
        args = _parser(stage, f"cmle {name}").parse_args(argv)
        ignored = sorted(k[len(_OTHER):] for k, v in vars(args).items() if k.startswith(_OTHER) and v is not None)
        if ignored:
            log.info("cmle %s: not its parameters, ignored: %s", name, ", ".join(ignored))
        params = {p.name: getattr(args, p.name) for p in stage.params if getattr(args, p.name) is not None}
        # empty strings from MLproject defaults mean "use the default"
        params = {k: v for k, v in params.items() if not (isinstance(v, str) and v == "" and
                                                         stage.param(k).type is not str)}
        settings = load_settings(args.config or None)
        from cmle.runner import run_stage

        outputs = run_stage(name, settings, params)
    except CmleError as exc:
        print(f"cmle {name}: error: {redact.scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cmle {name}: interrupted", file=sys.stderr)
        return 130
    print(redact.scrub(json.dumps(outputs, indent=2, default=str, sort_keys=True)))
    return 0


def entrypoint(name: str) -> None:
    """Run a stage from ``sys.argv`` and exit with its code (for scripts and wheel tasks)."""
    sys.exit(run_cli(name, sys.argv[1:]))


def main(argv: Sequence[str] | None = None) -> None:
    """``cmle <stage> ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: cmle <stage> [--param value ...]\n\nstages: " + ", ".join(ALL_STAGES) +
              "\n\n`cmle <stage> --help` lists a stage's parameters.")
        sys.exit(0 if argv else 2)
    sys.exit(run_cli(argv[0], argv[1:]))


def _script(name: str):
    def run() -> None:
        entrypoint(name)

    run.__name__ = name
    run.__doc__ = f"Console script for stage {name}."
    return run


synthetic = _script("synthetic")
explore = _script("explore")
featurize = _script("featurize")
export = _script("export")
train = _script("train")
promote = _script("promote")
score = _script("score")
ingest = _script("ingest")
audience = _script("audience")
main_pipeline = _script("main")
load = _script("load")
cleanup = _script("cleanup")
deploy = _script("deploy")
