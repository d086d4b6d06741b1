"""Faster CPU paths, speed and output change: hfspark's oneDNN Linear kernels (on by default on
a CPU, see hfspark/udfs/kernels.py), last-layer pruning (on by default for classifiers, see
hfspark/tasks/_first_token.py) and the opt-in int8 dynamic quantization and bfloat16.

One process, one torch thread, the same token ids for every variant, length-sorted batches
as hfspark runs them (``ENGINE`` settings). Speed is relative to float32 measured in the same
process (variants interleaved, best of ``reps``); outputs are compared row by row with the
float32 ones:

* classification: largest absolute difference of any label score, and label agreement;
* embeddings: cosine similarity of each vector with its float32 vector (mean and minimum).

Example:
    >>> rows = run_quant(folder, "text-classification", texts[:300], reps=2)
    >>> [(r.variant, r.speedup, r.label_agreement) for r in rows]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import forward_all, load_model, tokenize
from bench.models import MAX_LENGTH
from bench.systems import ENGINE

__all__ = ["QuantResult", "VARIANTS", "run_quant"]

#: variant name -> load_model keyword arguments.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp32 oneDNN kernels (default)": {"kernels": "onednn"},
    "fp32 pruned last layer": {"prune": True},
    "fp32 pruned + oneDNN (default)": {"prune": True, "kernels": "onednn"},
    "int8 dynamic": {"quantize": "int8"},
    "bf16": {"dtype": "bfloat16"},
}


@dataclass
class QuantResult:
    """One variant of one task."""

    task: str
    variant: str
    rows: int
    rows_per_s: float
    speedup: float  # vs fp32
    max_abs_score_diff: float | None = None
    label_agreement: float | None = None  # fraction of rows
    cosine_mean: float | None = None
    cosine_min: float | None = None


def _compare(task: str, ref: list[list[float]], out: list[list[float]]) -> dict[str, float]:
    import torch

    a, b = torch.tensor(ref), torch.tensor(out)
    if task == "text-classification":
        return {
            "max_abs_score_diff": float((a - b).abs().max()),
            "label_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
        }
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def _onnx_forward(graph: Path, task: str) -> Any:
    """A ``forward_all``-like function running an ONNX graph (plain, or hfspark's own)."""
    import numpy as np

    from bench.ort import _pad, _post, ort_forward_all, ort_session

    session = ort_session(graph)
    names = [i.name for i in session.get_inputs()]
    if names == ["input_ids", "attention_mask"]:  # the plain export of bench.ort
        return lambda ids, batch, keep=False: ort_forward_all(session, task, ids, batch, keep)
    out_name = session.get_outputs()[0].name

    def forward(ids: list[list[int]], batch: int, keep: bool = False) -> list[Any]:
        results: list[Any] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            input_ids, mask = _pad([ids[i] for i in chunk])
            feed = {"input_ids": input_ids, "attention_mask": mask}
            feed = {n: feed.get(n, np.zeros_like(input_ids)) for n in names}  # token_type_ids
            raw = session.run([out_name], feed)[0]
            if task == "text-classification":
                out = _post(task, raw, mask)
            else:  # hfspark's embedding graph pools inside; normalise as the task does
                out = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
            if keep:
                for row, i in enumerate(chunk):
                    results[i] = out[row].tolist()
        return results

    return forward


def run_quant(
    folder: Path,
    task: str,
    texts: Sequence[str],
    *,
    reps: int = 2,
    batch: int | None = None,
    onnx: dict[str, Path | None] | None = None,
) -> list[QuantResult]:
    """Measure every variant of :data:`VARIANTS` on ``texts`` (fp32 first), and each ONNX
    graph of ``onnx`` (variant name -> graph file) run by ONNX Runtime on one thread."""
    import torch

    torch.set_num_threads(1)
    batch = batch or int(ENGINE["batch_size"])
    models = {
        name: load_model(folder, task, **kw)
        for name, kw in VARIANTS.items()
        if not kw.get("prune") or task == "text-classification"
    }  # pruning: classifiers only
    ids = tokenize(models["fp32"][1], texts, MAX_LENGTH)
    runs = {
        name: (lambda i, b, keep=False, m=model: forward_all(m, task, i, b, keep))
        for name, (model, _) in models.items()
    }
    runs.update({name: _onnx_forward(g, task) for name, g in (onnx or {}).items() if g})
    for run in runs.values():  # warm-up: first calls allocate and pick kernels
        run(ids[:batch], batch)
    best = {name: float("inf") for name in runs}
    outputs: dict[str, list] = {}
    for _ in range(max(1, reps)):
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run(ids, batch, keep=True)
            best[name] = min(best[name], time.perf_counter() - start)
    results = []
    for name in runs:
        results.append(
            QuantResult(
                task=task,
                variant=name,
                rows=len(texts),
                rows_per_s=len(texts) / best[name],
                speedup=best["fp32"] / best[name],
                **_compare(task, outputs["fp32"], outputs[name]),
            )
        )
    return results
