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
