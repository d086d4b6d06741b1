"""Text classification (sentiment, topics, NLI...): one label and the scores of all labels per row.

Input: a string column, or a struct (or two columns) ``text`` + optional ``text_pair``.
Output: ``struct<label, score, scores: array<struct<label, score>>>``; ``scores`` is sorted
by score (highest first) and holds ``top_k`` labels (all when ``top_k`` is None); ``label`` and
``score`` are the best one. Scores follow transformers' text-classification pipeline:
``function_to_apply="default"`` means sigmoid for multi-label models and one-label models,
none for regression, softmax otherwise.

Example:
    >>> adapter = TextClassification({"top_k": 2})
    >>> loaded = adapter.load(folder, {}, "cpu", None)
    >>> feats = adapter.prepare(loaded, [adapter.convert("I love it")])
    >>> adapter.forward(loaded, feats)[0]["label"]
    'POSITIVE'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import PositiveInt

from hfspark.errors import RowError
from hfspark.tasks._text import (
    collate_arrays,
    encode,
    fields_of,
    labels_of,
    logits_graph,
    prune_if,
    require_text,
    resolve_max_length,
    softmax,
    token_inputs,
)
from hfspark.tasks.base import ENCODER_CALL_COST, LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = ["TextClassification", "TextClassificationOptions", "default_function"]


class TextClassificationOptions(TaskOptions):
    """Options of ``text-classification``.

    Attributes:
        top_k: how many labels ``scores`` holds (None: all of them).
        function_to_apply: ``default`` (as the pipeline), ``softmax``, ``sigmoid`` or ``none``.
        max_length: longest input in tokens (None: the model's limit); longer inputs are truncated.
        prune_last_layer: run the last encoder layer for the first token only, the one the
            classification head reads (BERT-family models; same logits to float rounding,
            ~15 % faster on CPU). False runs the full last layer.
    """

    top_k: PositiveInt | None = None
    function_to_apply: Literal["default", "softmax", "sigmoid", "none"] = "default"
    prune_last_layer: bool = True


def default_function(config: Any) -> str:
    """The pipeline's default score function for a model config."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or config.num_labels > 1:
        return "softmax"
    return str(getattr(config, "function_to_apply", None) or "none")


def score_labels(logits: np.ndarray, function: str) -> np.ndarray:
    """Turn a ``(batch, labels)`` logits array into scores with ``function``."""
    logits = np.asarray(logits, dtype=np.float32)
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


class TextClassification(TaskAdapter):
    """Adapter of ``text-classification`` (alias ``sentiment-analysis``)."""

    name = "text-classification"
    auto_model = "AutoModelForSequenceClassification"
    architectures = ("ForSequenceClassification",)
    cpu_call_cost = ENCODER_CALL_COST
    input_fields = ("text", "text_pair")
    input_types = {"text": ("string",), "text_pair": ("string",)}
    optional_fields = ("text_pair",)
    result_field = "result"
    Options = TextClassificationOptions
    options: TextClassificationOptions
    graph_options = ("prune_last_layer",)

    def output_type(self) -> DataType:
        from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

        item = StructType([StructField("label", StringType()), StructField("score", DoubleType())])
        return StructType([*item.fields, StructField("scores", ArrayType(item))])

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        loaded.extras["pruned"] = prune_if(loaded, self.options.prune_last_layer)
        fn = self.options.function_to_apply
        loaded.extras["function"] = default_function(loaded.model.config) if fn == "default" else fn
        loaded.extras["labels"] = labels_of(loaded)
        loaded.extras["max_length"] = resolve_max_length(loaded, self.options.max_length)
        return loaded

    def convert(self, value: Any) -> tuple[str, str | None]:
        row = fields_of(value, self.input_fields)
        text = require_text(row["text"])
        pair = row["text_pair"]
        if pair is not None and not isinstance(pair, str):
            raise RowError(f"input 'text_pair' must be a string or null, got {type(pair).__name__}")
        return text, pair

    def prepare(self, loaded: LoadedModel, items: list[tuple[str, str | None]]) -> list[dict]:
        return encode(
            loaded.tokenizer,
            [t for t, _ in items],
            [p for _, p in items],
            max_length=loaded.extras["max_length"],
        )

    def graph(self, loaded: LoadedModel) -> Graph:
        return logits_graph(loaded, self.graph_name())

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[dict]:
        batch = collate_arrays(loaded.tokenizer, features, token_inputs(loaded.tokenizer))
        scores = score_labels(self.run(loaded, batch)["logits"], loaded.extras["function"])
        k = self.options.top_k or scores.shape[-1]
        order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        values = np.take_along_axis(scores, order, axis=-1)
        labels = loaded.extras["labels"]
        out = []
        for vals, idx in zip(values.tolist(), order.tolist(), strict=True):
            ranked = [
                {"label": labels[i], "score": float(v)} for i, v in zip(idx, vals, strict=True)
            ]
            out.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "scores": ranked})
        return out
