"""Command line: ``cmle <stage> [--param value ...]`` and one ``cmle-<stage>`` script per stage.

The ``MLproject`` entry points (``entrypoints/*.py``) and the Databricks wheel tasks call
these same functions. A user mistake (:class:`cmle.errors.CmleError`) prints one clear
message and exits 2; the MLflow run is marked FAILED.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from typing import Sequence

from cmle import redact
from cmle.config import load_settings
from cmle.errors import EnvironmentFault, ParameterError, as_user_error
from cmle.stages import ALL_STAGES, Stage, get_stage

log = logging.getLogger("cmle")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one :class:`ParameterError` line like every other."""

    def error(self, message: str):
        raise ParameterError(f"{message} (`{self.prog} --help` lists the parameters)")


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
    # Each help text states its default once (no ArgumentDefaultsHelpFormatter on top).
    parser = _Parser(prog=prog, description=stage.help)
    parser.add_argument("--config", default="", help="config file (default: $CMLE_CONFIG or conf/config.ini)")
    parser.add_argument("--verbose", action="store_true",
                        help="debug logging, and the traceback of every error (user mistakes too)")
    parser.add_argument("--log-file", "--log_file", dest="log_file", default=None, metavar="PATH",
                        help="also write the log, with the traceback of any error, to PATH (default: $CMLE_LOG_FILE)")
    for p in stage.params:
        flags = sorted({f"--{p.name}", f"--{p.name.replace('_', '-')}"})
        # a bool flag alone means true (`cmle promote --rollback`); with a value, that value
        extra = {"nargs": "?", "const": "true"} if p.type is bool else {}
        parser.add_argument(*flags, dest=p.name, default=None, metavar=p.type.__name__.upper(),
                            help=f"{p.help} (default: {p.default!r})", **extra)
    for name in other_parameters(stage):
        parser.add_argument(f"--{name}", dest=_OTHER + name, default=None, help=argparse.SUPPRESS)
    return parser


def run_cli(name: str, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` for stage ``name``, run it, print its outputs as JSON; return the exit code."""
    redact.install()
    logging.getLogger().setLevel(logging.INFO)
    verbose, log_file = False, None
    try:
        stage = get_stage(name)
        args = _parser(stage, f"cmle {name}").parse_args(argv)
        verbose = args.verbose
        log_file = _log_to_file(args.log_file or os.environ.get("CMLE_LOG_FILE") or None, verbose)
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
    except KeyboardInterrupt:
        print(f"cmle {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends here: one line for the user, or a bug report
        return _report(name, exc, verbose, log_file)
    text = stage.render(outputs) if stage.render else json.dumps(outputs, indent=2, default=str, sort_keys=True)
    print(redact.scrub(text))
    return 0


def _log_to_file(path: str | None, verbose: bool) -> str | None:
    """Send the log (and error tracebacks) to ``path`` as well; return it."""
    root = logging.getLogger()
    if verbose:
        root.setLevel(logging.DEBUG)
        for noisy in ("urllib3", "alembic", "sqlalchemy", "matplotlib", "git", "filelock", "py4j"):
            logging.getLogger(noisy).setLevel(logging.INFO)
    if not path:
        return None
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise EnvironmentFault(f"cannot write the log file {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redact.RedactingFilter())
    root.addHandler(handler)
    return path


def _report(name: str, exc: Exception, verbose: bool, log_file: str | None) -> int:
    """One line for a user mistake or an environment fault (its traceback only with --verbose
    or in the log file); the traceback and a line for a bug. Returns the exit code."""
    user_error = as_user_error(exc)
    trace = redact.scrub("".join(traceback.format_exception(exc)))
    if log_file:
        log.error("cmle %s failed:\n%s", name, trace)
    if user_error is None:
        print(trace, file=sys.stderr, end="")
        print(f"cmle {name}: internal error: {redact.scrub(_first_line(exc))}. This is a bug in cmle, not in your "
              "input: please report it with the traceback above", file=sys.stderr)
        return 1
    if verbose:
        print(trace, file=sys.stderr, end="")
    print(f"cmle {name}: error: {redact.scrub(_first_line(user_error))}", file=sys.stderr)
    return user_error.exit_code


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # one line, whatever the message held
    return text or type(exc).__name__


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
monitor = _script("monitor")
main_pipeline = _script("main")
load = _script("load")
cleanup = _script("cleanup")
deploy = _script("deploy")
approve = _script("approve")
history = _script("history")
webhook = _script("webhook")


if __name__ == "__main__":  # python -m cmle.cli <stage> ...
    main()
