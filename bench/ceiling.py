"""The compute ceiling: what this CPU does for the model with no Spark at all.

As many processes as Spark has cores, one torch thread each. Every process loads the model
once; for each timed run it waits at a barrier, then tokenizes its share of the rows
(round-robin) and runs only the model forward, either one row at a time (no padding) or in
length-sorted batches. The time is from the barrier to the last process done; model loading
is not counted. A :class:`CeilingPool` keeps the processes (and their models) between runs,
so ``make bench`` can time ceiling rounds right before and after the hfspark jobs.

Example:
    >>> with CeilingPool(folder, "text-classification", texts, cores=2, max_length=256) as pool:
    ...     pool.round(("row", "sorted16"))["row"].rows_per_s
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CeilingPool",
    "CeilingResult",
    "keep_best",
    "load_model",
    "tokenize",
    "pad_right",
    "forward_all",
    "mode_batch",
]


@dataclass
class CeilingResult:
    """One ceiling mode: wall time over all processes and per-process peak RSS."""

    mode: str
    seconds: float
    rows: int
    tokens: int
    peak_rss_mib: float
    processes: int
    cpu_seconds: float = 0.0  # CPU of all processes over the timed section
    all_seconds: list[float] = field(default_factory=list)  # every round of this mode
    partitions: int | None = None  # the Spark jobs it was timed beside (None: on its own)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def mode_batch(mode: str) -> int:
    """Rows per forward of a mode: ``row`` is 1, ``sortedN`` (or ``onnx-sortedN``) is N."""
    mode = mode.removeprefix("onnx-")
    return 1 if mode == "row" else int(mode.removeprefix("sorted"))


def load_model(
    folder: Path,
    task: str,
    *,
    quantize: str | None = None,
    dtype: str | None = None,
    prune: bool = False,
    kernels: str | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode; optional dynamic int8 (Linear), a torch dtype,
    hfspark's last-layer pruning or its CPU kernels (``kernels="onednn"``: Linear layers on
    oneDNN, :mod:`hfspark.udfs.kernels`); the ceiling itself runs the plain model."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    auto = (
        transformers.AutoModelForSequenceClassification
        if task == "text-classification"
        else transformers.AutoModel
    )
    model = auto.from_pretrained(str(folder)).eval()
    if prune:
        from hfspark.tasks._first_token import prune_last_layer

        if not prune_last_layer(model):
            raise RuntimeError(f"last-layer pruning does not apply to {type(model).__name__}")
    if kernels:
        from hfspark.udfs.kernels import use_onednn

        if use_onednn(model, kernels)["kernels"] != kernels:  # type: ignore[arg-type]
            raise RuntimeError(f"{kernels} kernels do not apply to {type(model).__name__}")
    if quantize == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if dtype:
        model = model.to(getattr(torch, dtype))
    return model, transformers.AutoTokenizer.from_pretrained(str(folder))


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text (truncated, unpadded), in one batched call."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)[
        "input_ids"
    ]


def _outputs(model: Any, task: str, ids: Any, mask: Any) -> Any:
    out = model(input_ids=ids, attention_mask=mask)
    if task == "text-classification":
        return out.logits.float().softmax(-1)
    hidden = out.last_hidden_state.float()  # mean pooling, as sentence-transformers
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch_normalize(pooled)


def torch_normalize(x: Any) -> Any:
    """L2-normalise rows."""
    import torch

    return torch.nn.functional.normalize(x, p=2, dim=1)


def pad_right(rows: list[list[int]]) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of token-id rows, zero-padded on the right."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, r in enumerate(rows):
        input_ids[row, : len(r)] = torch.tensor(r)
        mask[row, : len(r)] = 1
    return input_ids, mask


def forward_all(
    model: Any, task: str, ids: list[list[int]], batch: int, keep: bool = False
) -> list[Any]:
    """Run the model over every row: one at a time (batch 1) or in length-sorted batches.

    Returns the per-row outputs (scores or embeddings) in input order when ``keep``.
    """
    import torch

    results: list[Any] = [None] * len(ids)
    order = (
        sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch > 1 else list(range(len(ids)))
    )
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            input_ids, mask = pad_right([ids[i] for i in chunk])
            out = _outputs(model, task, input_ids, mask)
            if keep:
                for row, i in enumerate(chunk):
                    results[i] = out[row].tolist()
    return results


def _child(
    folder: str,
    task: str,
    texts: list[str],
    max_length: int,
    barrier: Any,
    inbox: Any,
    outbox: Any,
    onnx_graph: str | None = None,
) -> None:
    """One ceiling process: load, say ready, then one timed run per mode it is sent."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    from bench.ort import ort_forward_all, ort_session

    torch.set_num_threads(1)
    model, tokenizer = load_model(Path(folder), task)
    forward_all(model, task, tokenize(tokenizer, texts[:4], max_length), 4)  # warm-up
    session = None
    if onnx_graph:
        session = ort_session(Path(onnx_graph))
        ort_forward_all(session, task, tokenize(tokenizer, texts[:4], max_length), 4)
    outbox.put("ready")
    while (mode := inbox.get()) is not None:
        barrier.wait()
        start, cpu = time.perf_counter(), time.process_time()
        ids = tokenize(tokenizer, texts, max_length)
        if mode.startswith("onnx-"):
            ort_forward_all(session, task, ids, mode_batch(mode))
        else:
            forward_all(model, task, ids, mode_batch(mode))
        end, cpu = time.perf_counter(), time.process_time() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        outbox.put((start, end, sum(len(i) for i in ids), rss, cpu))


class CeilingPool:
    """``cores`` spawned processes (one torch thread each) that keep the model loaded and run
    timed ceiling rounds on demand, so rounds can sit right beside the Spark jobs they are
    compared with (the machine's speed drifts over a run; neighbours see the same machine).
    They wait idle (no CPU) while Spark runs.

    Example:
        >>> with CeilingPool(folder, "text-classification", texts, cores=2, max_length=256) as pool:
        ...     pool.round(("row", "sorted8"))["sorted8"].rows_per_s
    """

    def __init__(
        self,
        folder: Path,
        task: str,
        texts: Sequence[str],
        *,
        cores: int,
        max_length: int,
        onnx_graph: Path | None = None,
    ) -> None:
        self.folder, self.task, self.texts = folder, task, list(texts)
        self.cores, self.max_length = cores, max_length
        self.onnx_graph = str(onnx_graph) if onnx_graph else None
        self._procs: list[Any] = []

    def __enter__(self) -> CeilingPool:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(self.cores)
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in range(self.cores)]
        shares = [self.texts[i :: self.cores] for i in range(self.cores)]  # round-robin
        self._procs = [
            ctx.Process(
                target=_child,
                daemon=True,
                args=(
                    str(self.folder),
                    self.task,
                    share,
                    self.max_length,
                    barrier,
                    inbox,
                    self._outbox,
                    self.onnx_graph,
                ),
            )
            for share, inbox in zip(shares, self._inboxes, strict=True)
        ]
        for p in self._procs:
            p.start()
        for _ in self._procs:
            self._get()  # "ready": every process has loaded the model
        return self

    def __exit__(self, *exc: object) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for p in self._procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()

    def _get(self) -> Any:
        import queue

        while True:
            try:
                return self._outbox.get(timeout=5)
            except queue.Empty:
                dead = [p.exitcode for p in self._procs if p.exitcode]
                if dead:
                    raise RuntimeError(f"ceiling process failed with exit code {dead[0]}") from None

    def round(self, modes: Sequence[str]) -> dict[str, CeilingResult]:
        """One timed run of each mode (all processes start together at a barrier)."""
        out: dict[str, CeilingResult] = {}
        for mode in modes:
            for inbox in self._inboxes:
                inbox.put(mode)
            parts = [self._get() for _ in self._procs]
            seconds = max(p[1] for p in parts) - min(p[0] for p in parts)
            res = CeilingResult(
                mode,
                seconds,
                len(self.texts),
                sum(p[2] for p in parts),
                max(p[3] for p in parts),
                self.cores,
                sum(p[4] for p in parts),
            )
            out[mode] = res
        return out


def keep_best(best: dict[str, CeilingResult], res: CeilingResult) -> None:
    """Fold one run into ``best`` (mode -> fastest run), keeping every run's seconds."""
    kept = best.get(res.mode)
    history = [*(kept.all_seconds if kept else []), res.seconds]
    if kept is None or res.seconds < kept.seconds:
        kept = res
    kept.all_seconds = history
    best[res.mode] = kept
