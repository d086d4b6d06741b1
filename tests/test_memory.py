"""Executor Python memory stays bounded over a long job: 50 chunks through the same workers.

Each chunk is one Spark job (2 partitions on local[2]) that runs a tiny text classifier with
``errors="column"`` over fresh texts of mixed lengths (nulls and 20 KB texts included). A
probe pandas UDF chained on the model UDF's output runs in the same Python worker, right
after the model, and returns that worker's pid, current RSS (``VmRSS`` of
``/proc/self/status``) and peak RSS (``ru_maxrss``). The RSS of the last chunks must stay
within ``max(10 %, 50 MB)`` of the first chunks' peak.

Run with ``-s`` to see the per-chunk numbers (docs/failure-modes.md quotes a run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")

CHUNKS = 50
ROWS = 96
EDGE = 5  # chunks averaged at each end
MB = 1024 * 1024
WORDS = ("love great terrible boring movie film weather Paris sunny John Google Berlin cat "
         "mat dog market rose data compute tests Spark pandas Arrow batches").split()


def _vm_rss_kb() -> int:
    """Current resident memory of this process in KB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _probe(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Per Arrow batch: this worker's pid, RSS and peak RSS (KB), and how many rows were predicted."""
    import os
    import resource

    for batch in batches:
        predicted = int(batch["label"].notna().sum())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
        n = len(batch)
        yield pd.DataFrame({"pid": [os.getpid()] * n, "rss_kb": [_vm_rss_kb()] * n,
                            "peak_kb": [peak] * n, "predicted": [predicted] * n})


def _texts(chunk: int) -> list[tuple[int, str | None]]:
    """The chunk's rows: fresh random texts of 1 to 400 words, a null, and one 20 KB text."""
    rng = random.Random(chunk)
    rows: list[tuple[int, str | None]] = []
    for i in range(ROWS):
        n = rng.choice((1, 5, 20, 60, 400))
        rows.append((chunk * ROWS + i, " ".join(rng.choice(WORDS) for _ in range(n))))
    rows[3] = (rows[3][0], None)
    rows[7] = (rows[7][0], "x" * 20_000)
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
            lines.append(f"{k:5d}  {pid:10d}  {m['rss_kb'] / 1024:6.1f}  {m['peak_kb'] / 1024:7.1f}")
    return "\n".join(lines)


def test_worker_memory_bounded_over_50_chunks(spark: Any, model: str) -> None:
    """The workers' RSS after the last chunks stays within max(10 %, 50 MB) of the first peak."""
    from pyspark.sql.functions import pandas_udf

    from hfspark.udfs import model_udf

    udf = model_udf(model, errors="column", device="cpu", batch_size=8)
    probe = pandas_udf(  # type: ignore[call-overload]
        _probe, "struct<pid: int, rss_kb: long, peak_kb: long, predicted: int>")
    per_chunk: list[dict[int, dict[str, int]]] = []
    for k in range(CHUNKS):
        df = spark.createDataFrame(_texts(k), "id long, text string").repartition(2, "id")
        rows = df.select(probe(udf("text")).alias("m")).select("m.*").distinct().collect()
        workers: dict[int, dict[str, int]] = {}
        for r in rows:
            w = workers.setdefault(r.pid, {"rss_kb": 0, "peak_kb": 0, "predicted": 0})
            w["rss_kb"] = max(w["rss_kb"], r.rss_kb)
            w["peak_kb"] = max(w["peak_kb"], r.peak_kb)
            w["predicted"] += r.predicted
        assert sum(w["predicted"] for w in workers.values()) == ROWS - 1  # all but the null
        per_chunk.append(workers)
    print("\n" + _table(per_chunk))

    pids = {pid for workers in per_chunk for pid in workers}
    assert len(pids) <= 4, f"Python workers were not reused: {len(pids)} pids"
    first_peak = max(w["rss_kb"] for workers in per_chunk[:EDGE] for w in workers.values())
    last = max(w["rss_kb"] for workers in per_chunk[-EDGE:] for w in workers.values())
    margin = max(0.10 * first_peak, 50 * 1024)
    print(f"first {EDGE} chunks: peak RSS {first_peak / 1024:.1f} MB; last {EDGE} chunks: "
          f"RSS {last / 1024:.1f} MB (growth {(last - first_peak) / 1024:+.1f} MB, "
          f"allowed {margin / 1024:.1f} MB); workers: {len(pids)}")
    assert last <= first_peak + margin, _table(per_chunk)
    for pid in pids:  # the same bound per worker that lived through the whole run
        early = [w[pid]["rss_kb"] for w in per_chunk[:EDGE] if pid in w]
        late = [w[pid]["rss_kb"] for w in per_chunk[-EDGE:] if pid in w]
        if early and late:
            assert max(late) <= max(early) + max(0.10 * max(early), 50 * 1024), pid
