"""The compute ceiling: what this CPU does for the model with no Spark at all.

As many processes as Spark has cores, one torch thread each. Every process loads the model,
waits at a barrier, then tokenizes its share of the rows (round-robin) and runs only the
model forward, either one row at a time (no padding) or in length-sorted batches. The time
is from the barrier to the last process done; model loading is not counted.

Example:
    >>> res = run_ceiling(folder, "text-classification", texts, cores=2, modes=("row", "sorted16"))
    >>> res["row"].rows_per_s
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CeilingResult", "load_model", "tokenize", "pad_right", "forward_all", "run_ceiling", "mode_batch"]


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

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def mode_batch(mode: str) -> int:
    """Rows per forward of a mode: ``row`` is 1, ``sortedN`` is N."""
    return 1 if mode == "row" else int(mode.removeprefix("sorted"))


def load_model(folder: Path, task: str, *, quantize: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode; optional dynamic int8 (Linear) or a torch dtype."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    auto = (transformers.AutoModelForSequenceClassification if task == "text-classification"
            else transformers.AutoModel)
    model = auto.from_pretrained(str(folder)).eval()
    if quantize == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if dtype:
        model = model.to(getattr(torch, dtype))
    return model, transformers.AutoTokenizer.from_pretrained(str(folder))


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text (truncated, unpadded), in one batched call."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


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


def forward_all(model: Any, task: str, ids: list[list[int]], batch: int, keep: bool = False) -> list[Any]:
    """Run the model over every row: one at a time (batch 1) or in length-sorted batches.

    Returns the per-row outputs (scores or embeddings) in input order when ``keep``.
    """
    import torch

    results: list[Any] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch > 1 else list(range(len(ids)))
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            input_ids, mask = pad_right([ids[i] for i in chunk])
            out = _outputs(model, task, input_ids, mask)
            if keep:
                for row, i in enumerate(chunk):
                    results[i] = out[row].tolist()
    return results


def _child(folder: str, task: str, texts: list[str], modes: list[str], max_length: int,
           barrier: Any, queue: Any, reps: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_model(Path(folder), task)
    forward_all(model, task, tokenize(tokenizer, texts[:4], max_length), 4)  # warm-up
    for rep, mode in [(r, m) for r in range(reps) for m in modes]:  # interleaved repetitions
        barrier.wait()
        start, cpu = time.perf_counter(), time.process_time()
        ids = tokenize(tokenizer, texts, max_length)
        forward_all(model, task, ids, mode_batch(mode))
        end, cpu = time.perf_counter(), time.process_time() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put((mode, rep, start, end, sum(len(i) for i in ids), rss, cpu))


def run_ceiling(folder: Path, task: str, texts: Sequence[str], *, cores: int, modes: Sequence[str],
                max_length: int, reps: int = 1) -> dict[str, CeilingResult]:
    """Time each mode with ``cores`` processes (spawned, one torch thread each), best of ``reps``.

    Repetitions are interleaved (mode 1, mode 2, ..., mode 1, ...), as the Spark rows take the
    best of their timed jobs: both sides get the same number of tries.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(cores)
    queue = ctx.Queue()
    shares = [list(texts[i::cores]) for i in range(cores)]
    procs = [ctx.Process(target=_child, args=(str(folder), task, share, list(modes), max_length,
                                               barrier, queue, reps)) for share in shares]
    for p in procs:
        p.start()
    got: dict[tuple[str, int], list[tuple]] = {(m, r): [] for m in modes for r in range(reps)}
    for _ in range(cores * len(modes) * reps):
        mode, rep, *part = queue.get(timeout=3600)
        got[(mode, rep)].append(tuple(part))
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"ceiling process failed with exit code {p.exitcode}")
    out: dict[str, CeilingResult] = {}
    for (mode, _), parts in got.items():
        seconds = max(p[1] for p in parts) - min(p[0] for p in parts)
        res = CeilingResult(mode, seconds, len(texts), sum(p[2] for p in parts),
                            max(p[3] for p in parts), cores, sum(p[4] for p in parts))
        if mode not in out or res.seconds < out[mode].seconds:
            out[mode] = res
    return out
