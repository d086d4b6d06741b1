"""Helpers shared by the image tasks: reading and decoding images, options, batched pixels.

An image arrives as file bytes (a ``binary`` column), as a path or URI read on the executor
(a ``string`` column: a local path, ``file://``, or any fsspec URL such as ``s3://``), or as
the row of Spark's ``binaryFile`` source packed in a struct (``content``, else ``path``).
Decoding checks the pixel count from the header *before* decoding (a decompression bomb is a
RowError, never an out-of-memory), applies the EXIF orientation and converts to RGB, like
``transformers.pipeline``; corrupt or truncated files are RowErrors. GIFs give their first frame.

:class:`ImageTask` is the base of the image adapters: it owns their input fields and types,
``convert`` and the cost ``length`` of a feature; the adapters add ``prepare``/``forward``.

Example:
    >>> image = load_image(png_bytes, max_pixels=10_000)
    >>> image.mode
    'RGB'
    >>> pixels = preprocess(loaded, [image, image])     # one (3, H, W) tensor per image
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from hfspark.errors import InputSchemaError, RowError
from hfspark.tasks.base import LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from pyspark.sql.types import DataType

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_TYPES",
    "ImageOptions",
    "ImageTask",
    "decode_image",
    "groups_by_shape",
    "load_image",
    "pixel_batch",
    "preprocess",
    "read_uri",
]

#: Pillow's own default limit (about 89.5 megapixels, a 0.25 GB RGB image).
DEFAULT_MAX_PIXELS = 89_478_485
#: largest image file read from a path or URI.
DEFAULT_MAX_FILE_BYTES = 256 * 2**20
#: Spark types an image input takes: file bytes, a path/URI, a binaryFile row as a struct.
IMAGE_TYPES = ("binary", "string", "struct")


class ImageOptions(TaskOptions):
    """Options every image task has.

    Attributes:
        max_pixels: refuse images with more pixels than this (checked before decoding).
        max_file_bytes: refuse image files larger than this when reading a path or URI.
    """

    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, ge=1)


def read_uri(uri: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file: a local path, a ``file:`` URI or an fsspec URL (``s3://``...).

    Raises:
        RowError: no such file, unreadable, or larger than ``max_bytes``.

    Example:
        >>> read_uri("file:///data/images/cat.png")[:4]
        b'\\x89PNG'
    """
    if not uri.strip():
        raise RowError("the image path is empty")
    path = uri
    if uri.startswith("file:"):  # file:///x, and Spark's own file:/x (binaryFile's path column)
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(uri).path)
    try:
        if "://" in path:
            import fsspec

            with fsspec.open(uri, "rb") as f:
                data = f.read(max_bytes + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
    except FileNotFoundError as e:
        raise RowError(f"no image file at {uri!r} (paths are read on the executors)") from e
    except (OSError, ValueError, ImportError) as e:
        raise RowError(f"cannot read the image at {uri!r}: {type(e).__name__}: {e}") from e
    if len(data) > max_bytes:
        raise RowError(
            f"the image file at {uri!r} is over {max_bytes} bytes (option max_file_bytes)"
        )
    return data


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to RGB, refusing empty, corrupt, truncated or oversized images.

    Example:
        >>> decode_image(open("cat.jpg", "rb").read()).mode
        'RGB'
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise RowError("the image bytes are empty")
    try:
        with warnings.catch_warnings():
            # our own max_pixels check replaces Pillow's warning; its hard error (twice
            # Image.MAX_IMAGE_PIXELS) still applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise RowError(
                    f"the image is {width}x{height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} (option max_pixels); downscale it first"
                )
            image.load()  # the first frame of an animated GIF/WebP/TIFF
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except RowError:
        raise
    except Image.DecompressionBombError as e:
        raise RowError(f"the image is too large to decode safely: {e}") from e
    except UnidentifiedImageError as e:
        raise RowError(
            "the bytes are not an image Pillow can read (PNG, JPEG, WebP, GIF...)"
        ) from e
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise RowError(f"the image is corrupt or truncated: {e}") from e


def load_image(
    value: Any, max_pixels: int = DEFAULT_MAX_PIXELS, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Image.Image:
    """One row's image (bytes, a path/URI, or a binaryFile struct) as an RGB Pillow image.

    Example:
        >>> load_image({"path": "file:///imgs/a.png", "content": None}).size
        (640, 480)
    """
    if hasattr(value, "asDict"):  # a pyspark Row
        value = value.asDict()
    if isinstance(value, Mapping):
        content, path = value.get("content"), value.get("path")
        if content is not None:
            value = content
        elif isinstance(path, str):
            value = path
        else:
            raise RowError(
                "the image struct has neither 'content' bytes nor a 'path' (Spark's binaryFile "
                "columns)"
            )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_image(bytes(value), max_pixels)
    if isinstance(value, str):
        return decode_image(read_uri(value, max_file_bytes), max_pixels)
    raise RowError(
        f"an image is file bytes, a path/URI string or a binaryFile struct, got {type(value).__name__}"
    )


def preprocess(
    loaded: LoadedModel, images: Sequence[Image.Image], **kwargs: Any
) -> list[torch.Tensor]:
    """Run the image processor on a whole list at once; one ``pixel_values`` tensor per image.

    Falls back to one call per image when the processor keeps each image's own size.
    """
    if not images:
        return []
    try:
        out = loaded.processor(images=list(images), return_tensors="pt", **kwargs)
        return list(out["pixel_values"])
    except ValueError:  # sizes differ and cannot be stacked: image by image
        return [
            loaded.processor(images=im, return_tensors="pt", **kwargs)["pixel_values"][0]
            for im in images
        ]


def groups_by_shape(tensors: Sequence[Any]) -> list[list[int]]:
    """Positions of tensors grouped by shape (first-seen order): each group stacks into a batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return list(groups.values())


def pixel_batch(loaded: LoadedModel, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-shaped pixel tensors, on the model's device and floating dtype."""
    import torch

    pixels = torch.stack(list(tensors)).to(loaded.device)
    if loaded.dtype is not None and loaded.dtype.is_floating_point:
        pixels = pixels.to(loaded.dtype)
    return pixels


class ImageTask(TaskAdapter):
    """Base of the image adapters: image input (bytes, path/URI or binaryFile struct), ``convert``."""

    max_sort_window: ClassVar[int] = 256  # decoded media is large: sort fewer rows at once
    components: ClassVar[tuple[str, ...]] = ("image_processor",)
    input_fields: ClassVar[tuple[str, ...]] = ("image",)
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {"image": IMAGE_TYPES}
    Options: ClassVar[type[ImageOptions]] = ImageOptions
    options: ImageOptions

    def check_input(self, types: Sequence[DataType]) -> None:
        """Also refuse an image struct without ``content`` (binary) or ``path`` (string)."""
        from pyspark.sql.types import BinaryType, StringType, StructType

        super().check_input(types)
        image = types[0] if types else None
        if isinstance(image, StructType) and "image" not in image.fieldNames():
            fields = {f.name: f.dataType for f in image.fields}
            if not (
                isinstance(fields.get("content"), BinaryType)
                or isinstance(fields.get("path"), StringType)
            ):
                raise InputSchemaError(
                    f"Task {self.name!r}: an image struct needs a 'content' binary or a 'path' "
                    f"string field (Spark's binaryFile columns), got {image.simpleString()}. "
                    f"Pass the binary column itself, e.g. udf('content')."
                )

    def convert(self, value: Any) -> Any:
        """One row -> an RGB Pillow image (size checked before decoding)."""
        return load_image(value, self.options.max_pixels, self.options.max_file_bytes)

    def length(self, feature: Any) -> int:
        """Pixels in the feature (its ``pixel_values``): similar sizes end up in one batch."""
        pixels = feature["pixel_values"] if isinstance(feature, Mapping) else feature
        return int(pixels.numel())
