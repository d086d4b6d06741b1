"""Drive a task adapter like the UDF engine does, without Spark (for adapter tests).

convert each row (a RowError marks that row) -> prepare (per row again if the batch
fails) -> sort by ``length`` -> ``forward`` in batches under ``torch.inference_mode`` ->
outputs back in input order.

Example:
    >>> out = run_adapter(TextGeneration({"max_new_tokens": 4}), folder, ["Hello"], batch_size=2)
    >>> out[0]["finish_reason"]
    'length'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfspark.errors import RowError
from hfspark.tasks.base import LoadedModel, TaskAdapter

__all__ = ["load", "run_adapter"]


def load(adapter: TaskAdapter, folder: Path | str) -> LoadedModel:
    """Load a model folder for ``adapter`` on the CPU in float32."""
    return adapter.load(Path(folder), {}, "cpu", None)


def run_adapter(
    adapter: TaskAdapter, folder: Path | str | LoadedModel, items: list[Any], batch_size: int = 4
) -> list[Any]:
    """Outputs for ``items`` in order; a row that raised RowError gets the exception instead.

    Args:
        adapter: the task adapter (with its options).
        folder: a model folder, or a model already loaded by ``adapter.load``.
        items: one Python value per row (None gives None).
        batch_size: rows per ``forward`` call.
    """
    import torch

    loaded = folder if isinstance(folder, LoadedModel) else load(adapter, folder)
    results: list[Any] = [None] * len(items)
    positions, inputs = [], []
    for pos, value in enumerate(items):
        if value is None:
            continue
        try:
            inputs.append(adapter.convert(value))
            positions.append(pos)
        except RowError as e:
            results[pos] = e
    try:
        features = adapter.prepare(loaded, inputs)
    except RowError:
        kept_pos, features = [], []
        for pos, item in zip(positions, inputs, strict=True):
            try:
                features.extend(adapter.prepare(loaded, [item]))
                kept_pos.append(pos)
            except RowError as e:
                results[pos] = e
        positions = kept_pos
    order = sorted(range(len(features)), key=lambda k: adapter.length(features[k]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        with torch.inference_mode():
            outputs = adapter.forward(loaded, [features[k] for k in batch])
        assert len(outputs) == len(batch), "forward must return one output per feature"
        for k, out in zip(batch, outputs, strict=True):
            results[positions[k]] = out
    return results
