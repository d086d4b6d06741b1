"""image-feature-extraction: one vector per image (CLIP/SigLIP image tower, ViT, DINOv2...).

Input: an image (file bytes, a path/URI read on the executor, or a binaryFile struct; see
:mod:`hfspark.tasks._image`). Output: ``array<float>``, one pooled vector per row, L2-normalised
by default like ``feature-extraction`` (so a dot product is a cosine similarity).

``pooling``: ``auto`` takes a dual encoder's projected image embedding (CLIP, SigLIP: the
same space as their text vectors from ``feature-extraction``), else the model's
``pooler_output`` when it has one (ViT's pooler, DINOv2's normalised CLS token: what
transformers' image-feature-extraction pipeline returns with ``pool=True``), else the first
(CLS) token. ``cls`` and ``mean`` pool ``last_hidden_state`` explicitly.

Example:
    >>> adapter = ImageFeatureExtraction({"normalize": True})
    >>> adapter.output_type().simpleString()
    'array<float>'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hfspark.errors import ConfigError, ModelValidationError
from hfspark.tasks._dual import image_embeddings, is_dual_encoder
from hfspark.tasks._image import ImageOptions, ImageTask, groups_by_shape, pixel_batch, preprocess
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    import torch
    from pyspark.sql.types import DataType

__all__ = ["ImageFeatureExtraction", "ImageFeatureExtractionOptions"]


class ImageFeatureExtractionOptions(ImageOptions):
    """Options of ``image-feature-extraction``.

    Attributes:
        pooling: ``auto`` | ``pooler`` | ``cls`` | ``mean`` (see the module docs).
        normalize: L2-normalize each vector.
        max_pixels, max_file_bytes: see :class:`~hfspark.tasks._image.ImageOptions`.
    """

    pooling: Literal["auto", "pooler", "cls", "mean"] = "auto"
    normalize: bool = True


class ImageFeatureExtraction(ImageTask):
    """Adapter of ``image-feature-extraction`` (alias ``image-embeddings``)."""

    name: ClassVar[str] = "image-feature-extraction"
    auto_model: ClassVar[str] = "AutoModel"
    result_field: ClassVar[str] = "embedding"
    Options: ClassVar[type[ImageFeatureExtractionOptions]] = ImageFeatureExtractionOptions
    options: ImageFeatureExtractionOptions

    def output_type(self) -> DataType:
        from pyspark.sql.types import ArrayType, FloatType

        return ArrayType(FloatType())

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        model, pooling = loaded.model, self.options.pooling
        dual = is_dual_encoder(model)
        if dual and pooling != "auto":
            raise ConfigError(
                f"pooling={pooling!r}: a {type(model).__name__} gives its projected image "
                f"embedding (the space its text vectors share); leave pooling at 'auto'."
            )
        if not dual and "pixel_values" not in _forward_params(model):
            raise ModelValidationError(
                f"{type(model).__name__} in {model_dir} takes no images (no pixel_values): "
                f"image-feature-extraction needs a vision model (ViT, DINOv2, CLIP, SigLIP...)."
            )
        loaded.extras["pooling"] = "projection" if dual else pooling
        return loaded

    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[Any]:
        return preprocess(loaded, items)

    def forward(self, loaded: LoadedModel, features: list[Any]) -> list[list[float]]:
        import torch

        results: list[Any] = [None] * len(features)
        for rows in groups_by_shape(features):
            vectors = self._vectors(loaded, pixel_batch(loaded, [features[i] for i in rows]))
            if self.options.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
            for i, vec in zip(rows, vectors.cpu().tolist(), strict=True):
                results[i] = vec
        return results

    def _vectors(self, loaded: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
        how = loaded.extras["pooling"]
        if how == "projection":
            return image_embeddings(loaded, pixels)
        out = loaded.model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if how == "pooler" or (how == "auto" and pooled is not None):
            if pooled is None:
                raise ConfigError(
                    f"pooling='pooler': {type(loaded.model).__name__} has no pooler; use 'cls' or 'mean'."
                )
            return pooled.flatten(1).float()
        hidden = out.last_hidden_state.float()
        if hidden.dim() == 4:  # convolutional models: (batch, channels, h, w)
            return hidden.mean(dim=(2, 3))
        return hidden.mean(dim=1) if how == "mean" else hidden[:, 0]


def _forward_params(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)
