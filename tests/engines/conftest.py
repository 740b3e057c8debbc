"""The scoring fixtures of tests/scoring for the engine tests (the Spark session is shared:
``spark`` in tests/conftest.py)."""

from __future__ import annotations

from tests.scoring.toy import champion, mlflow_db_template, own_store_settings, toy_registry  # noqa: F401 - fixtures
