"""Data Distiller models (SQL ML) in Query Service: statements that train run as REST
queries (submitted once, polled to a terminal state, cancelled on timeout, as a CTAS), and
the models this package made are listed and dropped for ``cleanup``. Data Distiller's SQL
audiences (``CREATE AUDIENCE``, :mod:`cmle.audiences.sql`) run the same way.

A model has no tags to record an owner on, so ``cleanup`` knows ours by name
(:func:`cmle.naming.is_ours`: the owner's token ends it). A sandbox without the Data
Distiller add-on refuses ``SHOW MODELS``: it then holds no model of ours.
"""

from __future__ import annotations

import logging

from cmle.audiences import sql as audience_sql
from cmle.distiller import results, sql
from cmle.features.render import quote_table
from cmle.errors import QueryError
from cmle.naming import TABLE_PREFIX
from cmle.platform.aep.query import QueryEngine
from cmle.platform.base import Resource

log = logging.getLogger(__name__)


class ModelService:
    def __init__(self, queries: QueryEngine):
        self.queries = queries

    def run(self, statement: str, label: str, timeout_s: float = 3600.0) -> None:
        """Run a statement with no result rows (``CREATE MODEL``) as a REST query."""
        query_id = self.queries.submit(statement, label)
        log.info("%s submitted as query %s", label, query_id)
        self.queries.wait(query_id, timeout_s, label)

    def create_sql_audience(self, name: str, select_sql: str, identity_field: str, namespace: str,
                            timeout_s: float = 3600.0) -> int:
        """Replace the SQL audience ``name`` (``DROP AUDIENCE IF EXISTS``, then ``CREATE
        AUDIENCE``, each a REST query polled to success); its member count."""
        for ident in (name, identity_field, namespace):
            sql.ident(ident)  # plain identifiers only: nothing free-form reaches the statement
        self.drop_audience(name, timeout_s)
        self.run(audience_sql.create_audience(name, select_sql, identity_field, namespace),
                 f"create audience {name}", timeout_s)
        frame = self.queries.query(f"SELECT COUNT(*) AS members FROM {quote_table(name)}", timeout_s=600.0)
        return int(frame.iloc[0, 0])

    def drop_audience(self, name: str, timeout_s: float = 600.0) -> None:
        """``DROP AUDIENCE IF EXISTS``: the audience and its dataset go (idempotent), and the
        ad-hoc schema Query Service made for that dataset with them (as for a replaced CTAS)."""
        old = self.queries.catalog.find_dataset(name)
        self.run(audience_sql.drop_audience(sql.ident(name)), f"drop audience {name}", timeout_s)
        if old is not None and old.schema_id and self.queries.adhoc_schemas is not None:
            self.queries.adhoc_schemas.delete_adhoc_schema(old.schema_id)

    def list_resources(self) -> list[Resource]:
        try:
            frame = self.queries.query(sql.show_models(), timeout_s=120.0)
        except QueryError as exc:
            log.info("SHOW MODELS failed (%s): no Data Distiller model is listed", exc)
            return []
        return [Resource(kind="model", id=name, name=name) for name in sorted(results.model_versions(frame))
                if name.startswith(TABLE_PREFIX)]

    def delete(self, name: str) -> None:
        self.queries.query(sql.drop_model(name), timeout_s=120.0)
