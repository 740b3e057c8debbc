"""The feature SQL on Spark (``[Platform] engine = spark``).

``featurize`` renders one Spark SQL text per feature set (:func:`cmle.features.render.feature_query`);
this module runs that same text with ``spark.sql`` instead of the platform's CTAS. Each table
the SQL reads is the table of that name in the Spark catalog when there is one (Delta or
Parquet tables on Databricks), else the platform dataset's rows, staged as Parquet. The result
becomes the platform dataset the CTAS would have created, so checks, export and train see the
same set whichever engine built it.

On AEP the feature SQL runs in Query Service, which is Spark SQL next to the data; the engine
setting does not move it (:func:`runs_features`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cmle import naming
from cmle.engines import uses_spark
from cmle.errors import NotFoundError
from cmle.features.render import FeatureQuery

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cmle.context import Context
    from cmle.platform.base import Dataset

log = logging.getLogger(__name__)


def runs_features(settings) -> bool:
    """True when ``featurize`` runs its SQL on Spark: engine spark on the embedded platform."""
    return uses_spark(settings) and settings.platform.backend == "local"


def _in_catalog(spark: "SparkSession", table: str) -> bool:
    """True for a (non-temporary) table or view of that name in the Spark catalog."""
    try:
        return not spark.catalog.getTable(table).isTemporary
    except Exception:  # noqa: BLE001 - pyspark raises AnalysisException subclasses by version
        return False


def stage_sources(spark: "SparkSession", ctx: "Context", query: FeatureQuery, folder: Path,
                  sources: tuple["Dataset", ...] = ()) -> dict[str, str]:
    """``{table: Parquet path}`` for each table of ``query`` that the Spark catalog lacks: the
    platform dataset of that table (among ``sources``, default the synthetic datasets),
    written under ``folder``."""
    if not sources:
        owner = ctx.owner
        sources = tuple(ctx.platform.find_dataset(n) for n in (naming.events_dataset(owner),
                                                                naming.profiles_dataset(owner)))
    by_table = {ds.table: ds for ds in sources if ds is not None}
    staged = {}
    for table in query.tables.values():
        if _in_catalog(spark, table):
            log.info("featurize on Spark: %s from the Spark catalog", table)
            continue
        ds = by_table.get(table)
        if ds is None:
            raise NotFoundError(f"the feature SQL reads {table}, which is neither a table in the Spark catalog nor "
                                "a dataset on the platform; run the synthetic stage (or load your events) first")
        import pyarrow.parquet as pq

        path = folder / f"{table}.parquet"
        pq.write_table(ctx.platform.read_dataset(ds.id), path)
        staged[table] = str(path)
    return staged


def create_table_as(ctx: "Context", name: str, query: FeatureQuery,
                    sources: tuple["Dataset", ...] = ()) -> "Dataset":
    """Run ``query`` on Spark and make its rows the platform dataset ``name`` (created or replaced);
    ``sources`` are the datasets the query reads (see :func:`stage_sources`)."""
    from cmle.spark import get_spark, run_sql

    spark = get_spark(storage_url=ctx.settings.storage_url)  # the session score reuses: it reads storage
    with tempfile.TemporaryDirectory(prefix="cmle-spark-sources-") as tmp:
        staged = stage_sources(spark, ctx, query, Path(tmp), sources)
        try:
            rows = run_sql(spark, query.sql, staged).toArrow()  # runs now, while the staged files exist
        finally:
            for table in staged:
                spark.catalog.dropTempView(table)
    log.info("featurize on Spark: %s, %d rows", name, rows.num_rows)
    return ctx.platform.put_table(name, rows)


def query(ctx: "Context", sql: str, tables: dict[str, str], views: dict[str, str] | None = None,
          sources: tuple["Dataset", ...] = ()):
    """Run ``sql`` (Spark SQL reading the platform ``tables``, by role, and the Parquet
    ``views``, by name -> URL) on Spark and return its rows as pandas (a small result)."""
    from types import SimpleNamespace

    from cmle.spark import get_spark, register_tables, run_sql

    spark = get_spark(storage_url=ctx.settings.storage_url)
    with tempfile.TemporaryDirectory(prefix="cmle-spark-sources-") as tmp:
        staged = stage_sources(spark, ctx, SimpleNamespace(tables=tables), Path(tmp), sources)
        try:
            register_tables(spark, dict(views or {}))
            return run_sql(spark, sql, staged).toPandas()
        finally:
            for table in (*staged, *(views or {})):
                spark.catalog.dropTempView(table)
