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
from bench.monitor import WorkerMemory, proc_pss_mib, python_daemons, python_workers
from bench.systems import ENGINE, spark_settings

__all__ = ["MODES", "measure", "main"]

#: session settings per mode: hfspark's defaults (preloading daemon), PySpark's plain daemon,
#: and the ONNX Runtime engine (its graph saved with the model; the daemon preloads no torch).
MODES: dict[str, dict[str, str]] = {
    "hfspark": {},
    "plain daemon": {"spark.python.daemon.module": "pyspark.daemon"},
    "hfspark onnx": {"spark.executorEnv.HFSPARK_WORKER_PRELOAD": "onnx,hfspark"},
}
#: model_udf options per mode (on top of the bench's ENGINE settings)
MODE_UDF: dict[str, dict[str, Any]] = {"hfspark onnx": {"engine": "onnx"}}


def _memory() -> dict[str, Any]:
    """Workers' PSS and RSS; the total adds the daemons' PSS (the machine's memory for them)."""
    pids = python_workers()
    pss = {pid: proc_pss_mib(pid) for pid in pids}
    known = {p: v for p, v in pss.items() if v is not None}
    daemons = [v for v in (proc_pss_mib(p) for p in python_daemons()) if v is not None]
    return {
        "workers": len(known),
        "pss_mib": {str(p): round(v[0], 1) for p, v in known.items()},
        "rss_mib": {str(p): round(v[1], 1) for p, v in known.items()},
        "daemon_pss_mib": round(sum(v[0] for v in daemons), 1),
        "pss_total_mib": round(sum(v[0] for v in [*known.values(), *daemons]), 1),
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
        udf = model_udf(
            str(model_dir),
            task="text-classification",
            max_length=MAX_LENGTH,
            **ENGINE,
            **MODE_UDF.get(mode, {}),
        )
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


def run_coldstart(
    work: Path, *, rows: int, cores: int, modes: list[str] | None = None
) -> dict[str, Any]:
    """``make bench``'s cold-start section: every mode at ``cores`` workers, and each mode's
    memory with one worker (``local[1]``), for the N-workers vs one-worker memory ratio."""
    import pandas as pd

    from bench.data import bench_texts

    model = prepare_models(work, ["text-classification"])["text-classification"]
    data = work / "data" / f"rows-{rows}.parquet"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        texts = bench_texts(rows)
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(data, index=False)
    out: dict[str, Any] = {"rows": rows, "cores": cores, "runs": [], "one_worker": {}}
    for mode in modes or list(MODES):
        res = measure(mode, data, model.hfspark, rows=rows, cores=cores, partitions=cores)
        out["runs"].append(res)
        print(json.dumps(res), flush=True)
        if cores > 1 and mode != "plain daemon":
            one = measure(mode, data, model.hfspark, rows=rows, cores=1, partitions=1)
            out["one_worker"][mode] = one["warm_memory"]["pss_total_mib"]
    return out


def main() -> int:
    """Measure each mode of ``HFSPARK_COLD_MODES`` (default: all) and print JSON lines."""
    rows = int(os.environ.get("HFSPARK_BENCH_ROWS", "2000"))
    cores = int(os.environ.get("HFSPARK_BENCH_CORES", "2"))
    work = Path(
        os.environ.get("HFSPARK_BENCH_WORK") or Path(tempfile.gettempdir()) / "hfspark-bench"
    )
    modes = [m.strip() for m in os.environ.get("HFSPARK_COLD_MODES", ",".join(MODES)).split(",")]
    run_coldstart(work, rows=rows, cores=cores, modes=modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())


TARGET_COLD = 0.9  # cold job rows/s >= 0.9x the warm job's
TARGET_MEMORY = 1.5  # machine memory for N workers <= 1.5x one worker's


def targets(cold: dict[str, Any]) -> list[tuple[bool, str]]:
    """(passed, line): cold vs warm per mode; N workers' memory vs one worker's."""
    out = []
    for run in cold.get("runs") or []:
        if run["mode"] == "plain daemon":
            continue
        out.append(
            (
                run["ratio"] >= TARGET_COLD,
                f"{run['mode']} cold job >= {TARGET_COLD}x warm at {cold['rows']:,} rows: "
                f"{run['ratio']:.2f}x ({run['cold_rows_per_s']} vs {run['warm_rows_per_s']} rows/s)",
            )
        )
        one = (cold.get("one_worker") or {}).get(run["mode"])
        many = run["warm_memory"]["pss_total_mib"]
        if one:
            n = run["warm_memory"]["workers"]
            out.append(
                (
                    many / one <= TARGET_MEMORY,
                    f"{run['mode']} memory of {n} workers <= {TARGET_MEMORY}x one worker's: "
                    f"{many / one:.2f}x ({many:,.0f} vs {one:,.0f} MiB PSS, daemon included)",
                )
            )
    return out


def section(cold: dict[str, Any]) -> list[str]:
    """The markdown lines of the cold-start table."""
    lines = [
        f"## Cold start (text-classification, {cold['rows']:,} rows, local[{cold['cores']}], "
        "fresh session per mode)",
        "",
        "| mode | cold rows/s | warm rows/s | cold / warm | cold worker CPU-s | warm worker "
        "CPU-s | workers | PSS per worker MiB | daemon PSS MiB | machine PSS MiB | one worker "
        "MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in cold.get("runs") or []:
        mem = run["warm_memory"]
        per = ", ".join(f"{v:,.0f}" for v in mem["pss_mib"].values()) or "-"
        one = (cold.get("one_worker") or {}).get(run["mode"])
        lines.append(
            f"| {run['mode']} | {run['cold_rows_per_s']} | {run['warm_rows_per_s']} | "
            f"{run['ratio']:.2f}x | {run['cold_cpu_s']} | {run['warm_cpu_s']} | "
            f"{mem['workers']} | {per} | {mem.get('daemon_pss_mib', 0):,.0f} | "
            f"{mem['pss_total_mib']:,.0f} | {f'{one:,.0f}' if one else '-'} |"
        )
    lines.append("")
    return lines
