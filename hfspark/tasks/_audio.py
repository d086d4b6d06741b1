"""Shared audio handling of the audio tasks: decoding, validation, resampling, batching.

Audio arrives as file bytes (WAV, FLAC, OGG; decoded with ``soundfile``, no ffmpeg) or as a
``struct<array array<float>, sampling_rate int>``. Every bad row raises
:class:`~hfspark.errors.RowError`: undecodable, empty, truncated, non-finite samples.
Resampling to the feature extractor's rate uses a polyphase filter
(``scipy.signal.resample_poly``).

Batching never lets padding change a row's result: models whose feature encoder cannot mask
padding (wav2vec2-base style ``feat_extract_norm="group"``) run rows of equal length
together; others are right-padded with an attention mask.

Example:
    >>> audio = convert_audio({"array": [0.0, 0.1, -0.1] * 1600, "sampling_rate": 8000})
    >>> resample(audio.samples, audio.sampling_rate, 16000).shape
    (9600,)
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
from pydantic import Field

from hfspark.errors import InputSchemaError, RowError
from hfspark.tasks.base import TaskOptions

__all__ = [
    "Audio",
    "AudioOptions",
    "AUDIO_FIELDS",
    "AUDIO_TYPES",
    "check_audio_input",
    "convert_audio",
    "decode_audio",
    "resample",
    "min_samples",
    "model_batches",
]

#: input field and accepted Spark types of the audio tasks.
AUDIO_FIELDS = ("audio",)
AUDIO_TYPES: Mapping[str, tuple[str, ...]] = {"audio": ("binary", "struct")}
_MAX_RATE = 768_000
#: lower rates are mistakes (kHz for Hz) whose resampling would make huge arrays.
_MIN_RATE = 1_000


class AudioOptions(TaskOptions):
    """Options shared by the audio tasks.

    Attributes:
        max_duration_s: refuse (RowError) audio longer than this many seconds; checked from
            the file header before decoding. ``None``: no limit.
    """

    max_duration_s: float | None = Field(default=None, gt=0)


@dataclass(frozen=True)
class Audio:
    """A mono waveform (float32) and its sampling rate."""

    samples: np.ndarray
    sampling_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sampling_rate


def check_audio_input(task: str, types: Sequence[Any]) -> None:
    """On the driver: a struct audio column must be ``struct<array array<float>, sampling_rate int>``.

    Raises:
        InputSchemaError: naming the missing or mistyped field and how to build the struct.
    """
    from pyspark.sql.types import ArrayType, DoubleType, FloatType, IntegralType, StructType

    if len(types) != 1 or not isinstance(types[0], StructType):
        return
    fields = {f.name: f.dataType for f in types[0].fields}
    array, rate = fields.get("array"), fields.get("sampling_rate")
    if not (
        isinstance(array, ArrayType)
        and isinstance(array.elementType, (FloatType, DoubleType))
        and isinstance(rate, IntegralType)
    ):
        raise InputSchemaError(
            f"Task {task!r}: a struct audio input must be struct<array array<float>, "
            f"sampling_rate int>, got {types[0].simpleString()}. Build it with "
            f"F.struct(F.col('samples').alias('array'), F.lit(16000).alias('sampling_rate')), "
            f"or pass the audio file bytes (binary)."
        )


def convert_audio(value: Any, max_duration_s: float | None = None) -> Audio:
    """One row's audio (file bytes or ``{array, sampling_rate}``) -> a checked mono :class:`Audio`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        audio = decode_audio(bytes(value), max_duration_s)
    elif isinstance(value, Mapping) or hasattr(value, "asDict"):
        audio = _from_struct(value.asDict() if hasattr(value, "asDict") else value)
    else:
        raise RowError(
            f"audio must be file bytes (WAV/FLAC/OGG) or a struct<array, sampling_rate>, "
            f"got {type(value).__name__}"
        )
    if audio.samples.size == 0:
        raise RowError("the audio is empty (0 samples)")
    if not np.isfinite(audio.samples).all():
        raise RowError("the audio holds NaN, infinite or null samples")
    if max_duration_s is not None and audio.duration_s > max_duration_s:
        raise RowError(
            f"the audio lasts {audio.duration_s:.1f} s, over max_duration_s={max_duration_s}"
        )
    return audio


def decode_audio(data: bytes, max_duration_s: float | None = None) -> Audio:
    """Decode WAV/FLAC/OGG bytes to mono float32 (channels averaged)."""
    import soundfile as sf

    if not data:
        raise RowError("the audio bytes are empty")
    _check_wav_complete(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = _check_rate(int(f.samplerate))
            if max_duration_s is not None and f.frames / rate > max_duration_s:
                raise RowError(
                    f"the audio lasts {f.frames / rate:.1f} s, over max_duration_s={max_duration_s}"
                )
            samples = f.read(dtype="float32", always_2d=True)
    except RowError:
        raise
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
        reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e))
        raise RowError(
            f"cannot decode the audio bytes (WAV, FLAC or OGG expected): {reason}"
        ) from e
    return Audio(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), rate)


def _check_wav_complete(data: bytes) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header says.

    libsndfile silently reads what is there; a stream-written size (0 or 0xFFFFFFFF) is
    not checked.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            have = len(data) - pos - 8
            if 0 < size < 0xFFFFFFFF and have < size:
                raise RowError(f"the WAV file is truncated: {have} of {size} data bytes")
            return
        pos += 8 + size + (size & 1)


def _check_rate(rate: int) -> int:
    """Refuse sampling rates outside [1 kHz, 768 kHz]: resampling them would blow up memory."""
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise RowError(
            f"sampling_rate must be between {_MIN_RATE} and {_MAX_RATE} Hz (a rate "
            f"in Hz, not kHz), got {rate}"
        )
    return rate


def _from_struct(value: Mapping[str, Any]) -> Audio:
    array, rate = value.get("array"), value.get("sampling_rate")
    rate_value: Any = rate
    if array is None:
        raise RowError("the audio struct has no 'array' of samples")
    try:
        integral = not isinstance(rate, (bool, str)) and float(rate_value).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise RowError(f"the audio struct needs an integer 'sampling_rate', got {rate!r}")
    rate = _check_rate(int(rate_value))
    try:
        samples = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise RowError(f"the audio array must hold numbers only (no nulls): {e}") from e
    if samples.ndim != 1:
        raise RowError(f"the audio array must be 1-D (mono), got shape {samples.shape}")
    return Audio(samples, rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample with a polyphase anti-aliasing filter (no-op when the rates match).

    Example:
        >>> resample(np.zeros(44100, np.float32), 44100, 16000).shape
        (16000,)
    """
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    out = resample_poly(samples.astype(np.float64), target // g, rate // g)
    return out.astype(np.float32)


def min_samples(config: Any) -> int:
    """The receptive field of a conv feature encoder (wav2vec2 family), else 1."""
    kernels = getattr(config, "conv_kernel", None)
    strides = getattr(config, "conv_stride", None)
    if not kernels or not strides:
        return 1
    field, jump = 1, 1
    for k, s in zip(kernels, strides, strict=False):
        field += (k - 1) * jump
        jump *= s
    return field


def _can_pad(model: Any, feature_extractor: Any) -> bool:
    """True when right padding plus an attention mask leaves each row's result unchanged."""
    config = model.config
    if getattr(config, "feat_extract_norm", "layer") == "group":
        return False  # group norm normalises over time, padding included
    return bool(getattr(feature_extractor, "return_attention_mask", False))


def extract(feature_extractor: Any, samples: np.ndarray) -> np.ndarray:
    """Run the feature extractor on one waveform (no padding); returns its main input."""
    out = feature_extractor(
        samples, sampling_rate=feature_extractor.sampling_rate, return_tensors="np"
    )
    name = "input_features" if "input_features" in out else "input_values"
    return np.asarray(out[name][0])


def model_batches(
    model: Any,
    feature_extractor: Any,
    inputs: Sequence[np.ndarray],
    device: Any,
    dtype: Any = None,
    max_rows: int | None = None,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """Group per-row model inputs into model calls that padding cannot bias.

    Yields ``(row indices, model kwargs)``. Rows of equal shape are stacked; 1-D inputs of
    different lengths are right-padded with an attention mask only when the model masks
    padding exactly (see :func:`_can_pad`), else run in equal-length groups. ``max_rows``
    caps the rows of one call (the chunks of a long recording).
    """
    if max_rows is not None and len(inputs) > max_rows:
        for start in range(0, len(inputs), max_rows):
            part = list(range(start, min(start + max_rows, len(inputs))))
            for rows, kwargs in model_batches(
                model, feature_extractor, [inputs[i] for i in part], device, dtype
            ):
                yield [part[r] for r in rows], kwargs
        return
    import torch

    name = getattr(model, "main_input_name", "input_values")
    if name == "input_ids":  # some models do not name their audio input
        name = "input_features" if inputs and inputs[0].ndim > 1 else "input_values"
    if inputs and all(a.ndim == 1 for a in inputs) and _can_pad(model, feature_extractor):
        longest = max(len(a) for a in inputs)
        values = np.full((len(inputs), longest), feature_extractor.padding_value, dtype=np.float32)
        mask = np.zeros((len(inputs), longest), dtype=np.int64)
        for i, a in enumerate(inputs):
            values[i, : len(a)] = a
            mask[i, : len(a)] = 1
        yield (
            list(range(len(inputs))),
            {
                name: _tensor(values, device, dtype),
                "attention_mask": torch.from_numpy(mask).to(device),
            },
        )
        return
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(inputs):
        groups.setdefault(tuple(a.shape), []).append(i)
    for rows in groups.values():
        yield rows, {name: _tensor(np.stack([inputs[i] for i in rows]), device, dtype)}


def _tensor(array: np.ndarray, device: Any, dtype: Any) -> Any:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)
    return t.to(dtype) if dtype is not None and dtype.is_floating_point else t
