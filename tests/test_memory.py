"""Executor Python memory stays bounded over a long job: 50 chunks through the same workers.

A chunk is one Arrow batch of fresh texts of mixed lengths (a null and a 20 KB text
included) that a tiny text classifier predicts with ``errors="column"``. The run is 10 Spark
jobs of 2 partitions on local[2], each partition 5 Arrow batches, so each of the two Python
workers sees 50 chunks over 10 tasks (task-level and batch-level leaks both show). A probe
pandas UDF chained on the model UDF's output runs in the same worker right after the model
and returns, per batch, the worker's pid, current RSS (``VmRSS`` of ``/proc/self/status``)
and peak RSS (``ru_maxrss``). The RSS of the last chunks must stay within
``max(10 %, 50 MB)`` of the first chunks' peak.

Run with ``-s`` to see the per-chunk numbers (docs/failure-modes.md quotes a run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")

JOBS = 10
BATCHES = 5  # Arrow batches per partition (per worker) and job
BATCH_ROWS = 32
ROWS = 2 * BATCHES * BATCH_ROWS  # rows per job (2 partitions)
CHUNKS = JOBS * BATCHES  # chunks each worker sees
EDGE = 5  # chunks compared at each end
MB = 1024 * 1024
WORDS = (
    "love great terrible boring movie film weather Paris sunny John Google Berlin cat "
    "mat dog market rose data compute tests Spark pandas Arrow batches"
).split()


def _vm_rss_kb() -> int:
    """Current resident memory of this process in KB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _probe(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
    """Per Arrow batch: its index in the task, this worker's pid, RSS and peak RSS (KB), and
    how many of its rows were predicted. An Arrow UDF like the model's, so Spark runs both in
    the same Python worker and the probe measures the process that holds the model."""
    import os
    import resource

    for i, batch in enumerate(batches):
        predicted = sum(1 for v in batch.to_pylist() if v and v.get("label") is not None)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
        n = len(batch)
        row = {
            "batch": i,
            "pid": os.getpid(),
            "rss_kb": _vm_rss_kb(),
            "peak_kb": peak,
            "predicted": predicted,
        }
        yield pa.array(
            [row] * n,
            type=pa.struct(
                [
                    ("batch", pa.int32()),
                    ("pid", pa.int32()),
                    ("rss_kb", pa.int64()),
                    ("peak_kb", pa.int64()),
                    ("predicted", pa.int32()),
                ]
            ),
        )


def _texts(job: int) -> list[tuple[int, str | None]]:
    """A job's rows: fresh random texts of 1 to 400 words; each batch has a null and a 20 KB text."""
    rng = random.Random(job)
    rows: list[tuple[int, str | None]] = []
    for i in range(ROWS):
        n = rng.choice((1, 5, 20, 60, 400))
        text = " ".join(rng.choice(WORDS) for _ in range(n))
        if i % BATCH_ROWS == 3:
            text = None
        elif i % BATCH_ROWS == 7:
            text = "x" * 20_000
        rows.append((job * ROWS + i, text))
    return rows


@pytest.fixture(scope="module")
def model(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny text classifier saved with the hfspark flavor."""
    from hfspark.flavor import save_model

    path = tmp_path_factory.mktemp("memory") / "text-classification"
    save_model(str(tiny_models["text-classification"]), path, task="text-classification")
    return str(path)


def _table(per_chunk: list[dict[int, dict[str, int]]]) -> str:
    """The per-chunk numbers as a text table (MB)."""
    lines = ["chunk  worker pid  RSS MB  peak MB"]
    for k, workers in enumerate(per_chunk):
        for pid, m in sorted(workers.items()):
            lines.append(
                f"{k:5d}  {pid:10d}  {m['rss_kb'] / 1024:6.1f}  {m['peak_kb'] / 1024:7.1f}"
            )
    return "\n".join(lines)


def _run_job(spark: Any, udf: Any, probe: Any, job: int) -> list[dict[int, dict[str, int]]]:
    """One job: per batch index, per worker pid, the probe's numbers."""
    rdd = spark.sparkContext.parallelize(_texts(job), 2)  # 2 partitions in order, no shuffle
    df = spark.createDataFrame(rdd, "id long, text string")
    rows = df.select(probe(udf("text")).alias("m")).select("m.*").distinct().collect()
    batches: list[dict[int, dict[str, int]]] = [{} for _ in range(BATCHES)]
    for r in rows:
        batches[r.batch][r.pid] = {
            "rss_kb": r.rss_kb,
            "peak_kb": r.peak_kb,
            "predicted": r.predicted,
        }
    return batches


def test_worker_memory_bounded_over_50_chunks(spark: Any, model: str) -> None:
    """The workers' RSS after the last chunks stays within max(10 %, 50 MB) of the first peak."""
    from pyspark.sql.functions import arrow_udf

    from hfspark.udfs import model_udf

    udf = model_udf(model, errors="column", device="cpu", batch_size=8)
    probe = arrow_udf(  # type: ignore[call-overload]
        _probe, "struct<batch: int, pid: int, rss_kb: long, peak_kb: long, predicted: int>"
    )
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key)
    spark.conf.set(key, str(BATCH_ROWS))
    try:
        per_chunk = [b for job in range(JOBS) for b in _run_job(spark, udf, probe, job)]
    finally:
        spark.conf.set(key, old)
    print("\n" + _table(per_chunk))
    assert len(per_chunk) == CHUNKS
    for workers in per_chunk:  # every batch predicted all its rows but the null
        assert sum(w["predicted"] for w in workers.values()) == 2 * (BATCH_ROWS - 1)

    pids = {pid for workers in per_chunk for pid in workers}
    assert len(pids) <= 4, f"Python workers were not reused: {len(pids)} pids"
    first_peak = max(w["rss_kb"] for workers in per_chunk[:EDGE] for w in workers.values())
    last = max(w["rss_kb"] for workers in per_chunk[-EDGE:] for w in workers.values())
    margin = max(0.10 * first_peak, 50 * 1024)
    print(
        f"first {EDGE} chunks: peak RSS {first_peak / 1024:.1f} MB; last {EDGE} chunks: "
        f"RSS {last / 1024:.1f} MB (growth {(last - first_peak) / 1024:+.1f} MB, "
        f"allowed {margin / 1024:.1f} MB); workers: {len(pids)}"
    )
    assert last <= first_peak + margin, _table(per_chunk)
    for pid in pids:  # the same bound per worker that lived through the whole run
        early = [w[pid]["rss_kb"] for w in per_chunk[:EDGE] if pid in w]
        late = [w[pid]["rss_kb"] for w in per_chunk[-EDGE:] if pid in w]
        if early and late:
            assert max(late) <= max(early) + max(0.10 * max(early), 50 * 1024), pid
