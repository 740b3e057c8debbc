"""A local Spark session for the engine tests (started once: it takes seconds), and the
scoring fixtures of tests/scoring."""

from __future__ import annotations

import pytest

from tests.scoring.toy import champion, mlflow_db_template, own_store_settings, toy_registry  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def spark():
    """The session cmle itself uses (:func:`cmle.spark.get_spark`): local[2], UTC, no UI."""
    from cmle.spark import get_spark

    return get_spark()
