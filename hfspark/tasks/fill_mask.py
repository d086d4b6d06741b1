"""Fill-mask: the ``top_k`` most likely tokens for the mask token in each text.

Input: a string column holding exactly one of the tokenizer's mask token (``[MASK]`` for
BERT, ``<mask>`` for RoBERTa). Output: ``array<struct<token_str, token, score, sequence>>``
sorted by score, as transformers' fill-mask pipeline returns it.

Rows are checked one by one: a text without the mask token, or with several, is a RowError
naming the mask token to use. With ``allow_multiple_masks=True`` a text with several masks
gets the predictions for its *first* mask (the other masks stay in ``sequence``); the
pipeline's list-of-lists for several masks is not offered (one output schema for all rows).
``targets`` restricts the candidates to the given words (each word's first token when it is
not in the vocabulary). A text longer than ``max_length`` tokens is cut to a window of
``max_length`` tokens around its mask, instead of losing the mask to truncation.

Example:
    >>> adapter = FillMask({"top_k": 3})
    >>> loaded = adapter.load(folder, {}, "cpu", None)
    >>> feats = adapter.prepare(loaded, [adapter.convert("Paris is the [MASK] of France.")])
    >>> adapter.forward(loaded, feats)[0][0]["token_str"]
    'capital'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import PositiveInt, field_validator

from hfspark.errors import ConfigError, ModelValidationError, RowError
from hfspark.tasks._text import (
    call_model,
    collate_arrays,
    require_text,
    resolve_max_length,
    softmax,
    split_rows,
    token_inputs,
)
from hfspark.tasks.base import ENCODER_CALL_COST, LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = ["FillMask", "FillMaskOptions"]


class FillMaskOptions(TaskOptions):
    """Options of ``fill-mask``.

    Attributes:
        top_k: how many candidates per row (fewer when ``targets`` holds fewer).
        targets: only score these words (None: the whole vocabulary).
        allow_multiple_masks: predict the first mask of a text with several (default: RowError).
        max_length: longest input in tokens (None: the model's limit).
    """

    top_k: PositiveInt = 5
    targets: tuple[str, ...] | None = None
    allow_multiple_masks: bool = False

    @field_validator("targets", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class FillMask(TaskAdapter):
    """Adapter of ``fill-mask``."""

    name = "fill-mask"
    auto_model = "AutoModelForMaskedLM"
    architectures = ("ForMaskedLM", "ForPreTraining", "WithLMHeadModel")
    cpu_call_cost = ENCODER_CALL_COST
    result_field = "predictions"
    Options = FillMaskOptions
    options: FillMaskOptions

    #: the tokenizer's mask token, known once :meth:`load` ran (``convert`` checks rows with it).
    mask_token: str | None = None

    def output_type(self) -> DataType:
        from pyspark.sql.types import (
            ArrayType,
            DoubleType,
            IntegerType,
            StringType,
            StructField,
            StructType,
        )

        return ArrayType(
            StructType(
                [
                    StructField("token_str", StringType()),
                    StructField("token", IntegerType()),
                    StructField("score", DoubleType()),
                    StructField("sequence", StringType()),
                ]
            )
        )

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        tok = loaded.tokenizer
        if tok.mask_token_id is None:
            raise ModelValidationError(
                f"The tokenizer in {model_dir} has no mask token: it cannot be used for fill-mask."
            )
        self.mask_token = tok.mask_token
        mask_id = tok.mask_token_id
        loaded.extras.update(
            max_length=resolve_max_length(loaded, self.options.max_length),
            targets=_target_ids(tok, self.options.targets) if self.options.targets else None,
            # specials removed from `sequence`; other masks of a text stay visible
            drop_ids=np.array([i for i in tok.all_special_ids if i != mask_id], dtype=np.int64),
        )
        return loaded

    def convert(self, value: Any) -> str:
        text = require_text(value)
        if self.mask_token is not None:
            n = text.count(self.mask_token)
            if n == 0:
                raise RowError(
                    f"no mask token in the text: put the model's mask token {self.mask_token!r} "
                    "where the word to predict goes"
                )
            if n > 1 and not self.options.allow_multiple_masks:
                raise RowError(
                    f"{n} mask tokens {self.mask_token!r} in the text: fill-mask predicts exactly "
                    "one; keep one (or set allow_multiple_masks=True to predict the first)"
                )
        return text

    def prepare(self, loaded: LoadedModel, items: list[str]) -> list[dict]:
        tok = loaded.tokenizer
        max_length = loaded.extras["max_length"]
        enc = tok(
            items, padding=False, truncation=False, return_special_tokens_mask=True, verbose=False
        )
        feats = split_rows(enc, [*tok.model_input_names, "special_tokens_mask"])
        for feat in feats:
            ids = np.asarray(feat["input_ids"])
            masks = np.flatnonzero(ids == tok.mask_token_id)
            if masks.size == 0:  # only when convert() ran without a loaded model
                raise RowError(f"no mask token {tok.mask_token!r} in the text")
            if len(ids) > max_length:
                _window(feat, int(masks[0]), max_length)
                masks = np.flatnonzero(np.asarray(feat["input_ids"]) == tok.mask_token_id)
            feat["mask_index"] = int(masks[0])
            del feat["special_tokens_mask"]
        return feats

    def graph(self, loaded: LoadedModel) -> Graph:
        """Token inputs + each row's mask position -> the logits at that position."""
        from hfspark.tasks._graph import Graph

        def fn(mask_index: Any, **inputs: Any) -> dict[str, Any]:
            logits = call_model(loaded, inputs).logits
            where = mask_index.view(-1, 1, 1).expand(-1, 1, logits.shape[-1])
            return {"logits": logits.gather(1, where).squeeze(1)}

        names = (*token_inputs(loaded.tokenizer), "mask_index")
        return Graph(names, ("logits",), fn, self.graph_name(), per_row=("mask_index",))

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[list[dict]]:
        tok = loaded.tokenizer
        batch = collate_arrays(tok, features, token_inputs(tok))
        batch["mask_index"] = np.array([f["mask_index"] for f in features], dtype=np.int64)
        probs = softmax(self.run(loaded, batch)["logits"])
        targets = loaded.extras["targets"]
        if targets is not None:
            probs = probs[:, np.asarray(targets)]
        k = min(self.options.top_k, probs.shape[-1])
        top = np.argpartition(-probs, k - 1, axis=-1)[:, :k]
        order = np.argsort(-np.take_along_axis(probs, top, axis=-1), axis=-1, kind="stable")
        picks = np.take_along_axis(top, order, axis=-1)
        scores = np.take_along_axis(probs, picks, axis=-1)
        if targets is not None:
            picks = np.asarray(targets)[picks]
        k = picks.shape[1]
        token_strs = tok.batch_decode(picks.reshape(-1, 1).tolist())
        sequences = []
        for feat, row in zip(features, picks, strict=True):
            filled = np.tile(np.asarray(feat["input_ids"]), (k, 1))
            filled[:, feat["mask_index"]] = row
            keep = ~np.isin(filled[0], loaded.extras["drop_ids"])
            keep[feat["mask_index"]] = True
            sequences.extend(tok.batch_decode(filled[:, keep].tolist()))
        return [
            [
                {
                    "token_str": token_strs[r * k + j],
                    "token": int(picks[r, j]),
                    "score": float(scores[r, j]),
                    "sequence": sequences[r * k + j],
                }
                for j in range(k)
            ]
            for r in range(len(features))
        ]


def _window(feat: dict, mask: int, max_length: int) -> None:
    """Cut a too-long row to ``max_length`` tokens: its leading/trailing specials + text around ``mask``."""
    text = np.flatnonzero(np.asarray(feat["special_tokens_mask"]) == 0)  # non-special positions
    n = len(feat["special_tokens_mask"])
    head, tail = int(text[0]), int(text[-1]) + 1
    room = max_length - head - (n - tail)
    start = min(max(head, mask - room // 2), tail - room)
    keep = np.r_[0:head, start : start + room, tail:n]
    for key, values in list(feat.items()):
        if isinstance(values, list) and len(values) == n:
            feat[key] = np.asarray(values)[keep].tolist()


def _target_ids(tok: Any, targets: tuple[str, ...]) -> list[int]:
    """Vocabulary ids of the target words (first token of a word not in the vocabulary)."""
    vocab = tok.get_vocab()
    ids: list[int] = []
    for target in targets:
        tid = vocab.get(target)
        if tid is None:
            pieces = tok(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                continue
            tid = pieces[0]
        if tid not in ids:
            ids.append(tid)
    if not ids:
        raise ConfigError(
            f"None of the fill-mask targets {list(targets)} is in the model's vocabulary."
        )
    return ids
