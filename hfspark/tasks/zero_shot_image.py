"""zero-shot-image-classification: score candidate labels for an image with CLIP or SigLIP.

Each label is put in ``hypothesis_template`` ("This is a photo of {}.") and embedded with the
model's text tower; the image with its image tower; a label's logit is the scaled cosine
(plus SigLIP's bias), as in the model's own forward and transformers' pipeline. Scores are a
softmax over the row's labels (CLIP), or a sigmoid per label for SigLIP-style models
(``multi_label``: None picks by model, True/False forces one).

Labels come from the ``candidate_labels`` option or per row from a second input
``candidate_labels`` (``array<string>``; null or empty falls back to the option). Text vectors
are cached per label text (``label_cache_size``), so a fixed label set costs one text pass per
Python worker. Output: ``struct<labels array<string>, scores array<double>>``, best first.

Example:
    >>> adapter = ZeroShotImageClassification({"candidate_labels": ["cat", "dog"]})
    >>> adapter.output_type().simpleString()
    'struct<labels:array<string>,scores:array<double>>'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from hfspark.errors import ModelValidationError
from hfspark.tasks._dual import (
    fixed_text_length,
    image_embeddings,
    is_dual_encoder,
    similarity_logits,
    text_embeddings,
    uses_sigmoid,
)
from hfspark.tasks._image import (
    IMAGE_TYPES,
    ImageOptions,
    ImageTask,
    groups_by_shape,
    load_image,
    pixel_batch,
    preprocess,
)
from hfspark.tasks._text import encode, resolve_max_length
from hfspark.tasks.base import LoadedModel
from hfspark.tasks.zero_shot import CandidateLabelOptions, labels_scores_type, row_labels

if TYPE_CHECKING:
    import torch
    from pyspark.sql.types import DataType

__all__ = ["ZeroShotImageClassification", "ZeroShotImageOptions"]


class ZeroShotImageOptions(ImageOptions, CandidateLabelOptions):
    """Options of ``zero-shot-image-classification``.

    Attributes:
        candidate_labels, max_candidate_labels: see
            :class:`~hfspark.tasks.zero_shot.CandidateLabelOptions`.
        hypothesis_template: the text each label is put in (``{}`` is the label).
        multi_label: None: sigmoid per label for SigLIP-style models, softmax otherwise.
        max_length: longest label text in tokens (None: the model's limit; SigLIP: 64).
        label_cache_size: label texts whose vectors each Python worker keeps.
        max_pixels, max_file_bytes: see :class:`~hfspark.tasks._image.ImageOptions`.
    """

    hypothesis_template: str = "This is a photo of {}."
    multi_label: bool | None = None
    label_cache_size: int = Field(default=4096, ge=0)


class ZeroShotImageClassification(ImageTask):
    """Adapter of ``zero-shot-image-classification`` (CLIP, SigLIP and other dual encoders)."""

    name: ClassVar[str] = "zero-shot-image-classification"
    auto_model: ClassVar[str] = "AutoModelForZeroShotImageClassification"
    components: ClassVar[tuple[str, ...]] = ("tokenizer", "image_processor")
    input_fields: ClassVar[tuple[str, ...]] = ("image", "candidate_labels")
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "image": IMAGE_TYPES,
        "candidate_labels": ("array<string>",),
    }
    optional_fields: ClassVar[tuple[str, ...]] = ("candidate_labels",)
    Options: ClassVar[type[ZeroShotImageOptions]] = ZeroShotImageOptions
    options: ZeroShotImageOptions

    def output_type(self) -> DataType:
        return labels_scores_type()

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        if not is_dual_encoder(loaded.model):
            raise ModelValidationError(
                f"{type(loaded.model).__name__} in {model_dir} has no text and image towers "
                f"(get_text_features/get_image_features): zero-shot-image-classification needs "
                f"a CLIP- or SigLIP-style model."
            )
        multi = self.options.multi_label
        loaded.extras.update(
            sigmoid=uses_sigmoid(loaded.model) if multi is None else multi,
            max_length=resolve_max_length(
                loaded, self.options.max_length, fixed_text_length(loaded.model)
            ),
            label_cache=OrderedDict(),
        )
        return loaded

    def convert(self, value: Any) -> tuple[Any, tuple[str, ...]]:
        """A row (an image, or ``{image, candidate_labels}``) -> (RGB image, its labels)."""
        row = value.asDict() if hasattr(value, "asDict") else value
        if isinstance(row, Mapping) and "image" in row:
            image, labels = row["image"], row.get("candidate_labels")
        else:
            image, labels = value, None
        labels = row_labels(labels, self.options)  # label errors before decoding the image
        return load_image(image, self.options.max_pixels, self.options.max_file_bytes), labels

    def prepare(self, loaded: LoadedModel, items: list[tuple[Any, tuple[str, ...]]]) -> list[dict]:
        pixels = preprocess(loaded, [image for image, _ in items])
        return [
            {"pixel_values": p, "labels": labels}
            for p, (_, labels) in zip(pixels, items, strict=True)
        ]

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[dict]:
        texts = self._label_vectors(loaded, {label for f in features for label in f["labels"]})
        results: list[Any] = [None] * len(features)
        pixels = [f["pixel_values"] for f in features]
        for rows in groups_by_shape(pixels):
            images = image_embeddings(loaded, pixel_batch(loaded, [pixels[i] for i in rows]))
            for i, image in zip(rows, images, strict=True):
                labels = features[i]["labels"]
                logits = similarity_logits(
                    loaded.model, image[None], texts[list(labels)].to(image.device)
                )[0]
                scores = logits.sigmoid() if loaded.extras["sigmoid"] else logits.softmax(-1)
                order = sorted(range(len(labels)), key=lambda k: -float(scores[k]))
                results[i] = {
                    "labels": [labels[k] for k in order],
                    "scores": [float(scores[k]) for k in order],
                }
        return results

    def _label_vectors(self, loaded: LoadedModel, labels: set[str]) -> _Vectors:
        """Text vectors of the labels (filled in ``hypothesis_template``), cached per worker."""
        cache: OrderedDict[str, torch.Tensor] = loaded.extras["label_cache"]
        missing = sorted(label for label in labels if label not in cache)
        found = {label: cache[label] for label in labels if label in cache}
        if missing:
            template = self.options.hypothesis_template
            tokens = encode(
                loaded.tokenizer,
                [template.format(m) for m in missing],
                max_length=loaded.extras["max_length"],
            )
            vectors = text_embeddings(loaded, tokens)
            for label, vec in zip(missing, vectors, strict=True):
                found[label] = vec
                if self.options.label_cache_size:
                    cache[label] = vec
            while len(cache) > self.options.label_cache_size:
                cache.popitem(last=False)
        return _Vectors(found)


class _Vectors:
    """Label -> vector, indexable by a list of labels (gives a stacked tensor)."""

    def __init__(self, by_label: dict[str, torch.Tensor]) -> None:
        self.by_label = by_label

    def __getitem__(self, labels: list[str]) -> torch.Tensor:
        import torch

        return torch.stack([self.by_label[label] for label in labels])
