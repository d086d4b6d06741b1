"""What every peer runner shares: the spec it is given, the data, the Spark settings, the result.

Example:
    >>> spec = load_spec()                        # argv[1]: the JSON file bench.peers wrote
    >>> ids, texts = read_texts(spec)
    >>> finish(spec, cold=(12.3, cold_vectors), warm=(8.1, warm_vectors), config="...")
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MARKER",
    "cold_seconds",
    "load_spec",
    "read_texts",
    "spark_conf",
    "spark_session",
    "stack",
    "timed",
    "finish",
]

#: the prefix of the one result line a runner prints on stdout
MARKER = "PEER_RESULT "


def load_spec() -> dict[str, Any]:
    """The run's spec (model folder, data, rows, cores, partitions, max_length, out, t0)."""
    return json.loads(Path(sys.argv[1]).read_text())


def read_texts(spec: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """(ids, texts) of the benchmark parquet, in file order."""
    import pyarrow.parquet as pq

    table = pq.read_table(spec["data"], columns=["id", "text"])
    return np.asarray(table.column("id").to_pylist()), table.column("text").to_pylist()


def spark_conf(spec: dict[str, Any]) -> dict[str, str]:
    """The Spark settings of every Spark system in the section (hfspark, MLflow, distribatch).

    ``local[cores]``, one core per task, worker reuse on, Arrow batches of 2,048 rows, one
    torch/OpenMP thread per Python worker (``OMP_NUM_THREADS=1``), workers on this interpreter.
    """
    env = {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYSPARK_PYTHON": sys.executable,
    }
    return {
        "spark.master": f"local[{spec['cores']}]",
        "spark.app.name": "hfspark-bench-peers",
        "spark.task.cpus": "1",
        "spark.sql.shuffle.partitions": str(spec["cores"]),
        "spark.python.worker.reuse": "true",
        "spark.driver.memory": "2g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        **{f"spark.executorEnv.{k}": v for k, v in env.items()},
    }


def spark_session(spec: dict[str, Any]) -> Any:
    """A fresh local SparkSession with :func:`spark_conf` (the peers' Spark rows)."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder
    for key, value in spark_conf(spec).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def stack(ids: Sequence[int], vectors: Sequence[Any]) -> np.ndarray:
    """Vectors as a float32 matrix in id order (ids are 0..n-1)."""
    order = np.argsort(np.asarray(ids))
    return np.stack([np.asarray(vectors[i], dtype=np.float32) for i in order])


def timed(query: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """(seconds, vectors) of one query."""
    start = time.perf_counter()
    vectors = query()
    return time.perf_counter() - start, vectors


def _versions(packages: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def finish(
    spec: dict[str, Any],
    *,
    cold_s: float,
    cold: np.ndarray,
    warm_s: float,
    warm: np.ndarray,
    config: str,
    packages: Sequence[str] = (),
) -> None:
    """Write ``cold.npy``/``warm.npy`` to the spec's out folder and print the result line.

    ``cold_s`` runs from the parent's ``t0`` (before the process started) to the end of the
    first query; ``warm_s`` is the second query alone.
    """
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    for name, vectors in (("cold", cold), ("warm", warm)):
        if len(vectors) != spec["rows"]:
            raise RuntimeError(f"{name} query: expected {spec['rows']} vectors, got {len(vectors)}")
        np.save(out / f"{name}.npy", np.asarray(vectors, dtype=np.float32))
    result = {
        "rows": spec["rows"],
        "cold_s": cold_s,
        "warm_s": warm_s,
        "config": config,
        "versions": _versions(["torch", "transformers", *packages]),
    }
    print(MARKER + json.dumps(result), flush=True)


def cold_seconds(spec: dict[str, Any]) -> float:
    """Seconds since the parent's ``t0`` (taken right before it started this process)."""
    return time.time() - float(spec["t0"])
