"""Length-sorted batching under a row count and a token budget.

Example:
    >>> plan_batches([5, 1, 9, 2], batch_size=2, max_tokens=None)
    [[1, 3], [0, 2]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plan_batches"]


def plan_batches(
    lengths: Sequence[int], *, batch_size: int, max_tokens: int | None
) -> list[list[int]]:
    """Group row positions into batches of similar length.

    Rows are sorted by length (stable) so each batch pads little; a batch closes when it
    holds ``batch_size`` rows or when ``rows × longest row`` would exceed ``max_tokens``.
    A single row longer than the budget gets a batch of its own.

    Args:
        lengths: the cost of each row (tokens, samples...).
        batch_size: most rows per batch.
        max_tokens: most padded tokens per batch, or None for no budget.

    Returns:
        Lists of positions into ``lengths``; together they cover every position once.
    """
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for pos in order.tolist():
        size = int(lengths[pos])
        grown = max(longest, size)
        over_budget = max_tokens is not None and current and grown * (len(current) + 1) > max_tokens
        if current and (len(current) >= batch_size or over_budget):
            batches.append(current)
            current, grown = [], size
        current.append(pos)
        longest = grown
    if current:
        batches.append(current)
    return batches
