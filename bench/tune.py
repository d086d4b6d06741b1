"""Pick hfspark's CPU batching: rows per batch x padded-token budget, one process, one thread.

Runs the classification model over the same token ids with hfspark's own batch planner
(:func:`hfspark.udfs.batching.plan_batches`) for each setting, interleaved, best of ``reps``,
and writes ``tune.md`` next to the benchmark results. ``python -m bench.tune``.

Example:
    >>> rows = tune(folder, texts[:400], reps=3)
    >>> max(rows, key=lambda r: r["rows_per_s"])
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS", "tune", "main"]

#: (batch_size, max_tokens_per_batch) pairs tried; batch 1 is one row at a time.
SETTINGS: list[tuple[int, int | None]] = [
    (1, None), (4, None), (8, None), (16, None), (32, None), (64, None),
    (16, 1024), (16, 2048), (32, 2048), (64, 2048), (32, 4096), (64, 4096),
]


def _run(model: Any, ids: list[list[int]], batch_size: int, max_tokens: int | None) -> float:
    import torch

    from hfspark.udfs.batching import plan_batches

    start = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches([len(i) for i in ids], batch_size=batch_size, max_tokens=max_tokens):
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - start


def tune(folder: Path, texts: Sequence[str], *, reps: int = 3,
         settings: Sequence[tuple[int, int | None]] = SETTINGS) -> list[dict[str, Any]]:
    """rows/s of each (batch_size, max_tokens) on ``texts`` with one torch thread."""
    import torch

    from bench.ceiling import load_model, tokenize
    from bench.models import MAX_LENGTH

    torch.set_num_threads(1)
    model, tokenizer = load_model(folder, "text-classification")
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    _run(model, ids[:32], 8, None)  # warm-up
    best = {s: float("inf") for s in settings}
    for _ in range(reps):
        for s in settings:
            best[s] = min(best[s], _run(model, ids, *s))
    return [{"batch_size": b, "max_tokens_per_batch": t, "seconds": best[(b, t)],
             "rows_per_s": len(texts) / best[(b, t)]} for b, t in settings]


def main() -> int:
    """Tune on HFSPARK_BENCH_TUNE_ROWS rows (default 400); print and write results/tune.md."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from bench.data import bench_texts
    from bench.models import prepare_models
    from bench.run import Settings

    s = Settings.from_env()
    model = prepare_models(s.work, ["text-classification"])["text-classification"]
    texts = bench_texts(int(os.environ.get("HFSPARK_BENCH_TUNE_ROWS", "400")))
    rows = tune(model.folder, texts)
    top = max(r["rows_per_s"] for r in rows)
    lines = ["# hfspark CPU batching (one process, one torch thread, classification)", "",
             f"{len(texts)} rows, load average {os.getloadavg()[0]:.2f}.", "",
             "| batch_size | max_tokens_per_batch | rows/s | vs best |", "|---|---|---|---|"]
    lines += [f"| {r['batch_size']} | {r['max_tokens_per_batch'] or '-'} | {r['rows_per_s']:.1f} | "
              f"{r['rows_per_s'] / top:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "tune.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
