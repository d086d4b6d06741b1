"""audio-classification: label audio clips (speech, music, keywords, emotions...) with scores.

Input: audio file bytes (WAV/FLAC/OGG) or ``struct<array array<float>, sampling_rate int>``,
resampled to the feature extractor's rate. Output: ``array<struct<label string, score
double>>``, the ``top_k`` best labels (scores as ``transformers.pipeline`` computes them).

Example:
    >>> adapter = AudioClassification({"top_k": 3})
    >>> adapter.output_type().simpleString()
    'array<struct<label:string,score:double>>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from hfspark.tasks._audio import (
    AUDIO_FIELDS,
    AUDIO_TYPES,
    Audio,
    AudioOptions,
    check_audio_input,
    convert_audio,
    extract,
    min_samples,
    model_batches,
    resample,
)
from hfspark.tasks.base import LoadedModel, TaskAdapter
from hfspark.tasks.image_classification import label_scores_type, top_labels

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["AudioClassification", "AudioClassificationOptions"]


class AudioClassificationOptions(AudioOptions):
    """Options of audio-classification.

    Attributes:
        top_k: how many labels to return, best first (capped at the model's label count).
        function_to_apply: ``softmax``, ``sigmoid`` or ``none`` (default: from the config).
        max_duration_s: refuse longer clips (RowError); the whole clip goes through the model.
    """

    top_k: int = Field(default=5, ge=1)
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None


class AudioClassification(TaskAdapter):
    """Audio classifiers (wav2vec2, HuBERT, AST, Whisper encoder...) with their feature extractor."""

    max_sort_window: ClassVar[int] = 256  # decoded media is large: sort fewer rows at once
    name: ClassVar[str] = "audio-classification"
    auto_model: ClassVar[str] = "AutoModelForAudioClassification"
    architectures: ClassVar[tuple[str, ...]] = (
        "ForSequenceClassification",
        "ForAudioClassification",
    )
    components: ClassVar[tuple[str, ...]] = ("feature_extractor",)
    input_fields: ClassVar[tuple[str, ...]] = AUDIO_FIELDS
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = AUDIO_TYPES
    Options: ClassVar[type[AudioClassificationOptions]] = AudioClassificationOptions
    options: AudioClassificationOptions

    def output_type(self) -> DataType:
        return label_scores_type()

    def check_input(self, types: Sequence[DataType]) -> None:
        super().check_input(types)
        check_audio_input(self.name, types)

    def convert(self, value: Any) -> Audio:
        return convert_audio(value, self.options.max_duration_s)

    def prepare(self, loaded: LoadedModel, items: list[Audio]) -> list[np.ndarray]:
        fe = loaded.processor
        rate, shortest = int(fe.sampling_rate), min_samples(loaded.model.config)
        features = []
        for audio in items:
            x = resample(audio.samples, audio.sampling_rate, rate)
            if len(x) < shortest:  # shorter than the conv encoder's receptive field
                x = np.pad(x, (0, shortest - len(x)))
            features.append(x)
        return features

    def length(self, feature: Any) -> int:
        return len(feature)

    def forward(self, loaded: LoadedModel, features: list[np.ndarray]) -> list[Any]:
        model, opts = loaded.model, self.options
        inputs = [extract(loaded.processor, x) for x in features]
        results: list[Any] = [None] * len(features)
        for rows, kwargs in model_batches(
            model, loaded.processor, inputs, loaded.device, loaded.dtype
        ):
            logits = model(**kwargs).logits
            for i, labels in zip(
                rows,
                top_labels(logits, model.config, opts.top_k, opts.function_to_apply),
                strict=True,
            ):
                results[i] = labels
        return results
