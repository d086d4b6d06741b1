"""Zero-shot classification with an NLI model: score candidate labels the model never saw.

Each (text, label) becomes the NLI pair (premise=text, hypothesis=``hypothesis_template``
filled with the label); the model's *entailment* logit scores the label, as in transformers'
zero-shot-classification pipeline. Labels come from the ``candidate_labels`` option, or per
row from a second input field ``candidate_labels`` (``array<string>``; a null or empty row
value falls back to the option). Output: ``struct<labels: array<string>, scores:
array<double>>`` sorted by score, highest first. Scores are a softmax of the entailment
logits over the row's labels, or, with ``multi_label`` (or a single label), per label a
softmax of entailment against contradiction.

The model's feature for a row is the list of its pairs; a batch pads and runs all pairs of
its rows at once, and :meth:`ZeroShotClassification.length` reports the padded pair cost so a
token budget counts pairs. Pairs longer than ``max_length`` lose tokens from the longer side
first (the text, in practice; the pipeline cuts only the text and fails when it cannot).

Example:
    >>> adapter = ZeroShotClassification({"candidate_labels": ["sports", "politics"]})
    >>> loaded = adapter.load(folder, {}, "cpu", None)
    >>> feats = adapter.prepare(loaded, [adapter.convert("The match ended 2-1.")])
    >>> adapter.forward(loaded, feats)[0]["labels"]
    ['sports', 'politics']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import PositiveInt, field_validator

from hfspark.errors import ModelValidationError, RowError
from hfspark.tasks._text import (
    collate_arrays,
    encode,
    fields_of,
    logits_graph,
    prune_if,
    require_text,
    resolve_max_length,
    token_inputs,
)
from hfspark.tasks.base import ENCODER_CALL_COST, LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = [
    "CandidateLabelOptions",
    "ZeroShotClassification",
    "ZeroShotOptions",
    "labels_scores_type",
    "row_labels",
]


class CandidateLabelOptions(TaskOptions):
    """Options of the zero-shot tasks (text and image): the labels and how they are phrased.

    Attributes:
        candidate_labels: labels for every row (a list, or one comma-separated string).
        hypothesis_template: the text a label is put in, with ``{}`` where the label goes.
        max_candidate_labels: a row with more labels is a RowError.
    """

    candidate_labels: tuple[str, ...] | None = None
    hypothesis_template: str = "This example is {}."
    max_candidate_labels: PositiveInt = 1000

    @field_validator("candidate_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(label.strip() for label in value.split(",") if label.strip())
        return value

    @field_validator("hypothesis_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            filled = value.format("LABEL")
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"cannot fill {value!r} with a label ({e}); use one '{{}}'") from e
        if filled == value:
            raise ValueError(f"{value!r} has no '{{}}' where the label goes")
        return value


class ZeroShotOptions(CandidateLabelOptions):
    """Options of ``zero-shot-classification`` (and those of :class:`CandidateLabelOptions`).

    Attributes:
        multi_label: score each label on its own (entailment vs contradiction).
        max_length: longest pair in tokens (None: the model's limit).
        prune_last_layer: run the last encoder layer for the first token only (see
            ``text-classification``); False runs the full last layer.
    """

    multi_label: bool = False
    prune_last_layer: bool = True


def labels_scores_type() -> DataType:
    """``struct<labels array<string>, scores array<double>>`` (best first)."""
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    return StructType(
        [
            StructField("labels", ArrayType(StringType())),
            StructField("scores", ArrayType(DoubleType())),
        ]
    )


def row_labels(labels: Any, options: CandidateLabelOptions) -> tuple[str, ...]:
    """A row's candidate labels: its own (``array<string>``), else the option's; checked.

    Raises:
        RowError: not an array, none at all, too many, or a null label.

    Example:
        >>> row_labels(None, ZeroShotOptions(candidate_labels="sports, politics"))
        ('sports', 'politics')
    """
    if labels is not None and not isinstance(labels, (list, tuple, np.ndarray)):
        raise RowError(
            f"'candidate_labels' must be an array of strings, got {type(labels).__name__}"
        )
    if labels is None or len(labels) == 0:
        labels = options.candidate_labels or ()
    if len(labels) == 0:
        raise RowError(
            "no candidate labels: give them in the 'candidate_labels' option or in a "
            "'candidate_labels' array<string> input field"
        )
    if len(labels) > options.max_candidate_labels:
        raise RowError(
            f"{len(labels)} candidate labels, more than max_candidate_labels="
            f"{options.max_candidate_labels}: each label costs one model input"
        )
    if not all(isinstance(label, str) for label in labels):
        raise RowError("candidate labels must be strings (a null label was found)")
    return tuple(labels)


class ZeroShotClassification(TaskAdapter):
    """Adapter of ``zero-shot-classification`` (alias ``zero-shot``)."""

    name = "zero-shot-classification"
    auto_model = "AutoModelForSequenceClassification"
    architectures = ("ForSequenceClassification",)
    cpu_call_cost = ENCODER_CALL_COST
    input_fields = ("text", "candidate_labels")
    input_types = {"text": ("string",), "candidate_labels": ("array<string>",)}
    optional_fields = ("candidate_labels",)
    result_field = "result"
    Options = ZeroShotOptions
    options: ZeroShotOptions
    graph_options = ("prune_last_layer",)

    def output_type(self) -> DataType:
        return labels_scores_type()

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        loaded.extras["pruned"] = prune_if(loaded, self.options.prune_last_layer)
        label2id = dict(loaded.model.config.label2id or {})
        entail = next(
            (int(i) for lab, i in label2id.items() if str(lab).lower().startswith("entail")), None
        )
        if entail is None:
            raise ModelValidationError(
                f"The model in {model_dir} is not an NLI model zero-shot classification can use: "
                f"none of its labels {sorted(label2id)} starts with 'entail'. Use an NLI model "
                "(e.g. one fine-tuned on MNLI) or set config.label2id."
            )
        num_labels = loaded.model.config.num_labels
        loaded.extras.update(
            entail=entail,
            contradiction=num_labels - 1 if entail == 0 else 0,  # the pipeline's choice
            max_length=resolve_max_length(loaded, self.options.max_length),
        )
        return loaded

    def convert(self, value: Any) -> tuple[str, tuple[str, ...]]:
        row = fields_of(value, self.input_fields)
        return require_text(row["text"]), row_labels(row["candidate_labels"], self.options)

    def prepare(self, loaded: LoadedModel, items: list[tuple[str, tuple[str, ...]]]) -> list[dict]:
        template = self.options.hypothesis_template
        premises = [text for text, labels in items for _ in labels]
        hypotheses = [template.format(label) for _, labels in items for label in labels]
        pairs = encode(
            loaded.tokenizer, premises, hypotheses, max_length=loaded.extras["max_length"]
        )
        feats, start = [], 0
        for _, labels in items:
            feats.append({"pairs": pairs[start : start + len(labels)], "labels": list(labels)})
            start += len(labels)
        return feats

    def length(self, feature: dict) -> int:
        """Padded cost of a row: labels x longest pair."""
        return len(feature["pairs"]) * max(len(p["input_ids"]) for p in feature["pairs"])

    def graph(self, loaded: LoadedModel) -> Graph:
        return logits_graph(loaded, self.graph_name())

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[dict]:
        pairs = [p for f in features for p in f["pairs"]]
        batch = collate_arrays(loaded.tokenizer, pairs, token_inputs(loaded.tokenizer))
        logits = self.run(loaded, batch)["logits"]
        entail = logits[:, loaded.extras["entail"]]
        # per pair: softmax of (contradiction, entailment) == sigmoid(entail - contradiction)
        alone = 1.0 / (1.0 + np.exp(logits[:, loaded.extras["contradiction"]] - entail))
        out, start = [], 0
        for feat in features:
            n = len(feat["labels"])
            if self.options.multi_label or n == 1:
                scores = alone[start : start + n]
            else:
                e = np.exp(entail[start : start + n] - entail[start : start + n].max())
                scores = e / e.sum()
            start += n
            order = np.argsort(-scores, kind="stable")
            out.append(
                {
                    "labels": [feat["labels"][i] for i in order],
                    "scores": [float(s) for s in scores[order]],
                }
            )
        return out
