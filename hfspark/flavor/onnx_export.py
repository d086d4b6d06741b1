"""``save_model(..., onnx=True)``: an ONNX graph of the task's model call, saved beside the weights.

The graph goes to ``onnx/<task>-<tag>.onnx`` with its check record ``onnx/<task>-<tag>.json``
(:func:`hfspark.tasks._export.export_verified`: every output within the stated tolerance of
the torch forward on a probe batch). MLflow ignores the folder (an extra artifact): the model
still loads with ``mlflow.transformers.load_model``. A worker running ``engine="onnx"`` or
``"auto"`` uses this graph without importing torch; a model saved without one is exported on
first use per machine (:mod:`hfspark.udfs.onnx`).

Example:
    >>> save_model(pipe, "/models/sst2", onnx=True)
    >>> sorted(p.name for p in Path("/models/sst2/onnx").iterdir())
    ['text-classification-23ea3a0f82.json', 'text-classification-23ea3a0f82.onnx']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import ConfigError, ModelValidationError
from hfspark.flavor.constants import COMPONENTS_DIR

__all__ = ["ONNX_DIR", "export_saved"]

ONNX_DIR = "onnx"


def export_saved(
    root: Path, model_dir: Path, task: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Export and check the graph of the model saved at ``root`` (``model_dir`` its weights).

    Raises:
        ConfigError: the task has no graph (it runs on torch).
        ModelValidationError: the export fails or does not match torch within the tolerance.
    """
    import torch

    from hfspark.tasks import get_task
    from hfspark.tasks._export import export_verified
    from hfspark.tasks._graph import ONNX_TASKS

    adapter_cls = get_task(task)
    if not adapter_cls.exports_onnx():
        raise ConfigError(
            f"onnx=True: task {task!r} runs on torch; ONNX graphs are for {', '.join(ONNX_TASKS)}. "
            "Save without onnx=True."
        )
    adapter = adapter_cls(dict(options))
    comp_root = root / COMPONENTS_DIR
    components = (
        {p.name: p for p in comp_root.iterdir() if p.is_dir()} if comp_root.is_dir() else {}
    )
    loaded = adapter.load(model_dir, components, "cpu", torch.float32)
    path = root / ONNX_DIR / f"{adapter.graph_name()}.onnx"
    record = export_verified(adapter, loaded, path, components.get("tokenizer", model_dir))
    if not record.get("passed"):
        why = record.get("error") or (
            f"max difference {record.get('max_diff')} on {record.get('worst_output')!r}, "
            f"tolerance {record.get('tolerance')}"
        )
        raise ModelValidationError(
            f"onnx=True: the ONNX export of this {task} model does not match torch ({why}). "
            "Save it without onnx=True: it runs on torch."
        )
    return record
