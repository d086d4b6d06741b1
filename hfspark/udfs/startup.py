"""Where a Python worker's first seconds go: start, imports, weights, first model call.

Each Python worker keeps one small record (a dict of floats), filled as it happens and
read back on the driver by a probe job (:func:`hfspark.jobs.startup.worker_startup`):

* ``start_s``: process start (fork from the daemon, or exec) -> first model UDF call
  (PySpark's worker setup, unpickling the UDF, the first Arrow batch);
* ``imports_s``: first call -> model load start (torch, hfspark's executor modules) plus the
  model class's import inside the load (transformers); small when the daemon preloaded
  them (:mod:`hfspark.udfs.daemon`);
* ``weights_s``: config + weights (``from_pretrained``), ``processors_s``: tokenizer etc.;
* ``load_s``: the whole first model load (the three above and the rest of ``get_runtime``);
* ``first_call_s``: the first forward call (one length-sorted batch), lazy kernel set-up
  included; ``first_output_s``: process start -> the end of that call;
* ``cpu_kernels``: what ran the CPU Linear layers of the models it loaded (``onednn``,
  ``aten``; :mod:`hfspark.udfs.kernels`);
* ``daemon``: which daemon forked the worker (``hfspark``, or ``None``), its ``preloaded``
  modules and ``preload_s``; ``zygote``: the daemon came from the zygote that preloaded
  beside the JVM (:mod:`hfspark.udfs.zygote`); ``fallback``: why the hfspark daemon fell
  back (or did not use the zygote), if it did.

Nothing here imports torch (an ONNX worker must not), and a record costs a few
microseconds per worker.

Example:
    >>> from hfspark.udfs.startup import record, snapshot
    >>> record("imports_s", 0.02)
    >>> snapshot()["imports_s"]
    0.02
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

__all__ = [
    "DAEMON_ENV",
    "FALLBACK_ENV",
    "PRELOADED_ENV",
    "PRELOAD_S_ENV",
    "ZYGOTE_MARK_ENV",
    "first_call_done",
    "mark_first_use",
    "note",
    "process_start",
    "record",
    "since_first_use",
    "snapshot",
]

#: set by :mod:`hfspark.udfs.daemon` in its environment before it forks workers.
DAEMON_ENV = "HFSPARK_DAEMON"
PRELOADED_ENV = "HFSPARK_DAEMON_PRELOADED"
PRELOAD_S_ENV = "HFSPARK_DAEMON_PRELOAD_S"
FALLBACK_ENV = "HFSPARK_DAEMON_FALLBACK"
#: "1" in a daemon forked from the zygote that preloaded beside the JVM (hfspark.udfs.zygote)
ZYGOTE_MARK_ENV = "HFSPARK_DAEMON_ZYGOTE"

_RECORD: dict[str, Any] = {}
_FIRST_CALL = False


def process_start() -> float | None:
    """This process's start time (``time.time()`` scale) from ``/proc``; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(ln.split()[1]) for ln in f if ln.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def mark_first_use() -> None:
    """Called on a worker's first model UDF call: who forked it and how long it took."""
    if "pid" in _RECORD:
        return
    now = time.time()
    started = process_start()
    _RECORD.update(
        pid=os.getpid(),
        host=socket.gethostname(),
        daemon=os.environ.get(DAEMON_ENV) or None,
        preloaded=[m for m in os.environ.get(PRELOADED_ENV, "").split(",") if m],
        preload_s=float(os.environ.get(PRELOAD_S_ENV, "0") or 0),
        fallback=os.environ.get(FALLBACK_ENV) or None,
        zygote=os.environ.get(ZYGOTE_MARK_ENV) == "1",
        # /proc's start time has a 10 ms tick; a worker just forked may read slightly negative.
        start_s=round(max(0.0, now - started), 3) if started is not None else None,
        _t0=started if started is not None else now,
        _used=now,
    )


def since_first_use() -> float:
    """Seconds since :func:`mark_first_use` (0 before it)."""
    return time.time() - _RECORD["_used"] if "_used" in _RECORD else 0.0


def record(key: str, seconds: float) -> None:
    """Keep the first value of ``key`` (a phase's seconds) for this worker."""
    _RECORD.setdefault(key, round(seconds, 4))


def note(key: str, value: str) -> None:
    """Add ``value`` to the comma-separated set this worker keeps under ``key``.

    Example:
        >>> note("cpu_kernels", "onednn"); note("cpu_kernels", "aten")
        >>> snapshot()["cpu_kernels"]
        'aten,onednn'
    """
    seen = set(filter(None, str(_RECORD.get(key, "")).split(",")))
    _RECORD[key] = ",".join(sorted(seen | {value}))


def first_call_done(seconds: float) -> None:
    """The end of this worker's first forward call (a no-op after the first)."""
    global _FIRST_CALL
    if _FIRST_CALL:
        return
    _FIRST_CALL = True
    record("first_call_s", seconds)
    if "_t0" in _RECORD:
        record("first_output_s", time.time() - _RECORD["_t0"])


def snapshot() -> dict[str, Any]:
    """This worker's record so far (empty if it never ran a model UDF)."""
    return {k: v for k, v in _RECORD.items() if not k.startswith("_")}
