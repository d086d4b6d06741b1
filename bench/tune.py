"""Pick hfspark's CPU batching: rows per batch x padded-token budget, one process, one thread.

Runs the classification model over the same token ids with hfspark's own batch planner
(:func:`hfspark.udfs.batching.plan_batches`) for each setting (rows per batch, padded-token
budget, greedy or cost-optimal with a call cost), planning partition-sized windows of rows,
interleaved, best of ``reps``, and writes ``tune.md`` next to the benchmark results.
``python -m bench.tune``.

Example:
    >>> rows = tune(folder, texts[:400], windows=(12, 400))
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

#: (batch_size, max_tokens_per_batch, call_cost) tried; batch 1 is one row at a time and
#: call_cost None is the greedy planner (full batches).
SETTINGS: list[tuple[int, int | None, float | None]] = [
    (1, None, None),
    (4, None, None),
    (8, None, None),
    (16, None, None),
    (32, None, None),
    (16, 2048, None),
    (32, 4096, None),
    (8, 2048, 4),
    (8, 2048, 8),
    (8, 2048, 16),
    (16, 4096, 8),
    (32, 8192, 8),
]


def _run(
    model: Any, ids: list[list[int]], window: int, setting: tuple[int, int | None, float | None]
) -> float:
    """Seconds for every row, planned window by window (a window = one partition's rows)."""
    import torch

    from bench.ceiling import pad_right
    from hfspark.udfs.batching import plan_batches

    batch_size, max_tokens, call_cost = setting
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(ids), window):
            part = ids[first : first + window]
            for batch in plan_batches(
                [len(i) for i in part],
                batch_size=batch_size,
                max_tokens=max_tokens,
                call_cost=call_cost,
            ):
                input_ids, mask = pad_right([part[i] for i in batch])
                model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - start


def tune(
    folder: Path,
    texts: Sequence[str],
    *,
    windows: Sequence[int],
    reps: int = 2,
    settings: Sequence[tuple[int, int | None, float | None]] = SETTINGS,
) -> list[dict[str, Any]]:
    """rows/s of each setting and window size on ``texts`` with one torch thread."""
    import torch

    from bench.ceiling import load_model, tokenize
    from bench.models import MAX_LENGTH

    torch.set_num_threads(1)
    model, tokenizer = load_model(folder, "text-classification")
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    _run(model, ids[:32], 32, (8, None, None))  # warm-up
    best = {(w, s): float("inf") for w in windows for s in settings}
    for _ in range(reps):
        for key in best:
            best[key] = min(best[key], _run(model, ids, *key))
    return [
        {
            "window": w,
            "batch_size": s[0],
            "max_tokens_per_batch": s[1],
            "call_cost": s[2],
            "seconds": sec,
            "rows_per_s": len(texts) / sec,
        }
        for (w, s), sec in best.items()
    ]


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
    windows = (max(1, len(texts) // 32), len(texts))  # 32 partitions' worth, and one window
    rows = tune(model.folder, texts, windows=windows)
    lines = [
        "# hfspark CPU batching (one process, one torch thread, classification)",
        "",
        f"{len(texts)} rows planned in windows of {windows[0]} rows (as 32 partitions) or "
        f"all at once; load average {os.getloadavg()[0]:.2f}.",
        "",
        "| window | batch_size | max_tokens_per_batch | call_cost | rows/s | vs best in window |",
        "|---|---|---|---|---|---|",
    ]
    for w in windows:
        top = max(r["rows_per_s"] for r in rows if r["window"] == w)
        lines += [
            f"| {w} | {r['batch_size']} | {r['max_tokens_per_batch'] or '-'} | "
            f"{r['call_cost'] if r['call_cost'] is not None else 'greedy'} | "
            f"{r['rows_per_s']:.1f} | {r['rows_per_s'] / top:.2f} |"
            for r in rows
            if r["window"] == w
        ]
    text = "\n".join(lines) + "\n"
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "tune.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
