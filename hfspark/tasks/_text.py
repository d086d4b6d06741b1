"""Helpers shared by the text task adapters: row checks, tokenization, collation, model calls.

Every text adapter tokenizes a whole list of inputs at once with the fast tokenizer (no
padding), keeps one dict of Python lists per row, and pads a length-sorted batch with
:func:`collate` (always on the right, so real tokens keep positions ``0..n-1`` whatever the
batch: results do not depend on batch composition).

Example:
    >>> feats = encode(loaded.tokenizer, ["a b", "c"], max_length=16)
    >>> batch = collate(loaded, feats)                  # {"input_ids": tensor, ...} on the device
    >>> logits = call_model(loaded, batch).logits
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, ModelValidationError, RowError
from hfspark.tasks._graph import collate_arrays
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    from hfspark.tasks._graph import Graph

__all__ = [
    "require_text",
    "fields_of",
    "model_limit",
    "resolve_max_length",
    "check_fast",
    "encode",
    "split_rows",
    "collate",
    "collate_arrays",
    "token_inputs",
    "call_model",
    "logits_graph",
    "prune_if",
    "softmax",
    "labels_of",
    "read_json",
]

#: a tokenizer's ``model_max_length`` above this means "unknown" (transformers uses 1e30).
_UNSET_LENGTH = 1_000_000
_TOKEN_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def require_text(value: Any, field: str = "text") -> str:
    """Return ``value`` if it is a string, else raise a RowError naming the field."""
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        raise RowError(f"input {field!r} must be a string, got {got}")
    return value


def fields_of(value: Any, fields: Sequence[str]) -> dict[str, Any]:
    """One row as ``{field: value}``: a plain value goes to the first field, a struct is read by name."""
    if isinstance(value, Mapping):
        return {f: value.get(f) for f in fields}
    if hasattr(value, "asDict"):  # a pyspark Row
        return fields_of(value.asDict(), fields)
    return {fields[0]: value, **{f: None for f in fields[1:]}}


def model_limit(loaded: LoadedModel, cap: int = 512) -> int:
    """The most tokens the model takes: the tokenizer's limit, else the position table, else ``cap``."""
    tok_max = getattr(loaded.tokenizer, "model_max_length", None) or _UNSET_LENGTH
    if tok_max < _UNSET_LENGTH:
        return int(tok_max)
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    return int(min(positions, cap)) if positions else cap


def resolve_max_length(
    loaded: LoadedModel, requested: int | None, default: int | None = None
) -> int:
    """The max_length a task uses: the option, else ``default``, capped at the model's limit.

    Raises:
        ConfigError: if the option asks for more tokens than the model takes.
    """
    limit = model_limit(loaded)
    if requested is not None:
        if requested < 2:
            raise ConfigError(f"max_length must be at least 2, got {requested}.")
        if requested > limit:
            raise ConfigError(
                f"max_length={requested} is more than this model takes ({limit} tokens); "
                f"use max_length <= {limit}."
            )
        return requested
    return min(default, limit) if default else limit


def check_fast(loaded: LoadedModel, task: str) -> None:
    """Refuse a slow (Python) tokenizer: offsets and word ids need the fast one."""
    if not getattr(loaded.tokenizer, "is_fast", False):
        raise ModelValidationError(
            f"Task {task!r} needs a fast tokenizer (tokenizer.json); the model's tokenizer "
            f"{type(loaded.tokenizer).__name__} is a slow one. Save the model with its fast tokenizer."
        )


def split_rows(enc: Any, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Split a BatchEncoding of Python lists into one dict per row (only ``keys`` that exist)."""
    present = [k for k in keys if k in enc]
    return [{k: enc[k][i] for k in present} for i in range(len(enc["input_ids"]))]


def encode(
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str | None] | None = None,
    *,
    max_length: int,
    extra_keys: Sequence[str] = (),
    **kwargs: Any,
) -> list[dict[str, list]]:
    """Tokenize texts (and optional text pairs) in at most two batched calls, without padding.

    Rows with and without a pair are tokenized apart (the tokenizer takes all-pairs or
    no-pairs); the result keeps the input order. Keys kept: the model input names plus
    ``extra_keys`` (e.g. ``offset_mapping``).
    """
    keys = [*tokenizer.model_input_names, *extra_keys]
    out: list[dict[str, list] | None] = [None] * len(texts)
    has_pair = [p is not None for p in pairs] if pairs is not None else [False] * len(texts)
    for with_pair in (False, True):
        idx = [i for i, h in enumerate(has_pair) if h == with_pair]
        if not idx:
            continue
        enc = tokenizer(
            [texts[i] for i in idx],
            [pairs[i] for i in idx] if with_pair else None,  # type: ignore[index]
            truncation=True,
            max_length=max_length,
            padding=False,
            **kwargs,
        )
        for i, row in zip(idx, split_rows(enc, keys), strict=True):
            out[i] = row
    return out  # type: ignore[return-value]


def collate(loaded: LoadedModel, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad the model inputs of a batch on the right as torch tensors on the model's device.

    (:func:`~hfspark.tasks._graph.collate_arrays` as tensors; graph tasks use the arrays.)
    """
    import torch

    arrays = collate_arrays(loaded.tokenizer, features)
    return {k: torch.from_numpy(v).to(loaded.device) for k, v in arrays.items()}


def token_inputs(tokenizer: Any) -> tuple[str, ...]:
    """The token inputs an encoder graph takes, as the tokenizer gives them."""
    return tuple(k for k in tokenizer.model_input_names if k in _TOKEN_INPUTS)


def call_model(loaded: LoadedModel, batch: dict[str, Any]) -> Any:
    """Run the model on a collated batch (``use_cache=False`` where the model takes it)."""
    takes_cache = loaded.extras.get("_takes_use_cache")
    if takes_cache is None:
        takes_cache = "use_cache" in inspect.signature(loaded.model.forward).parameters
        loaded.extras["_takes_use_cache"] = takes_cache
    if takes_cache:
        batch = {**batch, "use_cache": False}
    return loaded.model(**batch)


def labels_of(loaded: LoadedModel) -> list[str]:
    """The model's labels in id order (``config.id2label``)."""
    config = loaded.model.config
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    return [str(id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]


def read_json(folders: Sequence[Path | None], name: str) -> dict[str, Any] | None:
    """The first readable JSON file ``name`` found in ``folders`` (None if there is none)."""
    for folder in folders:
        if folder is None:
            continue
        path = Path(folder) / name
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
    return None


def logits_graph(loaded: LoadedModel, key: str, outputs: Sequence[str] = ("logits",)) -> Graph:
    """The model call of a classifier-style encoder task: token inputs -> its logits."""
    from hfspark.tasks._graph import Graph

    names = tuple(outputs)

    def fn(**inputs: Any) -> dict[str, Any]:
        out = call_model(loaded, inputs)
        return {k: getattr(out, k) for k in names}

    return Graph(inputs=token_inputs(loaded.tokenizer), outputs=names, fn=fn, key=key)


def prune_if(loaded: LoadedModel, enabled: bool, **kwargs: Any) -> bool:
    """Prune the last layer (:func:`~hfspark.tasks._first_token.prune_last_layer`) of a torch model.

    On the ONNX path the graph was exported from the model as the task loads it (pruned or
    not): nothing to do, and torch is not imported.
    """
    if not enabled or loaded.engine != "torch":
        return False
    from hfspark.tasks._first_token import prune_last_layer

    return prune_last_layer(loaded.model, **kwargs)


def softmax(x: Any) -> Any:
    """Softmax over the last axis of a numpy array."""
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
