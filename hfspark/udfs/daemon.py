"""A PySpark daemon that imports torch and transformers once, then forks the Python workers.

PySpark starts one daemon per executor (``python -m <spark.python.daemon.module>
pyspark.worker``) and forks a worker from it for each task slot. PySpark's own daemon forks
from a bare interpreter, so every worker then pays ~7 s of imports (torch ~2.7 s, the
transformers model classes ~4 s on 2 CPU cores) before its first row. This daemon imports
those modules first and then runs PySpark's daemon loop (``pyspark.daemon.manager()``): each
forked worker starts with them imported, and their ~450 MB of memory stays shared
copy-on-write between the workers instead of one private copy each. hfspark sessions set it
(``spark.python.daemon.module=hfspark.udfs.daemon``, see :mod:`hfspark.session`).

What is imported comes from ``HFSPARK_WORKER_PRELOAD`` (in the daemon's environment: set
``spark.executorEnv.HFSPARK_WORKER_PRELOAD``), a comma-separated list of groups or module
names; default ``torch,transformers,tokenizers,hfspark``; ``none`` imports nothing (an ONNX
Runtime deployment: ``onnx,hfspark``, no torch). Groups:

* ``torch``, ``tokenizers``, ``onnxruntime``: the package;
* ``onnx``: what an ONNX Runtime worker imports (onnxruntime, the fast tokenizer class, the
  encoder task adapters), no torch;
* ``transformers``: the package and its model/tokenizer Auto classes (what costs the time);
* ``hfspark``: the hfspark modules a worker imports to run a model UDF.

The daemon first offers itself to a zygote that preloaded beside the JVM
(:func:`hand_off`, :mod:`hfspark.udfs.zygote`, local sessions) and preloads here only
when there is none, or it refuses.

Fork safety: importing starts no intra-op pool (torch's OpenMP threads start on the first
parallel op; nothing runs here), tokenizers' pool starts on first use, and CUDA is never
touched (if something initialised it, the daemon falls back). Nothing here imports pandas
or pyarrow (PySpark imports them after the fork on purpose). The imported objects are moved
to the GC's permanent generation (``gc.freeze()``) so the workers' collections do not write
to the shared pages. If an import fails, or CUDA got initialised, the daemon replaces itself
with PySpark's plain daemon (``pyspark.daemon``) and the workers run as without hfspark's;
the reason is logged to the executor's stderr and reported by the workers.

Example:
    >>> # spark-submit --conf spark.python.daemon.module=hfspark.udfs.daemon \\
    >>> #   --conf spark.executorEnv.HFSPARK_WORKER_PRELOAD=torch,transformers,tokenizers ...
    >>> from hfspark.udfs.daemon import preload_modules
    >>> preload_modules("torch,tokenizers")
    ['torch', 'tokenizers']
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import struct
import sys
import time
from typing import Any, NoReturn

from hfspark.session import ZYGOTE_ENV
from hfspark.udfs.startup import DAEMON_ENV, FALLBACK_ENV, PRELOAD_S_ENV, PRELOADED_ENV

__all__ = [
    "DEFAULT_PRELOAD",
    "HANDOFF_HEADER",
    "MODULE",
    "PRELOAD_ENV",
    "hand_off",
    "main",
    "preload",
    "preload_modules",
    "run_manager",
]

#: the value of ``spark.python.daemon.module`` that selects this daemon.
MODULE = "hfspark.udfs.daemon"
PRELOAD_ENV = "HFSPARK_WORKER_PRELOAD"
DEFAULT_PRELOAD = "torch,transformers,tokenizers,hfspark"

_GROUPS: dict[str, tuple[str, ...]] = {
    "transformers": (
        "transformers",
        "transformers.modeling_utils",
        "transformers.models.auto.modeling_auto",
        "transformers.models.auto.tokenization_auto",
    ),
    # the ONNX Runtime engine's worker: no torch (hfspark.udfs.onnx)
    "onnx": (
        "onnxruntime",
        "tokenizers",
        "transformers.tokenization_utils_tokenizers",
        "hfspark.tasks._graph",
        "hfspark.udfs.onnx",
        "hfspark.tasks.text_classification",
        "hfspark.tasks.token_classification",
        "hfspark.tasks.feature_extraction",
        "hfspark.tasks.fill_mask",
        "hfspark.tasks.question_answering",
        "hfspark.tasks.zero_shot",
    ),
    "hfspark": (
        "hfspark.errors",
        "hfspark.udfs.options",
        "hfspark.udfs.reference",
        "hfspark.udfs.executor",
        "hfspark.tasks.registry",
        "hfspark.flavor.info",
    ),
}
_OFF = {"none", "off", "false", "0"}
#: the hand-off's first message: the request's length (its pipes travel with it)
HANDOFF_HEADER = struct.Struct("!I")


def preload_modules(spec: str | None = None) -> list[str]:
    """The modules to import for ``spec`` (default: ``$HFSPARK_WORKER_PRELOAD``), in order.

    Example:
        >>> preload_modules("none")
        []
    """
    if spec is None:
        spec = os.environ.get(PRELOAD_ENV, DEFAULT_PRELOAD)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names or any(n.lower() in _OFF for n in names):
        return []
    out: list[str] = []
    for name in names:
        for module in _GROUPS.get(name, (name,)):
            if module not in out:
                out.append(module)
    return out


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a partial or odd torch: treat as not fork-safe
        return True


def preload(modules: list[str]) -> float:
    """Import ``modules`` (C-level output sent to stderr: stdout carries the daemon's port).

    Raises:
        ImportError: a module is missing (or any error its import raises).
        RuntimeError: CUDA was initialised by an import (the workers could not use it).
    """
    start = time.perf_counter()
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    if _cuda_initialised():
        raise RuntimeError("CUDA was initialised while preloading; forked workers cannot use it")
    return time.perf_counter() - start


def _fall_back(reason: str) -> None:
    """Replace this process with PySpark's plain daemon (same arguments and environment)."""
    os.environ[FALLBACK_ENV] = reason[:300]
    os.environ.pop(DAEMON_ENV, None)
    sys.stderr.write(f"hfspark daemon: preloading failed ({reason}); using pyspark.daemon\n")
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "pyspark.daemon", *sys.argv[1:]])
    except OSError:
        from pyspark.daemon import manager

        manager()


def main() -> None:
    """Preload, then run PySpark's daemon loop; on any failure, PySpark's plain daemon.

    A zygote that preloaded beside the JVM (:mod:`hfspark.udfs.zygote`, local sessions)
    takes the daemon over instead when its environment matches.
    """
    hand_off()  # returns only when there is no zygote to hand over to
    modules = preload_modules()
    try:
        seconds = preload(modules)
        import pyspark.daemon  # noqa: F401 - what run_manager runs
    except BaseException as e:  # noqa: BLE001 - any failure: the plain daemon, never none
        _fall_back(f"{type(e).__name__}: {e}")
        return
    run_manager(modules, seconds)


def run_manager(modules: list[str], seconds: float) -> None:
    """Mark this process as hfspark's daemon (for the workers' startup record), freeze the
    imported objects, and run PySpark's daemon loop (here, or in a fork of the zygote).

    Example:
        >>> run_manager(preload_modules(), preload(preload_modules()))   # never returns
    """
    from pyspark.daemon import manager

    os.environ[DAEMON_ENV] = "hfspark"
    os.environ[PRELOADED_ENV] = ",".join(modules)
    os.environ[PRELOAD_S_ENV] = f"{seconds:.3f}"
    gc.collect()
    gc.freeze()  # keep the workers' GC passes off the shared pages
    manager()


# ----------------------------------------------------------------------------- the hand-off
def hand_off() -> bool:
    """Hand this daemon process over to the zygote named by ``$HFSPARK_ZYGOTE``.

    Returns False (nothing changed; preload here) when there is no zygote, it cannot be
    reached, or it refuses (the reason is kept for the workers' startup record). On success
    this process only stands in for the real daemon and never returns.
    """
    spec = os.environ.get(ZYGOTE_ENV, "")  # <socket path>#<token>
    if not spec or spec.strip().lower() in ("0", "off", "false", "no"):
        return False
    path, _, token = spec.partition("#")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(5)
        conn.connect(path)
        payload = json.dumps(
            {
                "token": token,
                "executable": sys.executable,
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "argv": sys.argv,
                "path": sys.path,
            }
        ).encode()
        socket.send_fds(conn, [HANDOFF_HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        conn.settimeout(180)  # the zygote may still be importing
        reply = json.loads(_read_line(conn) or b"{}")
    except (OSError, ValueError) as e:
        conn.close()
        _note_fallback(f"zygote unreachable ({type(e).__name__}: {e})")
        return False
    if "pid" not in reply:
        conn.close()
        _note_fallback(f"zygote refused: {reply.get('refused', 'no answer')}")
        return False
    _stand_in(conn, int(reply["pid"]))


def _note_fallback(reason: str) -> None:
    os.environ[FALLBACK_ENV] = reason[:300]
    sys.stderr.write(f"hfspark daemon: {reason}; preloading here\n")
    sys.stderr.flush()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stand_in(conn: socket.socket, pid: int) -> NoReturn:
    """Live as long as the real daemon; pass Spark's SIGTERM on to it."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    # Ctrl-C reaches the JVM's process group (this process, not the daemon, which has its own
    # group): PySpark's daemon never saw it, so it is not passed on
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for fd in (0, 1):  # the real daemon owns the JVM's pipes now
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    conn.settimeout(0.5)
    while _alive(pid):
        try:
            if not conn.recv(1):
                break  # the daemon (and its workers) closed their end
        except TimeoutError:
            continue
        except OSError:
            break
    os._exit(0)


if __name__ == "__main__":
    main()
