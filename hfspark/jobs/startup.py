"""The executors' Python workers seen from the driver: model loads and where startup went.

One tiny probe job (``mapInPandas``, so it runs in the same pool of reused Python workers
as the model UDFs) reads each worker's load count and its startup record
(:mod:`hfspark.udfs.startup`); workers that exited (idle for a minute) are not seen.

Example:
    >>> from hfspark.jobs.startup import worker_startup
    >>> worker_startup(spark)["slowest"]
    {'start_s': 0.41, 'imports_s': 0.3, 'weights_s': 0.22, 'processors_s': 0.05, ...}
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PHASES", "describe", "load_counts", "summarize", "worker_probe", "worker_startup"]

#: the phases of a worker's startup record, in the order they happen.
PHASES = (
    "start_s",
    "imports_s",
    "weights_s",
    "processors_s",
    "load_s",
    "first_call_s",
    "first_output_s",
)


def _probe(frames: Any) -> Any:
    import os
    import socket

    import pandas as pd

    from hfspark.udfs.executor import load_count
    from hfspark.udfs.startup import snapshot

    for _ in frames:
        pass
    yield pd.DataFrame(
        {
            "worker": [f"{socket.gethostname()}:{os.getpid()}"],
            "loads": [load_count()],
            "startup": [json.dumps(snapshot())],
        }
    )


def worker_probe(spark: Any) -> list[dict[str, Any]]:
    """One row per Python worker the probe reached: ``worker``, ``loads``, ``startup``."""
    try:
        n = max(2, spark.sparkContext.defaultParallelism * 2)
    except Exception:  # noqa: BLE001 - Spark Connect
        n = 4
    rows = (
        spark.range(0, n, 1, n)
        .mapInPandas(_probe, "worker string, loads int, startup string")
        .collect()
    )
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen[r["worker"]] = {
            "worker": r["worker"],
            "loads": int(r["loads"]),
            "startup": json.loads(r["startup"] or "{}"),
        }
    return [seen[k] for k in sorted(seen)]


def load_counts(probe: list[dict[str, Any]]) -> dict[str, int]:
    """Models loaded per worker (``host:pid``)."""
    return {p["worker"]: p["loads"] for p in probe}


def summarize(probe: list[dict[str, Any]]) -> dict[str, Any]:
    """The startup records of the workers that ran a model, and the slowest of each phase.

    Example:
        >>> summarize([{"worker": "h:1", "loads": 1, "startup": {"start_s": 0.5}}])["slowest"]
        {'start_s': 0.5}
    """
    records = [{"worker": p["worker"], **p["startup"]} for p in probe if p["startup"]]
    if not records:
        return {}
    slowest = {
        k: max(r[k] for r in records if r.get(k) is not None)
        for k in PHASES
        if any(r.get(k) is not None for r in records)
    }
    daemons = sorted({str(r.get("daemon") or "pyspark") for r in records})
    fallbacks = sorted({r["fallback"] for r in records if r.get("fallback")})
    out: dict[str, Any] = {"workers": records, "slowest": slowest, "daemon": ",".join(daemons)}
    preloaded = next((r for r in records if r.get("preloaded")), None)
    if preloaded is not None:
        out["preloaded"] = preloaded["preloaded"]
        out["preload_s"] = preloaded.get("preload_s")
    if any(r.get("zygote") for r in records):
        out["zygote"] = True  # the daemon preloaded beside the JVM (hfspark.udfs.zygote)
    if fallbacks:
        out["fallback"] = fallbacks[0]
    kernels = sorted({k for r in records for k in str(r.get("cpu_kernels") or "").split(",") if k})
    if kernels:
        out["cpu_kernels"] = ",".join(kernels)  # what ran the CPU Linear layers (udfs.kernels)
    return out


def worker_startup(spark: Any) -> dict[str, Any]:
    """:func:`summarize` of a fresh probe (``{}`` if no worker that ran a model was seen)."""
    return summarize(worker_probe(spark))


def describe(startup: dict[str, Any]) -> str:
    """One line for a report: the slowest worker's phases and which daemon forked it.

    Example:
        >>> describe({"slowest": {"start_s": 0.4, "load_s": 0.3}, "daemon": "hfspark"})
        'start 0.40s, load 0.30s (slowest of 0 workers; daemon hfspark)'
    """
    if not startup:
        return "n/a"
    slow = startup.get("slowest", {})
    parts = [
        f"{k.removesuffix('_s').replace('_', ' ')} {slow[k]:.2f}s" for k in PHASES if k in slow
    ]
    tail = f"slowest of {len(startup.get('workers', []))} workers; daemon {startup.get('daemon')}"
    if startup.get("preloaded"):
        tail += f", preloaded {len(startup['preloaded'])} modules in {startup.get('preload_s')}s"
        if startup.get("zygote"):
            tail += " beside the JVM"
    if startup.get("fallback"):
        tail += f", fell back: {startup['fallback']}"
    if startup.get("cpu_kernels"):
        tail += f", CPU Linear layers on {startup['cpu_kernels']}"
    return ", ".join(parts) + f" ({tail})"
