"""hfspark's ``model_udf(folder, task="feature-extraction")`` (project environment).

A fresh local session with the section's shared Spark settings (no Delta: nothing here
writes Delta), ``model_udf`` with the benchmark's engine settings (``bench.systems.ENGINE``,
``max_length``) plus the variant's own keyword arguments (``spec["udf_kwargs"]``, e.g.
``{"engine": "onnx"}``), over the parquet repartitioned to P partitions, collected with
``toPandas()``. hfspark sets one torch thread per task itself (``spark.task.cpus``).
"""

from __future__ import annotations

from typing import Any

from bench.peer_apps._common import cold_seconds, finish, load_spec, spark_conf, stack, timed


def main() -> None:
    """Cold and warm hfspark jobs in one session."""
    spec = load_spec()
    from pyspark.sql import SparkSession

    from bench.systems import ENGINE
    from hfspark.session import warm_workers, with_hfspark
    from hfspark.udfs import model_udf

    builder = SparkSession.builder
    for key, value in spark_conf(spec).items():
        builder = builder.config(key, value)
    spark = with_hfspark(builder, delta=False).getOrCreate()
    warm_workers(spark)  # as the README says for your own session: daemons start now
    kwargs = {**ENGINE, "max_length": spec["max_length"], **spec.get("udf_kwargs", {})}
    embed = model_udf(spec["model"], task="feature-extraction", **kwargs)

    def query() -> Any:
        df = spark.read.parquet(spec["data"]).repartition(spec["partitions"])
        out = df.select("id", embed("text").alias("vector")).toPandas()
        return stack(out["id"].tolist(), out["vector"].tolist())

    cold = query()
    cold_s = cold_seconds(spec)
    warm_s, warm = timed(query)
    spark.stop()
    finish(
        spec,
        cold_s=cold_s,
        cold=cold,
        warm_s=warm_s,
        warm=warm,
        config=f"local[{spec['cores']}], spark.task.cpus=1 (hfspark: torch threads = task cpus), "
        "model_udf(task='feature-extraction', "
        + ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        + ")",
        packages=["pyspark"],
    )


if __name__ == "__main__":
    main()
