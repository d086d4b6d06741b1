"""Executor side: device and dtype choice, torch threads, and the per-process model cache.

Each Python worker loads a model once and keeps it in a small LRU cache keyed by
content hash + task + device + dtype, bounded by entry count and by memory, so several
models can serve one query and repeated tasks reuse them.

Example:
    >>> from hfspark.udfs.executor import load_count
    >>> load_count()          # models loaded by this Python process so far
    0
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hfspark.flavor.info import ModelInfo
    from hfspark.udfs.kernels import Mode
    from hfspark.udfs.reference import ModelRef

__all__ = [
    "Runtime",
    "get_runtime",
    "torch_runtime",
    "load_count",
    "choose_device",
    "choose_dtype",
    "set_torch_threads",
    "clear_cache",
]

log = logging.getLogger("hfspark.executor")

_LOCK = threading.RLock()
_CACHE: OrderedDict[tuple[str, str, str], Runtime] = OrderedDict()
_LOADS = 0


@dataclass
class Runtime:
    """A loaded model with its adapter, ready to predict."""

    adapter: Any
    loaded: Any
    device: Any
    dtype: Any
    nbytes: int
    #: what one forward call costs on a CPU, in padded tokens (see :func:`cpu_call_cost`).
    call_cost: float | None = None
    #: ``torch`` or ``onnx`` (ONNX Runtime: no torch in this process for it).
    engine: str = "torch"


def load_count() -> int:
    """How many models this Python process has loaded."""
    return _LOADS


def clear_cache() -> None:
    """Drop every cached model of this process."""
    with _LOCK:
        _CACHE.clear()


def _task_gpus() -> list[str]:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None and "gpu" in ctx.resources():
            return list(ctx.resources()["gpu"].addresses)
    except Exception:  # noqa: BLE001 - outside a Spark task
        pass
    return []


def choose_device(requested: str) -> str:
    """``auto``: the GPU Spark gave this task, else a visible CUDA device, else the CPU.

    Example:
        >>> choose_device("cpu")
        'cpu'
    """
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            from hfspark.errors import ConfigError

            raise ConfigError(
                f"device={requested!r} but no CUDA device is visible; use device='auto'"
            )
        return requested
    gpus = _task_gpus()
    if gpus and torch.cuda.is_available():
        # Spark's addresses are physical ids; with CUDA_VISIBLE_DEVICES set they are re-indexed.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            ids = [v.strip() for v in visible.split(",")]
            index = ids.index(gpus[0]) if gpus[0] in ids else 0
        else:
            index = int(gpus[0])
        return f"cuda:{index}"
    if torch.cuda.is_available():
        return "cuda:0"
    return "cpu"


def choose_dtype(requested: str, device: str) -> Any:
    """``auto``: bfloat16 (or float16) on a GPU, float32 on the CPU (half is slow there)."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def set_torch_threads() -> int:
    """Torch intra-op threads = the task's CPU count (``spark.task.cpus``), default 1."""
    import torch

    threads = int(os.environ.get("HFSPARK_TORCH_THREADS", "0"))
    if threads <= 0:
        threads = 1
        try:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            if ctx is not None:
                threads = max(1, int(ctx.cpus()))
        except Exception:  # noqa: BLE001 - outside a Spark task
            threads = max(1, torch.get_num_threads())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _record_load(ref: ModelRef, device: str, seconds: float) -> None:
    global _LOADS
    _LOADS += 1
    log.warning(
        "hfspark: loaded %s (%s, %s) on %s in %.1fs [pid %d, load #%d]",
        ref.uri,
        ref.task,
        ref.content_hash[:12],
        device,
        seconds,
        os.getpid(),
        _LOADS,
    )
    stats_dir = os.environ.get("HFSPARK_STATS_DIR")
    if stats_dir:
        Path(stats_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(stats_dir) / "loads.log", "a") as f:
            f.write(f"{os.getpid()}\t{ref.content_hash}\t{device}\t{seconds:.3f}\n")


def _startup_before_load() -> float:
    """Seconds from this worker's first UDF call to its first model load (imports mostly)."""
    from hfspark.udfs.startup import since_first_use

    return since_first_use()


def _record_startup(before: float, seconds: float, loaded: Any) -> None:
    """This worker's first load in its startup record: imports, weights, processors."""
    from hfspark.udfs import startup

    phases = getattr(loaded, "extras", {}).get("load_s", {})
    startup.record("imports_s", before + float(phases.get("imports", 0.0)))
    startup.record("load_s", seconds)
    for name in ("weights", "processors"):
        if name in phases:
            startup.record(f"{name}_s", float(phases[name]))
    kernels = getattr(loaded, "extras", {}).get("cpu_kernels")
    if kernels:
        startup.note("cpu_kernels", kernels["kernels"])


def _cache_limits() -> tuple[int, int]:
    entries = int(os.environ.get("HFSPARK_MODEL_CACHE_SIZE", "3"))
    mbytes = int(os.environ.get("HFSPARK_MODEL_CACHE_MB", "0"))  # 0: no memory bound
    return max(1, entries), mbytes * 2**20


#: all-MiniLM-L6-v2, where the encoders' ``cpu_call_cost`` was measured: 6 layers and
#: 10.6 M parameters outside the embeddings.
_REFERENCE_LAYERS, _REFERENCE_PARAMS = 6, 10.6e6


def cpu_call_cost(prior: float | None, model: Any) -> float | None:
    """The task's CPU call cost (padded tokens per forward call) scaled to this model.

    A call's fixed cost grows with the number of layers (one dispatch each), a token's cost
    with the parameters outside the embeddings. ``prior`` is measured on all-MiniLM-L6-v2
    (~8 tokens); a 1-layer, 32-wide model comes out near 1,700, so its rows share big
    batches, and BERT-base near 2.

    Example:
        >>> cpu_call_cost(8.0, minilm_model)
        8.0
    """
    if prior is None:
        return None
    params = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None) or _REFERENCE_LAYERS
    scale = (_REFERENCE_PARAMS / max(params, 1)) * (layers / _REFERENCE_LAYERS)
    return float(min(max(prior * scale, prior / 4), 1e5))


def _local_info(ref: ModelRef) -> ModelInfo:
    """The driver's ModelInfo, with its folder on this machine (downloaded or unpacked once)."""
    from hfspark.flavor.store import resolve_local

    if ref.shipped is not None:
        from hfspark.udfs.shipping import unpack_shipped

        root = Path(unpack_shipped(ref.shipped, ref.content_hash))
    else:
        root = resolve_local(
            ref.uri
        )  # a local path as it is; a remote one from this machine's cache
    if Path(root) == Path(ref.info.root):
        return ref.info  # the driver's folder is readable here (local mode, shared path)
    return ref.info.relocated(root)


def _wants_onnx(ref: ModelRef) -> bool:
    """ONNX Runtime for this worker: ``engine="onnx"``, or ``auto`` on a worker without a GPU."""
    engine = getattr(ref, "engine", "torch")
    if engine == "onnx":
        return True
    if engine == "auto" and ref.options.device in ("auto", "cpu"):
        from hfspark.udfs.onnx import gpu_visible

        return ref.options.device == "cpu" or not gpu_visible()
    return False


def get_runtime(ref: ModelRef) -> Runtime:
    """The cached runtime for ``ref`` in this process, loading the model on first use.

    Nothing is re-read or re-validated here: the driver resolved ``ref`` (URI, metadata,
    task options); this only finds the folder on this machine and loads the weights (or,
    for the ONNX engine, a verified graph: :mod:`hfspark.udfs.onnx`, no torch import).
    """
    if _wants_onnx(ref):
        key = (ref.cache_key, "cpu", "onnx")
        with _LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
            from hfspark.udfs.onnx import onnx_runtime

            start, before = time.perf_counter(), _startup_before_load()
            runtime = onnx_runtime(ref, _local_info(ref))
            if runtime is not None:
                seconds = time.perf_counter() - start
                _record_load(ref, f"cpu/{runtime.engine}", seconds)
                _record_startup(before, seconds, runtime.loaded)
                return _keep(key, runtime)
    set_torch_threads()
    return _torch_runtime(ref)


def _torch_runtime(ref: ModelRef) -> Runtime:
    from hfspark.flavor.peft_load import model_dir_for  # PEFT: base + adapter merged, cached
    from hfspark.tasks import get_task

    opts = ref.options
    device = choose_device(opts.device) if opts.device_map is None else "auto"
    dtype = choose_dtype(opts.torch_dtype, device if device != "auto" else "cuda")
    key = (ref.cache_key, device, str(dtype))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        start, before = time.perf_counter(), _startup_before_load()
        info = _local_info(ref)
        adapter = get_task(ref.task)(dict(ref.task_options))
        target = opts.device_map if opts.device_map else device
        loaded = adapter.load(model_dir_for(info), info.components, target, dtype)
        runtime = torch_runtime(adapter, loaded, device, dtype, opts.cpu_kernels)
        _record_load(ref, str(getattr(loaded, "device", device)), time.perf_counter() - start)
        _record_startup(before, time.perf_counter() - start, loaded)
        return _keep(key, runtime)


def torch_runtime(
    adapter: Any, loaded: Any, device: Any, dtype: Any, cpu_kernels: Mode = "auto"
) -> Runtime:
    """The Runtime of a loaded torch model: its CPU kernels chosen, its size and call cost.

    On a CPU the float32 Linear layers go to oneDNN first (:func:`~hfspark.udfs.kernels.use_onednn`,
    what ran is kept in ``loaded.extras["cpu_kernels"]``).

    Example:
        >>> torch_runtime(adapter, adapter.load(folder, {}, "cpu", None), "cpu", None).call_cost
        8.0
    """
    if str(device) == "cpu":
        from hfspark.udfs.kernels import use_onednn

        loaded.extras["cpu_kernels"] = use_onednn(loaded.model, cpu_kernels)
    return Runtime(
        adapter=adapter,
        loaded=loaded,
        device=device,
        dtype=dtype,
        nbytes=sum(p.numel() * p.element_size() for p in loaded.model.parameters()),
        call_cost=cpu_call_cost(adapter.cpu_call_cost, loaded.model),
    )


def _keep(key: tuple[str, str, str], runtime: Runtime) -> Runtime:
    """Cache ``runtime`` (evicting the oldest past the limits) and freeze the heap for gc."""
    import sys

    _CACHE[key] = runtime
    max_entries, max_bytes = _cache_limits()
    gc.unfreeze()
    while len(_CACHE) > max_entries or (
        max_bytes and len(_CACHE) > 1 and sum(r.nbytes for r in _CACHE.values()) > max_bytes
    ):
        _CACHE.popitem(last=False)
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    # PySpark's daemon runs gc.collect() after every task of a reused worker: with torch,
    # transformers and a model loaded that walks ~500k objects (~0.27 s per task). Freeze
    # them into the permanent generation so those collections skip them.
    gc.collect()
    gc.freeze()
    return runtime
