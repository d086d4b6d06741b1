"""object-detection: boxes, labels and scores per image (DETR family and other detectors).

Input: an image (file bytes, a path/URI read on the executor, or a binaryFile struct; see
:mod:`hfspark.tasks._image`). Each image is preprocessed on its own (detection processors keep
the aspect ratio; no padding, so a result never depends on the other images of its batch)
and same-sized images run together. Boxes come from the image processor's own
``post_process_object_detection``, in pixels of the original image, as transformers'
object-detection pipeline gives them (truncated to int, query order).

Output: ``array<struct<label string, score double, box struct<xmin int, ymin int, xmax int,
ymax int>>>``, the detections scoring above ``threshold`` (none: an empty array).

Example:
    >>> adapter = ObjectDetection({"threshold": 0.9})
    >>> adapter.output_type().simpleString()
    'array<struct<label:string,score:double,box:struct<xmin:int,ymin:int,xmax:int,ymax:int>>>'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from hfspark.errors import ModelValidationError
from hfspark.tasks._image import ImageOptions, ImageTask, groups_by_shape, pixel_batch, preprocess
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["ObjectDetection", "ObjectDetectionOptions", "detections_type"]


class ObjectDetectionOptions(ImageOptions):
    """Options of ``object-detection``.

    Attributes:
        threshold: keep detections scoring above this (the pipeline's default, 0.5).
        max_pixels, max_file_bytes: see :class:`~hfspark.tasks._image.ImageOptions`.
    """

    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


def detections_type() -> DataType:
    """``array<struct<label, score, box struct<xmin, ymin, xmax, ymax>>>``."""
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    box = StructType([StructField(n, IntegerType()) for n in ("xmin", "ymin", "xmax", "ymax")])
    return ArrayType(
        StructType(
            [
                StructField("label", StringType()),
                StructField("score", DoubleType()),
                StructField("box", box),
            ]
        )
    )


class ObjectDetection(ImageTask):
    """Adapter of ``object-detection``."""

    name: ClassVar[str] = "object-detection"
    auto_model: ClassVar[str] = "AutoModelForObjectDetection"
    architectures: ClassVar[tuple[str, ...]] = ("ForObjectDetection",)
    result_field: ClassVar[str] = "objects"
    Options: ClassVar[type[ObjectDetectionOptions]] = ObjectDetectionOptions
    options: ObjectDetectionOptions

    def output_type(self) -> DataType:
        return detections_type()

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        if not callable(getattr(loaded.processor, "post_process_object_detection", None)):
            raise ModelValidationError(
                f"The image processor {type(loaded.processor).__name__} in {model_dir} has no "
                f"post_process_object_detection: save the detector with its own image processor."
            )
        return loaded

    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[dict[str, Any]]:
        pixels = preprocess(loaded, items, do_pad=False)
        return [
            {"pixel_values": p, "size": (image.height, image.width)}
            for p, image in zip(pixels, items, strict=True)
        ]

    def forward(self, loaded: LoadedModel, features: list[dict[str, Any]]) -> list[list[dict]]:
        id2label = loaded.model.config.id2label
        results: list[Any] = [None] * len(features)
        pixels = [f["pixel_values"] for f in features]
        for rows in groups_by_shape(pixels):
            out = loaded.model(pixel_values=pixel_batch(loaded, [pixels[i] for i in rows]))
            out.logits, out.pred_boxes = out.logits.float(), out.pred_boxes.float()
            found = loaded.processor.post_process_object_detection(
                out,
                threshold=self.options.threshold,
                target_sizes=[features[i]["size"] for i in rows],
            )
            for i, det in zip(rows, found, strict=True):
                results[i] = [
                    {
                        "label": str(id2label.get(int(label), int(label))),
                        "score": float(score),
                        "box": dict(
                            zip(("xmin", "ymin", "xmax", "ymax"), box.int().tolist(), strict=True)
                        ),
                    }
                    for score, label, box in zip(
                        det["scores"], det["labels"], det["boxes"], strict=True
                    )
                ]
        return results
