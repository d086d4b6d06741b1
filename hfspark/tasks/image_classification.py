"""image-classification: label images (PNG, JPEG, WebP, GIF, BMP, TIFF bytes) with scores.

Input: binary image file bytes, decoded with Pillow. The pixel count is read from the header
and checked against ``max_pixels`` *before* decoding (a decompression bomb is a RowError,
never an out-of-memory); corrupt or truncated files are RowErrors. EXIF orientation is
applied and images are converted to RGB, like ``transformers.pipeline``.
Output: ``array<struct<label string, score double>>``, the ``top_k`` best labels.

Example:
    >>> adapter = ImageClassification({"top_k": 2})
    >>> adapter.output_type().simpleString()
    'array<struct<label:string,score:double>>'
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from hfspark.errors import RowError
from hfspark.tasks.base import LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from pyspark.sql.types import DataType

__all__ = ["ImageClassification", "ImageClassificationOptions", "label_scores_type", "top_labels"]

#: Pillow's own default limit (about 89.5 megapixels, a 0.25 GB RGB image).
DEFAULT_MAX_PIXELS = 89_478_485


class ImageClassificationOptions(TaskOptions):
    """Options of image-classification.

    Attributes:
        top_k: how many labels to return, best first (capped at the model's label count).
        function_to_apply: ``softmax``, ``sigmoid`` or ``none`` (default: from the model
            config, as the pipeline does: sigmoid for multi-label, softmax otherwise).
        max_pixels: refuse images with more pixels than this (checked before decoding).
    """

    top_k: int = Field(default=5, ge=1)
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)


def label_scores_type() -> DataType:
    """``array<struct<label string, score double>>``."""
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    return ArrayType(StructType([StructField("label", StringType()), StructField("score", DoubleType())]))


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
        [{"label": str(id2label.get(i, i)), "score": float(v)} for v, i in zip(vs, row, strict=True)]
        for vs, row in zip(values.tolist(), ids.tolist(), strict=True)
    ]


class ImageClassification(TaskAdapter):
    """Image classifiers (ViT, ConvNeXt, ResNet...) with their image processor."""

    max_sort_window: ClassVar[int] = 256  # decoded media is large: sort fewer rows at once
    name: ClassVar[str] = "image-classification"
    auto_model: ClassVar[str] = "AutoModelForImageClassification"
    architectures: ClassVar[tuple[str, ...]] = ("ForImageClassification", "ForImageClassificationWithTeacher")
    components: ClassVar[tuple[str, ...]] = ("image_processor",)
    input_fields: ClassVar[tuple[str, ...]] = ("image",)
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {"image": ("binary",)}
    Options: ClassVar[type[ImageClassificationOptions]] = ImageClassificationOptions
    options: ImageClassificationOptions

    def output_type(self) -> DataType:
        return label_scores_type()

    def convert(self, value: Any) -> Image.Image:
        """Image bytes -> an RGB Pillow image (size checked before decoding)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise RowError(f"image-classification takes image file bytes, got {type(value).__name__}")
        return decode_image(bytes(value), self.options.max_pixels)

    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[Any]:
        features = []
        for image in items:
            out = loaded.processor(images=image, return_tensors="pt")
            features.append(out["pixel_values"][0])
        return features

    def length(self, feature: Any) -> int:
        return int(feature.numel())

    def forward(self, loaded: LoadedModel, features: list[Any]) -> list[Any]:
        import torch

        model = loaded.model
        results: list[Any] = [None] * len(features)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(features):  # processors may keep aspect ratios: stack equal shapes
            groups.setdefault(tuple(f.shape), []).append(i)
        for rows in groups.values():
            pixels = torch.stack([features[i] for i in rows]).to(loaded.device)
            if loaded.dtype is not None and loaded.dtype.is_floating_point:
                pixels = pixels.to(loaded.dtype)
            logits = model(pixel_values=pixels).logits
            labels = top_labels(logits, model.config, self.options.top_k, self.options.function_to_apply)
            for i, out in zip(rows, labels, strict=True):
                results[i] = out
        return results


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to RGB, refusing empty, corrupt, truncated or oversized images."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise RowError("the image bytes are empty")
    try:
        with warnings.catch_warnings():
            # our own max_pixels check replaces Pillow's warning; its hard error (twice
            # Image.MAX_IMAGE_PIXELS) still applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise RowError(
                    f"the image is {width}x{height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} (option max_pixels); downscale it first"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except RowError:
        raise
    except Image.DecompressionBombError as e:
        raise RowError(f"the image is too large to decode safely: {e}") from e
    except UnidentifiedImageError as e:
        raise RowError("the bytes are not an image Pillow can read (PNG, JPEG, WebP, GIF...)") from e
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise RowError(f"the image is corrupt or truncated: {e}") from e
