"""The ONNX Runtime engine on an executor: find a verified graph, else export one, else torch.

``engine="onnx"`` (or ``"auto"`` for a verified model family on a CPU worker) runs an encoder
task's graph (:mod:`hfspark.tasks._graph`) in ONNX Runtime. For one model and task options,
in this order:

1. the graph saved in the model folder (``save_model(..., onnx=True)``: ``onnx/<task>-<tag>.onnx``)
   or exported earlier on this machine (``$HFSPARK_CACHE_DIR/onnx/<model key>/``), with a
   passing check record for that very file (its sha256): loaded with ``config.json``, the
   fast tokenizer and ``onnxruntime``; torch is not imported;
2. otherwise, under a file lock (one export per machine, as remote downloads): the model is
   loaded with torch, the graph found is checked (or a new one exported and checked) against
   the torch forward on a probe batch, and the record written;
3. a graph that fails the check (or cannot be exported) is not used: one log line, and the
   torch model runs. The failure is recorded, so other workers do not try again.

Example:
    >>> runtime = onnx_runtime(ref, info)      # None: run torch
    >>> runtime.engine
    'onnx'
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hfspark.flavor.info import ModelInfo
    from hfspark.tasks.base import TaskAdapter
    from hfspark.udfs.reference import ModelRef

__all__ = ["onnx_runtime", "gpu_visible", "task_threads", "graph_dir", "records_dir"]

log = logging.getLogger("hfspark.onnx")


def task_threads() -> int:
    """Intra-op threads for this task: ``HFSPARK_TORCH_THREADS``, else ``spark.task.cpus``, else 1."""
    threads = int(os.environ.get("HFSPARK_TORCH_THREADS", "0"))
    if threads > 0:
        return threads
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:  # noqa: BLE001 - outside a Spark task
        pass
    return 1


def gpu_visible() -> bool:
    """Whether this task may use a GPU (Spark gave it one, or an NVIDIA device is visible)."""
    from hfspark.udfs.executor import _task_gpus

    if _task_gpus():
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists()


def graph_dir(ref: ModelRef) -> Path:
    """Where this machine keeps the graphs it exported for ``ref``'s model."""
    from hfspark.flavor.store import cache_root

    return cache_root() / "onnx" / ref.info.content_hash[:32]


def records_dir() -> Path:
    """Check records of graphs found in model folders, by the graph's sha256."""
    from hfspark.flavor.store import cache_root

    return cache_root() / "onnx" / "verified"


def _record(path: Path) -> dict[str, Any] | None:
    from hfspark.tasks._graph import read_record

    return read_record(path, records_dir())


def _light(
    ref: ModelRef, info: ModelInfo, adapter: TaskAdapter, path: Path, record: dict[str, Any]
) -> Any:
    from hfspark.flavor.peft_load import model_dir_for
    from hfspark.udfs.executor import Runtime

    loaded = adapter.load_onnx(
        model_dir_for(info), info.components, path, record, threads=task_threads()
    )
    return Runtime(
        adapter=adapter,
        loaded=loaded,
        device="cpu",
        dtype="float32",
        nbytes=path.stat().st_size,
        call_cost=adapter.cpu_call_cost,
        engine="onnx",
    )


def _refused(ref: ModelRef, path: Path, record: dict[str, Any]) -> None:
    why = record.get("error") or (
        f"max difference {record.get('max_diff'):.2e} on {record.get('worst_output')!r}, "
        f"tolerance {record.get('tolerance')}"
    )
    log.warning(
        "hfspark: not using the ONNX graph %s for %s (%s): %s; running torch",
        path.name,
        ref.uri,
        ref.task,
        why,
    )


def onnx_runtime(ref: ModelRef, info: ModelInfo) -> Any:
    """The ONNX Runtime runtime of ``ref`` (see the module docs), or a torch one on fallback."""
    from filelock import FileLock

    from hfspark.tasks import get_task

    adapter = get_task(ref.task)(dict(ref.task_options))
    name = f"{adapter.graph_name()}.onnx"
    saved, cached = Path(info.root) / "onnx" / name, graph_dir(ref) / name
    for path in (saved, cached):
        record = _record(path)
        if record is not None and record.get("passed"):
            return _light(ref, info, adapter, path, record)
        if record is not None:  # checked before on this machine, and refused
            _refused(ref, path, record)
            return None
    cached.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cached) + ".lock"):
        record = _record(cached)
        if record is None:
            record = _check(ref, info, adapter, saved, cached)
            if not isinstance(record, dict):
                return record  # the torch runtime: the graph failed its check
        path = Path(record["path"]) if record.get("path") else cached
        if record.get("passed"):
            return _light(ref, info, get_task(ref.task)(dict(ref.task_options)), path, record)
        _refused(ref, path, record)
        return None


def _check(ref: ModelRef, info: ModelInfo, adapter: TaskAdapter, saved: Path, cached: Path) -> Any:
    """Load torch; check the saved graph (or export one). A passing record, or the torch runtime."""
    import torch

    from hfspark.flavor.peft_load import model_dir_for
    from hfspark.tasks._export import export_verified, verify_graph
    from hfspark.udfs.executor import set_torch_threads

    set_torch_threads()  # the task's cpus, as a torch runtime would use
    loaded = adapter.load(model_dir_for(info), info.components, "cpu", torch.float32)
    tokenizer = Path(info.components.get("tokenizer", info.model_dir))
    if saved.is_file():  # in the folder, but not the graph its record was written for
        record = verify_graph(adapter, loaded, saved, tokenizer)
        records_dir().mkdir(parents=True, exist_ok=True)
        (records_dir() / f"{record['sha256']}.json").write_text(json.dumps(record))
        record["path"] = str(saved)
    else:
        record = export_verified(adapter, loaded, cached, tokenizer)
    if record.get("passed"):
        return record
    _refused(ref, saved if saved.is_file() else cached, record)
    from hfspark.udfs.executor import torch_runtime

    return torch_runtime(adapter, loaded, "cpu", loaded.dtype, ref.options.cpu_kernels)
