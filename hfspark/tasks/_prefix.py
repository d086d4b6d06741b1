"""Shared-prefix reuse for decoder-only generation: the prompts' common prefix runs once.

LLM jobs put a long fixed instruction before each row's short text. The common token prefix
of a batch's prompts is run through the model once per Python worker (its KV cache kept in
``LoadedModel.extras``, a few prefixes at most); each ``generate()`` call then starts from a
copy of that cache expanded to its rows, and only the rows' own suffixes are computed.

The batch is laid out ``[prefix][pads][suffix]``: the pads sit between the cached prefix and
each row's suffix (right-aligned, masked out), so every row sees the same positions as when
left-padded (``generate`` derives positions from the attention mask), and greedy decoding gives
the same tokens as without reuse (checked in ``tests/test_llm_reuse.py``).

Example:
    >>> common_prefix_len([[1, 2, 3, 4], [1, 2, 5]])
    2
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["common_prefix_len", "prefix_cache", "prefixed_batch", "MAX_PREFIXES"]

#: prefixes whose cache a worker keeps (least recently used dropped).
MAX_PREFIXES = 4


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest common prefix, leaving every sequence one token of its own."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def prefix_cache(loaded: Any, prefix: Sequence[int]) -> Any:
    """The KV cache of ``prefix`` (batch of one), computed once and kept per loaded model."""
    import torch

    store: OrderedDict[tuple[int, ...], Any] = loaded.extras.setdefault(
        "prefix_caches", OrderedDict()
    )
    key = tuple(int(t) for t in prefix)
    if key in store:
        store.move_to_end(key)
        loaded.extras["prefix_hits"] = loaded.extras.get("prefix_hits", 0) + 1
        return store[key]
    ids = torch.tensor([list(key)], dtype=torch.long, device=loaded.device)
    out = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    store[key] = cache
    while len(store) > MAX_PREFIXES:
        store.popitem(last=False)
    return cache


def prefixed_batch(
    loaded: Any,
    prompts: Sequence[Sequence[int]],
    prefix_len: int,
    pad_id: int,
) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, cache)`` for ``generate()`` reusing the cached prefix.

    Args:
        loaded: the LoadedModel (its device and prefix caches).
        prompts: each row's full token ids; all start with the same ``prefix_len`` tokens.
        prefix_len: the shared prefix length (each prompt has at least one token more).
        pad_id: the id put between the prefix and shorter suffixes (masked out).
    """
    import torch

    cache = copy.deepcopy(prefix_cache(loaded, prompts[0][:prefix_len]))
    cache.batch_repeat_interleave(len(prompts))
    suffixes = [list(p[prefix_len:]) for p in prompts]
    longest = max(len(s) for s in suffixes)
    prefix = list(prompts[0][:prefix_len])
    ids = [prefix + [pad_id] * (longest - len(s)) + s for s in suffixes]
    mask = [[1] * prefix_len + [0] * (longest - len(s)) + [1] * len(s) for s in suffixes]
    device = loaded.device
    return (
        torch.tensor(ids, dtype=torch.long, device=device),
        torch.tensor(mask, dtype=torch.long, device=device),
        cache,
    )
