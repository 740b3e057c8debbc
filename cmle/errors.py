"""User-facing errors.

Every error a user can cause (bad config, bad parameters, data that fails a check, a
platform that refuses a request) is a :class:`CmleError`. The CLI prints its message and
exits non-zero without a traceback; anything else is a bug and keeps its traceback.
"""


class CmleError(Exception):
    """An error the user can act on; the message says what is wrong and what to do."""

    exit_code = 2


class ConfigError(CmleError):
    """The configuration is missing a value or holds a malformed one."""


class ParameterError(CmleError):
    """A stage parameter is invalid."""


class DataCheckError(CmleError):
    """Data failed a check at a stage boundary (counts, nulls, duplicates, labels)."""


class PlatformError(CmleError):
    """The platform (local or AEP) refused or failed an operation."""


class BatchFailedError(PlatformError):
    """An ingestion batch reached a failed terminal state."""


class QueryError(PlatformError):
    """A query failed or timed out."""


class NotFoundError(PlatformError):
    """A platform resource that a stage needs does not exist."""


class GovernanceError(CmleError):
    """A data usage label forbids the operation."""


class RegistryError(CmleError):
    """The model registry lacks what a stage needs (model, version, alias)."""


class EnvironmentFault(CmleError):
    """The environment keeps a stage from working: an unwritable folder, an unreachable
    service, a full disk. The message names the place and what to do."""


class BusyError(CmleError):
    """Another run holds what this run needs (a lock) and did not finish in time."""


def as_user_error(exc: BaseException) -> CmleError | None:
    """The :class:`CmleError` that ``exc`` stands for, or None for a bug.

    Besides cmle's own errors, faults of the environment that reach the top from inside a
    library (a folder that is not writable, a full disk, a database file that cannot be
    opened, a date out of range, a service that does not answer) become one clear message;
    anything else is a bug and keeps its traceback.
    """
    import errno
    import sqlite3

    if isinstance(exc, CmleError):
        return exc
    if isinstance(exc, OverflowError) or (isinstance(exc, ValueError) and "out of range" in str(exc)):
        return ParameterError(f"a date or size computed from the parameters is out of range ({exc}); choose a "
                              "smaller window (weeks, lookback_days, outcome_days) or an end/snapshot date "
                              "between 1970 and 2200")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                                                  errno.EDQUOT, errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        where = exc.filename or "a file"
        what = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space"}.get(
            exc.errno, "check that the folder exists and is writable, or set [Platform] local_root / "
                       "[Cloud] storage_url elsewhere")
        return EnvironmentFault(f"cannot use {where}: {exc.strerror or exc}; {what}")
    if isinstance(exc, sqlite3.OperationalError):
        return EnvironmentFault(f"a local database cannot be used ({exc}); check that [Platform] local_root and "
                                "the MLflow store's folder are writable and on a local disk")
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("duckdb") and name in ("IOException", "PermissionException"):
        return EnvironmentFault(f"the embedded query engine cannot read or write a file ({exc}); check that "
                                "[Platform] local_root and [Cloud] storage_url are writable")
    if module.startswith(("requests", "urllib3")) and "Connection" in name:
        return EnvironmentFault(f"a service did not answer ({exc}); check the URL in the config and the network")
    return None
