"""A Spark session for featurization and scoring at scale (``engine = spark``).

On Databricks (or any process that already runs Spark) the active session is used as it
is, apart from the session time zone, which the feature SQL needs in UTC. Elsewhere a
local session is built (``local[2]`` by default) with the settings that make local runs
work and reproducible: workers start this interpreter (``PYSPARK_PYTHON``), the session
time zone is UTC, no web UI, a loopback address, few shuffle partitions, and a warehouse
folder of its own so that no ``spark-warehouse/`` lands in the working directory.

Cloud storage: Spark reads exports through Hadoop file systems. :func:`read` maps the
storage URL to the Hadoop scheme (``s3://`` → ``s3a://`` off Databricks) and turns a missing
connector into a message naming its Maven coordinates; a local session started for a cloud
``storage_url`` gets the connector and its settings (:func:`cmle.storage_schemes.spark_conf`).

pyspark is an optional dependency (``pip install cmle[spark]``); importing this module
does not import it.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Mapping

from cmle import storage_schemes
from cmle.errors import CmleError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

UTC = "UTC"
DEFAULT_MASTER = "local[2]"


def _pyspark():
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError:
        raise CmleError("engine = spark needs pyspark and Java 17 or 21: pip install 'cmle[spark]' "
                        "(on Databricks, pyspark comes with the runtime)") from None
    return SparkSession


def local_conf(warehouse_dir: str | None = None) -> dict[str, str]:
    """Spark settings of a local session (see the module docstring)."""
    warehouse = warehouse_dir or os.path.join(tempfile.gettempdir(), f"cmle-spark-warehouse-{os.getpid()}")
    return {
        "spark.sql.session.timeZone": UTC,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.warehouse.dir": warehouse,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # Arrow makes toPandas()/createDataFrame(pandas) fast (spark_udf uses it too).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def get_spark(master: str = DEFAULT_MASTER, app_name: str = "cmle",
              conf: Mapping[str, str] | None = None, storage_url: str = "") -> "SparkSession":
    """The active Spark session, or a new local one; either way with a UTC session time zone.

    A new local session for a cloud ``storage_url`` also gets that cloud's Hadoop connector
    and settings (:func:`cmle.storage_schemes.spark_conf`)."""
    SparkSession = _pyspark()
    active = SparkSession.getActiveSession()
    if active is not None:
        ensure_utc(active)
        return active
    if on_databricks():
        # On Databricks (clusters, serverless) the runtime owns the session: never force a master.
        spark = SparkSession.builder.getOrCreate()
        ensure_utc(spark)
        return spark
    # Workers must start this interpreter (the venv's), or every Python UDF fails to import.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(master).appName(app_name)
    cloud_conf = storage_schemes.spark_conf(storage_url, conf) if storage_url else {}
    # The caller's settings win, except the package list, which already holds the caller's.
    for key, value in {**local_conf(), **cloud_conf, **dict(conf or {}),
                       **{k: v for k, v in cloud_conf.items() if k == "spark.jars.packages"}}.items():
        builder = builder.config(key, value)
    log.info("starting a local Spark session (%s)", master)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - pyspark reports a failed JVM start in several types
        if "spark.jars.packages" not in cloud_conf:
            raise
        raise CmleError(storage_schemes.connector_fetch_failed_message(
            storage_url, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            storage_schemes.hadoop_version())) from None
    spark.sparkContext.setLogLevel("ERROR")
    ensure_utc(spark)
    return spark


def ensure_utc(spark: "SparkSession") -> None:
    """Set the session time zone to UTC (the feature SQL reads and writes UTC timestamps)."""
    current = spark.conf.get("spark.sql.session.timeZone")
    if current != UTC:
        log.info("setting spark.sql.session.timeZone from %s to UTC", current)
        spark.conf.set("spark.sql.session.timeZone", UTC)


def read(spark: "SparkSession", url: "str | os.PathLike", data_format: str = "parquet") -> "DataFrame":
    """The files at ``url`` (a folder or a cloud storage URL) as a DataFrame: the URL is
    read with its Hadoop scheme (:func:`cmle.storage_schemes.hadoop_url`); a session that has
    no file system for it raises :class:`CmleError` naming the connector to add."""
    url = str(url)
    target = storage_schemes.hadoop_url(url, databricks=on_databricks())
    try:
        return spark.read.format(data_format).load(target)
    except Exception as exc:  # noqa: BLE001 - Py4J and Spark Connect raise different types
        if storage_schemes.is_missing_filesystem(exc):
            raise CmleError(storage_schemes.missing_connector_message(url, storage_schemes.hadoop_version())) from None
        raise


def register_tables(spark: "SparkSession", tables: Mapping[str, "str | DataFrame"],
                    data_format: str = "parquet") -> None:
    """Make each source readable under its table name: a path (Parquet or ``data_format``,
    e.g. ``delta``) or a DataFrame becomes a temporary view of that name."""
    for name, source in tables.items():
        df = read(spark, source, data_format) if isinstance(source, (str, os.PathLike)) else source
        df.createOrReplaceTempView(name)


def run_sql(spark: "SparkSession", sql: str, tables: Mapping[str, "str | DataFrame"] | None = None,
            data_format: str = "parquet") -> "DataFrame":
    """Run Spark SQL (e.g. :attr:`cmle.features.render.FeatureQuery.sql`) after registering
    its source tables; returns the lazy DataFrame."""
    ensure_utc(spark)
    if tables:
        register_tables(spark, tables, data_format)
    return spark.sql(sql)


__all__ = ["DEFAULT_MASTER", "UTC", "ensure_utc", "get_spark", "local_conf", "on_databricks", "read", "register_tables",
           "run_sql"]
