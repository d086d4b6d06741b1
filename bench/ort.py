"""The ONNX Runtime ceiling: the plain model exported once, run with one intra-op thread.

:func:`export_plain` traces the model as the torch ceiling runs it (``input_ids`` +
``attention_mask`` by keyword; logits for classification, the last hidden state for
embeddings) with ``torch.onnx.export`` (opset 17, dynamic batch and token axes), outside
hfspark. :func:`ort_forward_all` runs it over length-sorted batches with the same padding,
softmax and mean pooling as :func:`bench.ceiling.forward_all`, in numpy.

Example:
    >>> graph = export_plain(folder, "feature-extraction", work / "ceiling.onnx")
    >>> session = ort_session(graph)
    >>> vectors = ort_forward_all(session, "feature-extraction", ids, 8, keep=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_plain", "ort_session", "ort_forward_all"]


def export_plain(folder: Path, task: str, out: Path) -> Path:
    """Export the plain model of ``folder`` to ``out`` (reused when it is there)."""
    if out.is_file():
        return out
    import warnings

    import torch

    from bench.ceiling import load_model, pad_right

    model, tokenizer = load_model(folder, task)
    name = "logits" if task == "text-classification" else "hidden"

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            return out.logits if name == "logits" else out.last_hidden_state

    ids, mask = pad_right(tokenizer(["a probe sentence", "b"], truncation=True)["input_ids"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Plain().eval(),
            (ids, mask),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=[name],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                name: {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(out)
    return out


def ort_session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def _post(task: str, out: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if task == "text-classification":
        e = np.exp(out - out.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    w = mask[..., None].astype(out.dtype)
    pooled = (out * w).sum(1) / np.maximum(w.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def ort_forward_all(
    session: Any, task: str, ids: list[list[int]], batch: int, keep: bool = False
) -> list[Any]:
    """As :func:`bench.ceiling.forward_all`, with ONNX Runtime."""
    results: list[Any] = [None] * len(ids)
    order = (
        sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch > 1 else list(range(len(ids)))
    )
    name = session.get_outputs()[0].name
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        input_ids, mask = _pad([ids[i] for i in chunk])
        raw = session.run([name], {"input_ids": input_ids, "attention_mask": mask})[0]
        out = _post(task, raw, mask)
        if keep:
            for row, i in enumerate(chunk):
                results[i] = out[row].tolist()
    return results
