"""The local SparkSession the whole project uses (embedded Spark with Delta Lake).

Example:
    >>> from hfspark.session import local_spark
    >>> spark = local_spark()                       # local[*], Delta, venv Python workers
    >>> spark.range(3).write.format("delta").save("/tmp/t")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_CONF", "spark_conf", "local_spark", "worker_env"]

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.python.worker.reuse": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Rows per Arrow batch handed to a pandas UDF; hfspark slices it into inference batches.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.session.timeZone": "UTC",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}


def worker_env() -> dict[str, str]:
    """Environment for the driver and its Python workers: the current interpreter, offline hub."""
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def spark_conf(extra: Mapping[str, Any] | None = None, *, with_delta: bool = True) -> dict[str, str]:
    """The Spark settings of :func:`local_spark` (also written into spark-submit commands)."""
    from hfspark.jars import delta_jars

    conf = dict(DEFAULT_CONF)
    if with_delta:
        conf["spark.jars"] = ",".join(str(p) for p in delta_jars())
    for key, value in worker_env().items():
        conf[f"spark.executorEnv.{key}"] = value
    conf["spark.pyspark.python"] = sys.executable
    conf["spark.pyspark.driver.python"] = sys.executable
    conf.update({k: str(v) for k, v in (extra or {}).items()})
    return conf


def local_spark(
    master: str = "local[*]",
    app_name: str = "hfspark",
    conf: Mapping[str, Any] | None = None,
) -> SparkSession:
    """Get or create an embedded SparkSession with Delta Lake and hfspark's settings.

    Args:
        master: Spark master URL; ``local[*]`` uses every core of this machine.
        app_name: the application name shown in logs.
        conf: extra Spark settings that override the defaults.

    Example:
        >>> spark = local_spark("local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    """
    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in spark_conf(conf).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
