"""Token classification (NER, POS tagging): the entities found in each text.

Input: a string column. Output: ``array<struct<entity_group, score, word, start, end>>`` with
``start``/``end`` character offsets into the input text (from the fast tokenizer's
``offset_mapping``). ``aggregation_strategy`` (alias ``aggregation``) works as in transformers'
token-classification pipeline:

- ``simple`` (default): adjacent tokens with the same tag merge (a ``B-`` tag starts a new entity);
- ``first`` / ``average`` / ``max``: first make each word agree on one tag (from its first token,
  the average of its tokens' scores, or its most confident token), then merge as ``simple``;
  words come from the fast tokenizer's word ids;
- ``none``: one entry per token, ``entity_group`` holding the token's full label (e.g. ``B-PER``).

Entities whose label (group) is in ``ignore_labels`` (default ``["O"]``) are dropped. Texts
longer than ``max_length`` tokens (default: the model's limit) are truncated: entities past
the limit are not returned.

Example:
    >>> adapter = TokenClassification({"aggregation_strategy": "first"})
    >>> loaded = adapter.load(folder, {}, "cpu", None)
    >>> adapter.forward(loaded, adapter.prepare(loaded, ["John works in Berlin"]))[0]
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'john', 'start': 0, 'end': 4}, ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import AliasChoices, Field

from hfspark.tasks._text import (
    check_fast,
    collate_arrays,
    labels_of,
    logits_graph,
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

__all__ = ["TokenClassification", "TokenClassificationOptions"]

Strategy = Literal["simple", "first", "average", "max", "none"]


class TokenClassificationOptions(TaskOptions):
    """Options of ``token-classification``.

    Attributes:
        aggregation_strategy: ``simple`` | ``first`` | ``average`` | ``max`` | ``none``
            (``aggregation`` is accepted as the key too).
        ignore_labels: labels (or entity groups) left out of the output.
        max_length: longest input in tokens (None: the model's limit).
    """

    aggregation_strategy: Strategy = Field(
        "simple", validation_alias=AliasChoices("aggregation_strategy", "aggregation")
    )
    ignore_labels: tuple[str, ...] = ("O",)


class TokenClassification(TaskAdapter):
    """Adapter of ``token-classification`` (alias ``ner``)."""

    name = "token-classification"
    auto_model = "AutoModelForTokenClassification"
    architectures = ("ForTokenClassification",)
    cpu_call_cost = ENCODER_CALL_COST
    result_field = "entities"
    Options = TokenClassificationOptions
    options: TokenClassificationOptions

    def output_type(self) -> DataType:
        from pyspark.sql.types import (
            ArrayType,
            FloatType,
            IntegerType,
            StringType,
            StructField,
            StructType,
        )

        return ArrayType(
            StructType(
                [
                    StructField("entity_group", StringType()),
                    StructField("score", FloatType()),
                    StructField("word", StringType()),
                    StructField("start", IntegerType()),
                    StructField("end", IntegerType()),
                ]
            )
        )

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        check_fast(loaded, self.name)
        labels = labels_of(loaded)
        # The pipeline's get_tag: "B-X"/"I-X" -> tag X; any other label is its own tag, as "I".
        tags = [lab[2:] if lab[:2] in ("B-", "I-") else lab for lab in labels]
        tag_codes = {t: i for i, t in enumerate(dict.fromkeys(tags))}
        loaded.extras.update(
            labels=np.array(labels, dtype=object),
            groups=np.array([lab.split("-", 1)[-1] for lab in labels], dtype=object),
            tag_code=np.array([tag_codes[t] for t in tags]),
            is_begin=np.array([lab.startswith("B-") for lab in labels]),
            max_length=resolve_max_length(loaded, self.options.max_length),
        )
        return loaded

    def convert(self, value: Any) -> str:
        return require_text(value)

    def prepare(self, loaded: LoadedModel, items: list[str]) -> list[dict]:
        tok = loaded.tokenizer
        enc = tok(
            items,
            truncation=True,
            max_length=loaded.extras["max_length"],
            padding=False,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        feats = split_rows(enc, [*tok.model_input_names, "offset_mapping", "special_tokens_mask"])
        for i, (text, feat) in enumerate(zip(items, feats, strict=True)):
            feat["word_ids"] = enc.word_ids(i)
            feat["text"] = text
        return feats

    def graph(self, loaded: LoadedModel) -> Graph:
        return logits_graph(loaded, self.graph_name())

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[list[dict]]:
        batch = collate_arrays(loaded.tokenizer, features, token_inputs(loaded.tokenizer))
        probs = softmax(self.run(loaded, batch)["logits"])
        return [
            self._entities(loaded, feat, probs[i, : len(feat["input_ids"])])
            for i, feat in enumerate(features)
        ]

    # ----------------------------------------------------------------- postprocessing
    def _entities(self, loaded: LoadedModel, feat: dict, probs: np.ndarray) -> list[dict]:
        """One row's entities from its ``(tokens, labels)`` probabilities."""
        tok = loaded.tokenizer
        keep = np.asarray(feat["special_tokens_mask"]) == 0
        ids = np.asarray(feat["input_ids"])[keep]
        if ids.size == 0:
            return []
        probs = probs[keep]
        offsets = np.asarray(feat["offset_mapping"], dtype=np.int64).reshape(-1, 2)[keep]
        tokens = np.array(tok.convert_ids_to_tokens(ids.tolist()), dtype=object)
        unk = ids == tok.unk_token_id
        if unk.any():  # as the pipeline: an unknown token reads as the text it stands for
            tokens[unk] = [feat["text"][s:e] for s, e in offsets[unk]]
        strategy = self.options.aggregation_strategy
        if strategy in ("none", "simple"):
            label, score = probs.argmax(axis=1), probs.max(axis=1)
            words, starts, ends = tokens, offsets[:, 0], offsets[:, 1]
        else:
            label, score, first, last = _word_scores(probs, feat["word_ids"], keep, unk, strategy)
            words = np.array(
                [
                    tok.convert_tokens_to_string(list(tokens[a : b + 1]))
                    for a, b in zip(first, last, strict=True)
                ],
                dtype=object,
            )
            starts, ends = offsets[first, 0], offsets[last, 1]
        if strategy == "none":
            names = loaded.extras["labels"][label]
            return [
                _entity(names[k], score[k], words[k], starts[k], ends[k])
                for k in np.flatnonzero(~np.isin(names, self.options.ignore_labels))
            ]
        # Group adjacent entities: a new group where the tag changes or a "B-" tag starts one.
        tag = loaded.extras["tag_code"][label]
        new = np.ones(len(label), dtype=bool)
        new[1:] = (tag[1:] != tag[:-1]) | loaded.extras["is_begin"][label[1:]]
        g_first = np.flatnonzero(new)
        g_last = np.r_[g_first[1:], len(label)] - 1
        g_score = np.add.reduceat(score, g_first) / (g_last - g_first + 1)
        g_name = loaded.extras["groups"][label[g_first]]
        return [
            _entity(
                g_name[g],
                g_score[g],
                tok.convert_tokens_to_string(list(words[g_first[g] : g_last[g] + 1])),
                starts[g_first[g]],
                ends[g_last[g]],
            )
            for g in np.flatnonzero(~np.isin(g_name, self.options.ignore_labels))
        ]


def _word_scores(
    probs: np.ndarray, word_ids: list, keep: np.ndarray, unk: np.ndarray, strategy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per word: (label, score, first token, last token), words taken from the tokenizer's word ids."""
    n = len(probs)
    wid = np.array(word_ids, dtype=float)[keep]  # None -> nan, never equal to a neighbour
    is_sub = np.zeros(n, dtype=bool)
    is_sub[1:] = (wid[1:] == wid[:-1]) & ~unk[1:]
    first = np.flatnonzero(~is_sub)
    last = np.r_[first[1:], n] - 1
    if strategy == "first":
        word_probs = probs[first]
    elif strategy == "average":
        word_probs = np.add.reduceat(probs, first, axis=0) / (last - first + 1)[:, None]
    else:  # max: the scores of the word's most confident token (the first one on ties)
        tok_max = probs.max(axis=1)
        word_of = np.cumsum(~is_sub) - 1
        best = np.flatnonzero(tok_max == np.maximum.reduceat(tok_max, first)[word_of])
        _, pick = np.unique(word_of[best], return_index=True)
        word_probs = probs[best[pick]]
    return word_probs.argmax(axis=1), word_probs.max(axis=1), first, last


def _entity(group: str, score: Any, word: str, start: Any, end: Any) -> dict:
    return {
        "entity_group": str(group),
        "score": float(score),
        "word": str(word),
        "start": int(start),
        "end": int(end),
    }
