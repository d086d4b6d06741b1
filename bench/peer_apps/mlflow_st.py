"""MLflow's sentence_transformers flavor run with ``mlflow.pyfunc.spark_udf``.

``prepare``: ``mlflow.sentence_transformers.save_model(SentenceTransformer(folder), path)``
once (not timed: a logged model is where an MLflow user starts). The run: a fresh local
session (the section's shared Spark settings, ``OMP_NUM_THREADS=1`` per Python worker),
``spark_udf(spark, path, result_type="array<float>", env_manager="local")`` over the
parquet repartitioned round-robin to P partitions, collected with ``toPandas()``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.peer_apps._common import (
    cold_seconds,
    finish,
    load_spec,
    spark_session,
    stack,
    timed,
)


def prepare(spec: dict[str, Any]) -> None:
    """Save the model in the sentence_transformers flavor at ``spec["mlflow_model"]``."""
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(spec["model"], device="cpu")
    model.max_seq_length = spec["max_length"]
    mlflow.sentence_transformers.save_model(
        model, spec["mlflow_model"], pip_requirements=["sentence-transformers", "torch"]
    )


def main() -> None:
    """Cold and warm spark_udf jobs in one session."""
    spec = load_spec()
    if sys.argv[2:] == ["prepare"]:
        prepare(spec)
        return
    if not (Path(spec["mlflow_model"]) / "MLmodel").exists():
        raise FileNotFoundError(f"no MLflow model at {spec['mlflow_model']} (run prepare first)")
    import mlflow.pyfunc

    spark = spark_session(spec)
    udf = mlflow.pyfunc.spark_udf(
        spark, spec["mlflow_model"], result_type="array<float>", env_manager="local"
    )

    def query() -> Any:
        df = spark.read.parquet(spec["data"]).repartition(spec["partitions"])
        out = df.select("id", udf("text").alias("vector")).toPandas()
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
        config=f"local[{spec['cores']}], spark.task.cpus=1, OMP_NUM_THREADS=1 per worker, "
        "spark_udf(result_type='array<float>', env_manager='local'), encode() defaults "
        "(batch_size 32)",
        packages=["mlflow", "sentence-transformers", "pyspark"],
    )


if __name__ == "__main__":
    main()
