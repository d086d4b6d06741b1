"""The Spark rows of the table: hfspark, MLflow's ``spark_udf`` and a naive pandas UDF.

Every system runs on the same ``local[N]`` session settings, the same parquet input
(``id``, ``text``) repartitioned round-robin to P partitions, and writes its output with the
``noop`` sink (every row is computed and serialized, nothing is stored, so the sink costs
nothing and all systems pay the same). Each (system, partitions) pair gets a fresh
SparkSession, so its Python workers start cold and their memory is its own:

1. a small *cold* job (``8 × P`` rows, P partitions): worker start, imports, model loads;
2. ``reps`` timed jobs on all rows (the best one is reported).

Model loads are counted with inotify on the weights file each system opens (see
:mod:`bench.monitor`), and for hfspark also from its own ``HFSPARK_STATS_DIR/loads.log``.

Example:
    >>> res = run_spark_system(SYSTEMS["hfspark"], model, data, partitions=2, reps=1, cfg=cfg)
    >>> res.rows_per_s, res.loads_cold, res.peak_rss_mib
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # module level: pandas_udf resolves the type hints here

from bench.models import MAX_LENGTH, MLFLOW_CONFIG, BenchModel, weights_file
from bench.monitor import FileOpens, WorkerMemory

__all__ = ["ENGINE", "SYSTEMS", "JobResult", "SparkSystem", "run_spark_system", "spark_settings"]

#: hfspark engine settings for CPU (see bench/README.md "Engine settings" and results/tune.md):
#: length-sorted batches of up to 16 rows, at most 2,048 padded tokens per forward pass.
ENGINE: dict[str, Any] = {"batch_size": 16, "max_tokens_per_batch": 2048}


@dataclass(frozen=True)
class SparkSystem:
    """One way of running the model in a Spark job."""

    name: str
    kind: str  # "hfspark" | "mlflow" | "naive"
    batch_size: int | None = None  # MLflow model_config batch_size (None: its default)


SYSTEMS: dict[str, SparkSystem] = {
    s.name: s
    for s in (
        SparkSystem("hfspark", "hfspark"),
        SparkSystem("mlflow default", "mlflow"),
        SparkSystem("mlflow bs8", "mlflow", 8),
        SparkSystem("mlflow bs32", "mlflow", 32),
        SparkSystem("naive pandas_udf", "naive"),
    )
}


@dataclass
class JobResult:
    """One (system, task, partitions) measurement."""

    system: str
    task: str
    partitions: int
    rows: int
    tokens: int
    seconds: float
    cold_seconds: float
    loads_cold: int | None
    loads_timed: int | None
    workers: int
    peak_rss_mib: float
    log_loads_cold: int | None = None
    all_seconds: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def spark_settings(cores: int, stats_dir: Path) -> dict[str, str]:
    """The Spark settings every system shares (on top of hfspark.session.DEFAULT_CONF)."""
    return {
        "spark.task.cpus": "1",
        "spark.sql.shuffle.partitions": str(cores),
        "spark.python.worker.reuse": "true",
        "spark.executorEnv.HFSPARK_STATS_DIR": str(stats_dir),
        "spark.driver.memory": "2g",
    }


def _session(cores: int, stats_dir: Path) -> Any:
    from hfspark.session import local_spark

    os.environ["HFSPARK_STATS_DIR"] = str(stats_dir)  # local mode: workers inherit it too
    return local_spark(f"local[{cores}]", app_name="hfspark-bench",
                       conf=spark_settings(cores, stats_dir))


def _log_loads(stats_dir: Path) -> int:
    log = stats_dir / "loads.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# ------------------------------------------------------------------------------ columns
def _hfspark_column(model: BenchModel, task: str) -> tuple[Any, Path]:
    from hfspark.flavor import read_info
    from hfspark.udfs import model_udf

    udf = model_udf(str(model.hfspark), task=task, max_length=MAX_LENGTH, **ENGINE)
    return udf("text"), weights_file(read_info(str(model.hfspark)).model_dir)


def _mlflow_column(spark: Any, model: BenchModel, task: str, batch_size: int | None) -> tuple[Any, Path]:
    import mlflow.pyfunc

    config = {**MLFLOW_CONFIG, "batch_size": batch_size or MLFLOW_CONFIG["batch_size"]}
    result_type = {
        "text-classification": "label string, score double",
        "feature-extraction": "array<array<double>>",
    }[task]
    udf = mlflow.pyfunc.spark_udf(spark, str(model.mlflow), result_type=result_type,
                                  env_manager="local", model_config=config)
    return udf("text"), weights_file(model.mlflow)


def _naive_column(model: BenchModel, task: str) -> tuple[Any, Path]:
    """The tutorial pattern: build ``transformers.pipeline`` inside a scalar pandas UDF."""
    from pyspark.sql.functions import pandas_udf

    folder = str(model.folder)
    if task == "text-classification":

        @pandas_udf("label string, score double")  # type: ignore[call-overload]
        def classify(texts: pd.Series) -> pd.DataFrame:
            from transformers import pipeline

            pipe = pipeline("text-classification", model=folder)
            return pd.DataFrame(pipe(texts.tolist(), truncation=True, max_length=MAX_LENGTH))

        return classify("text"), weights_file(model.folder)

    @pandas_udf("array<float>")  # type: ignore[call-overload]
    def embed(texts: pd.Series) -> pd.Series:
        import numpy as np
        from transformers import pipeline

        pipe = pipeline("feature-extraction", model=folder)
        out = pipe(texts.tolist(), truncation=True, max_length=MAX_LENGTH)
        return pd.Series([np.asarray(o[0]).mean(axis=0).tolist() for o in out])

    return embed("text"), weights_file(model.folder)


def _column(system: SparkSystem, spark: Any, model: BenchModel, task: str) -> tuple[Any, Path]:
    if system.kind == "hfspark":
        return _hfspark_column(model, task)
    if system.kind == "mlflow":
        return _mlflow_column(spark, model, task, system.batch_size)
    return _naive_column(model, task)


# ---------------------------------------------------------------------------------- run
def _job(df: Any, column: Any) -> float:
    start = time.perf_counter()
    df.select("id", column.alias("out")).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def run_spark_system(system: SparkSystem, model: BenchModel, data: Path, *, task: str,
                     rows: int, tokens: int, partitions: int, reps: int,
                     cores: int) -> JobResult:
    """Measure one system at one partition count on a fresh local session."""
    stats_dir = Path(tempfile.mkdtemp(prefix="hfspark-bench-stats-"))
    spark = _session(cores, stats_dir)
    try:
        source = spark.read.parquet(str(data))
        full = source.repartition(partitions)
        cold = source.limit(8 * partitions).repartition(partitions)
        column, weights = _column(system, spark, model, task)
        with WorkerMemory() as memory:
            with FileOpens(weights) as opens:
                cold_s = _job(cold, column)
                loads_cold = opens.poll()
            log_cold = _log_loads(stats_dir)
            times, timed_loads = [], []
            for _ in range(max(1, reps)):
                with FileOpens(weights) as opens:
                    times.append(_job(full, column))
                timed_loads.append(opens.count)
        known = [n for n in timed_loads if n is not None]
        return JobResult(
            system=system.name, task=task, partitions=partitions, rows=rows, tokens=tokens,
            seconds=min(times), cold_seconds=cold_s, loads_cold=loads_cold,
            loads_timed=max(known) if known else None, workers=len(memory.pids),
            peak_rss_mib=memory.peak_mib(),
            log_loads_cold=log_cold if system.kind == "hfspark" else None, all_seconds=times,
        )
    finally:
        spark.stop()
        shutil.rmtree(stats_dir, ignore_errors=True)
