"""Your own task: a cross-encoder reranker, one ``struct<score double>`` per (query, passage).

A worked example of a task that is not built into hfspark. The adapter subclasses
:class:`hfspark.tasks.TaskAdapter` and fills in the contract (see ``hfspark/tasks/base.py``):

* class attributes: ``name``, ``auto_model``, the input fields and their Spark types, ``Options``;
* ``output_type()``: the Spark type of one result row;
* ``convert`` (one row -> task input; a bad row raises ``RowError``), ``prepare`` (a list of
  inputs -> features, e.g. token ids) and ``forward`` (one batch of features -> one Python
  value per feature, matching ``output_type``).

Register it once on the driver and use it like a built-in task::

    from hfspark.tasks import register_task
    from examples.reranker import CrossEncoderReranker

    register_task("rerank", CrossEncoderReranker)
    rerank = model_udf("models/cross-encoder", task="rerank")
    df.withColumn("r", rerank("query", "passage")).orderBy(F.desc("r.score"))

or name it by import path where no Python code runs first (a YAML job, a SQL functions file):
``task: examples.reranker:CrossEncoderReranker``. Executors import this module by that path,
so it must be importable there too (``PYTHONPATH``, ``--py-files`` or an installed package
with an ``hfspark.tasks`` entry point).

Scores follow sentence-transformers' ``CrossEncoder``: a one-logit model gives
``sigmoid(logit)`` (``activation="none"``: the raw logit); a two-label model gives the
softmax probability of its last label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from hfspark.errors import RowError
from hfspark.tasks import LoadedModel, TaskAdapter, TaskOptions

__all__ = ["CrossEncoderReranker", "RerankOptions", "build_demo_model"]


class RerankOptions(TaskOptions):
    """Options of the reranker (unknown keys are refused, like every task's options).

    Attributes:
        activation: ``sigmoid`` (a probability-like score) or ``none`` (the raw logit).
        max_length: longest (query, passage) pair in tokens; longer pairs lose passage tokens.
    """

    activation: Literal["sigmoid", "none"] = "sigmoid"


class CrossEncoderReranker(TaskAdapter):
    """Score (query, passage) pairs with a sequence-classification cross-encoder.

    Example:
        >>> adapter = CrossEncoderReranker({"activation": "none"})
        >>> adapter.output_type().simpleString()
        'struct<score:double>'
    """

    name: ClassVar[str] = "rerank"
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"
    architectures: ClassVar[tuple[str, ...]] = ("ForSequenceClassification",)
    components: ClassVar[tuple[str, ...]] = ("tokenizer",)
    input_fields: ClassVar[tuple[str, ...]] = ("query", "passage")
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "query": ("string",),
        "passage": ("string",),
    }
    cpu_call_cost: ClassVar[float | None] = 8.0  # an encoder: small length-sorted batches
    Options: ClassVar[type[RerankOptions]] = RerankOptions
    options: RerankOptions

    def output_type(self) -> Any:
        from pyspark.sql.types import DoubleType, StructField, StructType

        return StructType([StructField("score", DoubleType())])

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        limit = getattr(loaded.tokenizer, "model_max_length", None) or 512
        loaded.extras["max_length"] = min(self.options.max_length or 512, limit, 100_000)
        return loaded

    def convert(self, value: Any) -> tuple[str, str]:
        row = value.asDict() if hasattr(value, "asDict") else value
        if not isinstance(row, Mapping):
            raise RowError("rerank takes two inputs, query and passage (two columns or a struct)")
        query, passage = row.get("query"), row.get("passage")
        for field, text in (("query", query), ("passage", passage)):
            if not isinstance(text, str):
                raise RowError(f"{field!r} must be a string, got {type(text).__name__}")
        return query, passage

    def prepare(self, loaded: LoadedModel, items: list[tuple[str, str]]) -> list[dict[str, list]]:
        enc = loaded.tokenizer(
            [q for q, _ in items],
            [p for _, p in items],
            truncation="only_second",
            max_length=loaded.extras["max_length"],
            padding=False,
        )
        names = [k for k in loaded.tokenizer.model_input_names if k in enc]
        return [{k: enc[k][i] for k in names} for i in range(len(items))]

    def forward(
        self, loaded: LoadedModel, features: list[dict[str, list]]
    ) -> list[dict[str, float]]:
        batch = loaded.tokenizer.pad(
            features, padding=True, padding_side="right", return_tensors="pt"
        )
        logits = loaded.model(**{k: v.to(loaded.device) for k, v in batch.items()}).logits.float()
        if logits.shape[-1] == 1:
            scores = (
                logits[:, 0].sigmoid() if self.options.activation == "sigmoid" else logits[:, 0]
            )
        else:
            scores = logits.softmax(-1)[:, -1]
        return [{"score": float(s)} for s in scores.cpu().tolist()]


def build_demo_model(folder: str | Path) -> Path:
    """Save a tiny *random* cross-encoder (BERT, one logit) to ``folder``, offline, seeded.

    Its scores mean nothing; it only lets the example run without a download. Use a real
    cross-encoder (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``) for real work.

    Example:
        >>> build_demo_model("models/tiny-cross-encoder")
        PosixPath('models/tiny-cross-encoder')
    """
    import re

    import torch
    import transformers

    words = (
        "what is spark where does john work paris is the capital of france "
        "spark runs python on a cluster john works for google in berlin the cat sat on the mat"
    )
    chars = sorted(set(words.replace(" ", "")))
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *chars,
        *(f"##{c}" for c in chars),
        *sorted({w for w in re.findall(r"\w+", words) if len(w) > 1}),
    ]
    tokenizer = transformers.BertTokenizer(
        vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, model_max_length=128
    )
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        initializer_range=0.2,
    )
    folder = Path(folder)
    transformers.BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
