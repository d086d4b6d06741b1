"""Cold vs warm hfspark jobs, and the memory of the Python workers (issue #17).

One fresh ``local[N]`` session per setting (so its Python workers start cold). The first job
on all rows is the *cold* job (worker start, imports, model load, inference); the next job
on the same rows is the *warm* one (workers and models cached). After each job, every
worker's PSS (proportional set size: shared pages split between the processes that map
them) and RSS are read from ``/proc/<pid>/smaps_rollup``; the workers' CPU seconds come from
``/proc/<pid>/stat`` (the machine may be shared, so CPU time is the steadier number).

Run it::

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.coldstart            # daemon on and off
    HFSPARK_COLD_MODES=hfspark .venv/bin/python -m bench.coldstart  # one setting

Example:
    >>> res = measure("hfspark", data, model, rows=2000, cores=2)
    >>> res["cold_rows_per_s"] / res["warm_rows_per_s"]
    0.93
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.models import MAX_LENGTH, prepare_models
from bench.monitor import WorkerMemory, proc_pss_mib, python_workers
from bench.systems import ENGINE, spark_settings

__all__ = ["MODES", "measure", "main"]

#: session settings per mode: hfspark's defaults (preloading daemon), PySpark's plain daemon.
MODES: dict[str, dict[str, str]] = {
    "hfspark": {},
    "plain daemon": {"spark.python.daemon.module": "pyspark.daemon"},
}


def _memory() -> dict[str, Any]:
    pids = python_workers()
    pss = {pid: proc_pss_mib(pid) for pid in pids}
    known = {p: v for p, v in pss.items() if v is not None}
    return {
        "workers": len(known),
        "pss_mib": {str(p): round(v[0], 1) for p, v in known.items()},
        "rss_mib": {str(p): round(v[1], 1) for p, v in known.items()},
        "pss_total_mib": round(sum(v[0] for v in known.values()), 1),
    }


def measure(
    mode: str, data: Path, model_dir: Path, *, rows: int, cores: int, partitions: int
) -> dict[str, Any]:
    """One fresh session: a cold job then a warm job on ``rows`` rows; times, CPU, memory."""
    from hfspark.session import local_spark
    from hfspark.udfs import model_udf

    stats = Path(tempfile.mkdtemp(prefix="hfspark-cold-"))
    conf = {**spark_settings(cores, stats), **MODES[mode]}
    t0 = time.perf_counter()
    spark = local_spark(f"local[{cores}]", app_name="hfspark-cold", conf=conf)
    session_s = time.perf_counter() - t0
    try:
        df = spark.read.parquet(str(data)).repartition(partitions).cache()
        df.count()  # the input read is not what is measured
        udf = model_udf(str(model_dir), task="text-classification", max_length=MAX_LENGTH, **ENGINE)
        out: dict[str, Any] = {"mode": mode, "rows": rows, "session_s": round(session_s, 2)}
        with WorkerMemory() as mem:
            for name in ("cold", "warm"):
                snap = mem.cpu_snapshot()
                start = time.perf_counter()
                df.select("id", udf("text").alias("p")).write.format("noop").mode(
                    "overwrite"
                ).save()
                seconds = time.perf_counter() - start
                out[f"{name}_s"] = round(seconds, 2)
                out[f"{name}_rows_per_s"] = round(rows / seconds, 1)
                out[f"{name}_cpu_s"] = round(mem.cpu_since(snap), 1)
                out[f"{name}_memory"] = _memory()
        out["ratio"] = round(out["cold_rows_per_s"] / out["warm_rows_per_s"], 3)
        try:
            from hfspark.jobs.startup import worker_startup

            out["startup"] = worker_startup(spark)
        except ImportError:
            pass
        return out
    finally:
        spark.stop()


def main() -> int:
    """Measure each mode of ``HFSPARK_COLD_MODES`` (default: all) and print JSON lines."""
    import pandas as pd

    from bench.data import bench_texts

    rows = int(os.environ.get("HFSPARK_BENCH_ROWS", "2000"))
    cores = int(os.environ.get("HFSPARK_BENCH_CORES", "2"))
    work = Path(
        os.environ.get("HFSPARK_BENCH_WORK") or Path(tempfile.gettempdir()) / "hfspark-bench"
    )
    model = prepare_models(work, ["text-classification"])["text-classification"]
    data = work / "data" / f"rows-{rows}.parquet"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        texts = bench_texts(rows)
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(data, index=False)
    modes = [m.strip() for m in os.environ.get("HFSPARK_COLD_MODES", ",".join(MODES)).split(",")]
    for mode in modes:
        res = measure(mode, data, model.hfspark, rows=rows, cores=cores, partitions=cores)
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
