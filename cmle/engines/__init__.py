"""Engines other than the local default (DuckDB / in-process pandas), chosen by
``[Platform] engine``.

- :mod:`cmle.engines.spark_features`: the feature SQL on Spark over Parquet or Delta sources.
- :mod:`cmle.engines.spark_scoring`: batch scoring with ``mlflow.pyfunc.spark_udf``, writing
  the same score files as the local path.

Both import pyspark only when called (it is an optional dependency).
"""

LOCAL = "local"
SPARK = "spark"


def uses_spark(settings) -> bool:
    """True when the settings choose the Spark engine."""
    return settings.platform.engine == SPARK
