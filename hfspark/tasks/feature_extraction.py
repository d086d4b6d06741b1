"""Feature extraction / sentence embeddings: one vector per text.

Input: a string column. Output: ``array<float>``, one pooled vector per row (not the token
matrix transformers' feature-extraction pipeline returns). ``pooling`` is ``mean`` (over real
tokens, weighted by the attention mask), ``cls`` (the first token) or ``max`` (over real
tokens); None reads the model's sentence-transformers ``1_Pooling/config.json`` when the
folder has one, else ``mean``. ``normalize`` (default True) scales vectors to unit L2 norm, so
a dot product is a cosine similarity. ``max_length`` None reads sentence-transformers'
``max_seq_length`` (256 for all-MiniLM-L6-v2), else the model's limit capped at 512.

With mean pooling and normalization this is what sentence-transformers computes for
all-MiniLM-L6-v2 and similar models.

A dual encoder (CLIP, SigLIP) gives its projected *text* embedding instead (``pooling`` must
stay unset): the same space as ``image-feature-extraction`` vectors of the same model, so a
dot product of the two normalised vectors compares a text with an image.

Example:
    >>> adapter = FeatureExtraction({"pooling": "mean"})
    >>> loaded = adapter.load(minilm_folder, {}, "cpu", None)
    >>> vectors = adapter.forward(loaded, adapter.prepare(loaded, ["I like food"]))
    >>> len(vectors[0])
    384
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hfspark.errors import ConfigError
from hfspark.tasks._text import (
    call_model,
    collate_arrays,
    encode,
    prune_if,
    read_json,
    require_text,
    resolve_max_length,
    token_inputs,
)
from hfspark.tasks.base import ENCODER_CALL_COST, LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    import torch
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = ["FeatureExtraction", "FeatureExtractionOptions", "pool"]

Pooling = Literal["mean", "cls", "max"]


class FeatureExtractionOptions(TaskOptions):
    """Options of ``feature-extraction``.

    Attributes:
        pooling: ``mean`` | ``cls`` | ``max`` (None: the model's sentence-transformers config, else mean).
        normalize: L2-normalize each vector.
        max_length: longest input in tokens (None: see the module docs).
        prune_last_layer: with ``cls`` pooling, run the last encoder layer for the first token
            only (BERT-family models; same vectors to float rounding). False runs it in full.
    """

    pooling: Pooling | None = None
    normalize: bool = True
    prune_last_layer: bool = True


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool ``(batch, tokens, dim)`` hidden states into ``(batch, dim)``; padding never counts."""
    if how == "cls":
        return hidden[:, 0]
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if how == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class FeatureExtraction(TaskAdapter):
    """Adapter of ``feature-extraction`` (aliases ``sentence-embeddings``, ``embeddings``)."""

    name = "feature-extraction"
    auto_model = "AutoModel"
    architectures = ()
    cpu_call_cost = ENCODER_CALL_COST
    result_field = "embedding"
    Options = FeatureExtractionOptions
    options: FeatureExtractionOptions
    graph_options = ("pooling", "prune_last_layer")

    def output_type(self) -> DataType:
        from pyspark.sql.types import ArrayType, FloatType

        return ArrayType(FloatType())

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        if loaded.engine == "torch":
            from hfspark.tasks._dual import is_dual_encoder

            if is_dual_encoder(loaded.model):
                return self._load_text_tower(loaded)
        folders = [Path(model_dir), components.get("tokenizer")]
        st_config = read_json(folders, "sentence_bert_config.json") or {}
        pooling = self.options.pooling
        if pooling is None:
            st_pool = read_json(folders, "1_Pooling/config.json") or {}
            pooling = next(
                (
                    name
                    for name in ("cls", "max", "mean")
                    if st_pool.get(f"pooling_mode_{name}_token")
                    or st_pool.get(f"pooling_mode_{name}_tokens")
                ),
                "mean",
            )
        default = st_config.get("max_seq_length") or 512
        loaded.extras["pruned"] = prune_if(
            loaded, pooling == "cls" and self.options.prune_last_layer, head_reads_first_token=True
        )
        loaded.extras.update(
            pooling=pooling, max_length=resolve_max_length(loaded, self.options.max_length, default)
        )
        return loaded

    def _load_text_tower(self, loaded: LoadedModel) -> LoadedModel:
        from hfspark.tasks._dual import fixed_text_length

        if self.options.pooling is not None:
            raise ConfigError(
                f"pooling={self.options.pooling!r}: a {type(loaded.model).__name__} gives its "
                f"projected text embedding (the space its image vectors share); leave pooling unset."
            )
        fixed = fixed_text_length(loaded.model)
        loaded.extras.update(
            pooling="projection",
            max_length=resolve_max_length(loaded, self.options.max_length, fixed),
        )
        return loaded

    def convert(self, value: Any) -> str:
        return require_text(value)

    def prepare(self, loaded: LoadedModel, items: list[str]) -> list[dict]:
        return encode(loaded.tokenizer, items, max_length=loaded.extras["max_length"])

    def graph(self, loaded: LoadedModel) -> Graph:
        """Token inputs -> the pooled (not yet normalised) vector of each row."""
        from hfspark.tasks._graph import Graph

        how = loaded.extras["pooling"]
        if how == "projection":
            raise NotImplementedError("a dual encoder's text tower runs on torch")

        def fn(**inputs: Any) -> dict[str, Any]:
            out = call_model(loaded, inputs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            return {"embedding": pool(hidden.float(), inputs["attention_mask"], how)}

        return Graph(token_inputs(loaded.tokenizer), ("embedding",), fn, self.graph_name())

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[list[float]]:
        if loaded.extras["pooling"] == "projection":
            from hfspark.tasks._dual import text_embeddings

            vectors = text_embeddings(loaded, features).float().cpu().numpy()
        else:
            batch = collate_arrays(loaded.tokenizer, features, token_inputs(loaded.tokenizer))
            vectors = self.run(loaded, batch)["embedding"]
        if self.options.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.tolist()
