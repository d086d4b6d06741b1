"""distribatch ``EmbedJob`` on its Spark backend (``mapInArrow``), transformers engine.

``EmbedJob(model=folder, engine="transformers", text="{text}", engine_options={"device":
"cpu", "max_input_tokens": 256}).run(df, backend="spark", partitions=P)`` (its defaults
otherwise: 32 rows per engine call, micro-batches of 8, mean pooling for a plain folder) on
the section's shared Spark settings (``OMP_NUM_THREADS=1`` per Python worker), collected
with ``toPandas()``. A row with an ``output_error`` fails the run.
"""

from __future__ import annotations

from typing import Any

from bench.peer_apps._common import cold_seconds, finish, load_spec, spark_session, stack, timed


def main() -> None:
    """Cold and warm EmbedJob runs in one session."""
    spec = load_spec()
    from distribatch import EmbedJob

    spark = spark_session(spec)
    job = EmbedJob(
        model=spec["model"],
        engine="transformers",
        text="{text}",
        engine_options={"device": "cpu", "max_input_tokens": spec["max_length"]},
    )

    def query() -> Any:
        df = spark.read.parquet(spec["data"])
        out = job.run(df, backend="spark", partitions=spec["partitions"])
        rows = out.select("id", "output", "output_error").toPandas()
        errors = rows["output_error"].dropna()
        if len(errors):
            raise RuntimeError(f"{len(errors)} rows failed, first: {errors.iloc[0]}")
        return stack(rows["id"].tolist(), rows["output"].tolist())

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
        config=f"local[{spec['cores']}], spark.task.cpus=1, OMP_NUM_THREADS=1 per worker, "
        f"EmbedJob(engine='transformers', max_input_tokens={spec['max_length']}), "
        "run(backend='spark', batch_size 32, micro_batch_size 8: defaults)",
        packages=["distribatch", "pyspark"],
    )


if __name__ == "__main__":
    main()
