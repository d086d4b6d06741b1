"""image-classification: label images (PNG, JPEG, WebP, GIF, BMP, TIFF) with scores.

Input: image file bytes, a path/URI read on the executor, or a binaryFile struct, decoded
with Pillow (size checked before decoding, EXIF orientation, RGB; see :mod:`._image`).
Output: ``array<struct<label string, score double>>``, the ``top_k`` best labels.

Example:
    >>> adapter = ImageClassification({"top_k": 2})
    >>> adapter.output_type().simpleString()
    'array<struct<label:string,score:double>>'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from hfspark.tasks._image import ImageOptions, ImageTask, groups_by_shape, pixel_batch, preprocess
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    import torch
    from pyspark.sql.types import DataType

__all__ = ["ImageClassification", "ImageClassificationOptions", "label_scores_type", "top_labels"]


class ImageClassificationOptions(ImageOptions):
    """Options of image-classification.

    Attributes:
        top_k: how many labels to return, best first (capped at the model's label count).
        function_to_apply: ``softmax``, ``sigmoid`` or ``none`` (default: from the model
            config, as the pipeline does: sigmoid for multi-label, softmax otherwise).
        max_pixels, max_file_bytes: see :class:`~hfspark.tasks._image.ImageOptions`.
    """

    top_k: int = Field(default=5, ge=1)
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None


def label_scores_type() -> DataType:
    """``array<struct<label string, score double>>``."""
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    return ArrayType(
        StructType([StructField("label", StringType()), StructField("score", DoubleType())])
    )


def top_labels(
    logits: torch.Tensor, config: Any, top_k: int, function_to_apply: str | None
) -> list[list[dict[str, Any]]]:
    """Per row, the ``top_k`` (label, score) pairs of a classifier's logits, best first.

    Example:
        >>> top_labels(torch.tensor([[0.0, 2.0]]), model.config, 1, None)
        [[{'label': 'dog', 'score': 0.88...}]]
    """
    func = function_to_apply
    if func is None:
        problem = getattr(config, "problem_type", None)
        if problem == "regression":
            func = "none"
        elif problem == "multi_label_classification" or config.num_labels == 1:
            func = "sigmoid"
        else:
            func = "softmax"
    logits = logits.float()
    scores = {"softmax": logits.softmax(-1), "sigmoid": logits.sigmoid(), "none": logits}[func]
    k = min(top_k, scores.shape[-1])
    values, ids = scores.topk(k, dim=-1)
    id2label = config.id2label
    return [
        [
            {"label": str(id2label.get(i, i)), "score": float(v)}
            for v, i in zip(vs, row, strict=True)
        ]
        for vs, row in zip(values.tolist(), ids.tolist(), strict=True)
    ]


class ImageClassification(ImageTask):
    """Image classifiers (ViT, ConvNeXt, ResNet...) with their image processor."""

    name: ClassVar[str] = "image-classification"
    auto_model: ClassVar[str] = "AutoModelForImageClassification"
    architectures: ClassVar[tuple[str, ...]] = (
        "ForImageClassification",
        "ForImageClassificationWithTeacher",
    )
    Options: ClassVar[type[ImageClassificationOptions]] = ImageClassificationOptions
    options: ImageClassificationOptions

    def output_type(self) -> DataType:
        return label_scores_type()

    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[Any]:
        return preprocess(loaded, items)

    def forward(self, loaded: LoadedModel, features: list[Any]) -> list[Any]:
        model = loaded.model
        results: list[Any] = [None] * len(features)
        for rows in groups_by_shape(features):  # processors may keep aspect ratios
            logits = model(pixel_values=pixel_batch(loaded, [features[i] for i in rows])).logits
            labels = top_labels(
                logits, model.config, self.options.top_k, self.options.function_to_apply
            )
            for i, out in zip(rows, labels, strict=True):
                results[i] = out
        return results
