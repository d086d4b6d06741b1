"""automatic-speech-recognition: Whisper (and other speech seq2seq models) or CTC (wav2vec2).

Input: audio file bytes (WAV/FLAC/OGG) or ``struct<array array<float>, sampling_rate int>``;
audio is resampled to the feature extractor's rate. Output:
``struct<text string, chunks array<struct<text string, start double, end double>>>`` where
``chunks`` holds timestamps when ``return_timestamps`` is set (else it is empty).

Audio longer than ``chunk_length_s`` (default 30 s) is cut into overlapping chunks (strides
of ``stride_length_s`` each side, default a sixth of a chunk) that run as separate rows of
a batch; their texts are merged (Whisper: by the tokenizer's stride-aware merge; CTC: by
dropping each chunk's stride frames before decoding). Decoding is greedy by default.

Example:
    >>> adapter = SpeechRecognition({"return_timestamps": True})
    >>> adapter.output_type().simpleString()
    'struct<text:string,chunks:array<struct<text:string,start:double,end:double>>>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hfspark.errors import ConfigError, ModelValidationError
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

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["SpeechRecognition", "SpeechRecognitionOptions"]

_DEFAULT_CHUNK_S = 30.0
_MIN_CALL_ROWS = 8


class SpeechRecognitionOptions(AudioOptions):
    """Options of automatic-speech-recognition.

    Attributes:
        return_timestamps: ``True`` for segment times (Whisper) or word times (CTC);
            ``"word"`` / ``"char"`` for CTC word or character times.
        chunk_length_s: audio longer than this is transcribed in chunks (default 30 s; at
            most 30 s for Whisper).
        stride_length_s: overlap on each side of a chunk (default ``chunk_length_s / 6``).
        num_beams: beam width for seq2seq models (default 1: greedy).
        max_new_tokens: most tokens per chunk (default: the model's generation config).
        language: spoken language for multilingual Whisper (e.g. ``"en"``); default: detected.
        whisper_task: ``"transcribe"`` or ``"translate"`` (to English), multilingual Whisper only.
    """

    return_timestamps: bool | Literal["word", "char"] = False
    chunk_length_s: float | None = Field(default=None, gt=0)
    stride_length_s: float | None = Field(default=None, ge=0)
    num_beams: int = Field(default=1, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    language: str | None = None
    whisper_task: Literal["transcribe", "translate"] | None = None

    @model_validator(mode="after")
    def _stride_fits(self) -> SpeechRecognitionOptions:
        chunk = self.chunk_length_s or _DEFAULT_CHUNK_S
        if self.stride_length_s is not None and 2 * self.stride_length_s >= chunk:
            raise ValueError(
                f"stride_length_s={self.stride_length_s} must be under half of chunk_length_s={chunk}"
            )
        return self


class SpeechRecognition(TaskAdapter):
    """Speech to text with Whisper-style seq2seq models or CTC models, chosen by the config."""

    max_sort_window: ClassVar[int] = 256  # decoded media is large: sort fewer rows at once
    name: ClassVar[str] = "automatic-speech-recognition"
    auto_model: ClassVar[str] = "AutoModelForSpeechSeq2Seq"  # or AutoModelForCTC, see load()
    architectures: ClassVar[tuple[str, ...]] = (
        "ForConditionalGeneration",
        "ForCTC",
        "SpeechEncoderDecoderModel",
    )
    components: ClassVar[tuple[str, ...]] = ("feature_extractor", "tokenizer")
    input_fields: ClassVar[tuple[str, ...]] = AUDIO_FIELDS
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = AUDIO_TYPES
    Options: ClassVar[type[SpeechRecognitionOptions]] = SpeechRecognitionOptions
    options: SpeechRecognitionOptions

    def output_type(self) -> DataType:
        from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

        chunk = StructType(
            [
                StructField("text", StringType()),
                StructField("start", DoubleType()),
                StructField("end", DoubleType()),
            ]
        )
        return StructType(
            [StructField("text", StringType()), StructField("chunks", ArrayType(chunk))]
        )

    @classmethod
    def auto_model_for(cls, config: Any) -> str:
        """CTC models (wav2vec2...) load with AutoModelForCTC, the others as speech seq2seq."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

        return (
            "AutoModelForCTC"
            if config.model_type in MODEL_FOR_CTC_MAPPING_NAMES
            else cls.auto_model
        )

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        kind = _model_kind(model_dir)
        loaded = super().load(model_dir, components, device, dtype)
        fe, opts = loaded.processor, self.options
        ts = opts.return_timestamps
        if kind != "ctc" and ts in ("word", "char"):
            raise ConfigError(
                f"return_timestamps={ts!r} needs a CTC model; Whisper gives segment times "
                f"with return_timestamps=True"
            )
        if kind == "seq2seq" and ts:
            raise ConfigError("only Whisper and CTC models return timestamps")
        positions = getattr(loaded.model.config, "max_target_positions", None)
        if (
            kind == "whisper"
            and opts.max_new_tokens
            and positions
            and opts.max_new_tokens > positions - 4
        ):
            raise ConfigError(
                f"max_new_tokens={opts.max_new_tokens} is over what this Whisper decoder holds "
                f"({positions} positions, 4 of them for its prompt)"
            )
        chunk_s = opts.chunk_length_s or _DEFAULT_CHUNK_S
        if kind == "whisper":
            window = float(getattr(fe, "chunk_length", _DEFAULT_CHUNK_S))
            if opts.chunk_length_s is not None and chunk_s > window:
                raise ConfigError(
                    f"Whisper hears at most {window:g} s at once: chunk_length_s <= {window:g}"
                )
            chunk_s = min(chunk_s, window)
        stride_s = opts.stride_length_s if opts.stride_length_s is not None else chunk_s / 6
        align = (
            int(getattr(loaded.model.config, "inputs_to_logits_ratio", 1)) if kind == "ctc" else 1
        )
        rate = int(fe.sampling_rate)
        chunk_len = int(round(chunk_s * rate / align)) * align
        stride = int(round(stride_s * rate / align)) * align
        if chunk_len <= 2 * stride:
            raise ConfigError("stride_length_s is too long for chunk_length_s")
        loaded.extras.update(
            kind=kind,
            align=align,
            chunk_len=chunk_len,
            stride=stride,
            min_samples=min_samples(loaded.model.config) if kind == "ctc" else 1,
        )
        return loaded

    def check_input(self, types: Sequence[DataType]) -> None:
        super().check_input(types)
        check_audio_input(self.name, types)

    def convert(self, value: Any) -> Audio:
        return convert_audio(value, self.options.max_duration_s)

    def prepare(self, loaded: LoadedModel, items: list[Audio]) -> list[dict[str, Any]]:
        ex, rate = loaded.extras, int(loaded.processor.sampling_rate)
        features = []
        for audio in items:
            x = resample(audio.samples, audio.sampling_rate, rate)
            if len(x) < ex["min_samples"]:  # shorter than the conv encoder's receptive field
                x = np.pad(x, (0, ex["min_samples"] - len(x)))
            chunks, strides = _chunks(x, ex["chunk_len"], ex["stride"], ex["stride"])
            features.append({"chunks": chunks, "strides": strides, "samples": len(x)})
        return features

    def length(self, feature: Any) -> int:
        return int(feature["samples"])

    def forward(self, loaded: LoadedModel, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
        flat = [(i, j) for i, f in enumerate(features) for j in range(len(f["chunks"]))]
        inputs = [extract(loaded.processor, features[i]["chunks"][j]) for i, j in flat]
        cap = max(_MIN_CALL_ROWS, len(features))  # a long recording's chunks: calls of this size
        if loaded.extras["kind"] == "ctc":
            per_chunk = self._ctc_tokens(loaded, features, flat, inputs, cap)
        else:
            per_chunk = self._generate(loaded, inputs, cap)
        by_item: list[list[Any]] = [[] for _ in features]
        for (i, _), tokens in zip(flat, per_chunk, strict=True):
            by_item[i].append(tokens)
        decode = {"whisper": self._decode_whisper, "ctc": self._decode_ctc}.get(
            loaded.extras["kind"], _decode_seq2seq
        )
        return [decode(loaded, f, toks) for f, toks in zip(features, by_item, strict=True)]

    # ------------------------------------------------------------------ seq2seq
    def _generate(self, loaded: LoadedModel, inputs: list[np.ndarray], cap: int) -> list[list[int]]:
        model, opts = loaded.model, self.options
        kwargs: dict[str, Any] = {"num_beams": opts.num_beams, "do_sample": False}
        if opts.max_new_tokens is not None:
            kwargs["max_new_tokens"] = opts.max_new_tokens
        if loaded.extras["kind"] == "whisper":
            if opts.return_timestamps:
                kwargs["return_timestamps"] = True
            if opts.language is not None:
                kwargs["language"] = opts.language
            if opts.whisper_task is not None:
                kwargs["task"] = opts.whisper_task
        out: list[list[int]] = [[] for _ in inputs]
        batches = model_batches(model, loaded.processor, inputs, loaded.device, loaded.dtype, cap)
        for rows, model_inputs in batches:
            seqs = model.generate(**model_inputs, **kwargs)
            if isinstance(seqs, Mapping) or hasattr(seqs, "sequences"):
                seqs = seqs["sequences"]
            for r, seq in zip(rows, seqs.tolist(), strict=True):
                out[r] = seq
        return out

    def _decode_whisper(
        self, loaded: LoadedModel, feature: dict[str, Any], tokens: list[list[int]]
    ) -> dict[str, Any]:
        rate = float(loaded.processor.sampling_rate)
        outputs = []
        for seq, stride in zip(tokens, feature["strides"], strict=True):
            out: dict[str, Any] = {"tokens": np.asarray([seq])}
            if len(tokens) > 1:
                out["stride"] = tuple(s / rate for s in stride)
            outputs.append(out)
        fe = loaded.processor
        precision = float(fe.chunk_length) / loaded.model.config.max_source_positions
        text, optional = loaded.tokenizer._decode_asr(
            outputs,
            return_timestamps=bool(self.options.return_timestamps),
            return_language=None,
            time_precision=precision,
        )
        chunks = [
            {
                "text": c["text"].strip(),
                "start": _seconds(c["timestamp"][0]),
                "end": _seconds(c["timestamp"][1]),
            }
            for c in optional.get("chunks", [])
        ]
        return {"text": text.strip(), "chunks": chunks}

    # ---------------------------------------------------------------------- CTC
    def _ctc_tokens(
        self,
        loaded: LoadedModel,
        features: list[dict[str, Any]],
        flat: list[tuple[int, int]],
        inputs: list[np.ndarray],
        cap: int,
    ) -> list[list[int]]:
        model, align = loaded.model, loaded.extras["align"]
        out: list[list[int]] = [[] for _ in inputs]
        batches = model_batches(model, loaded.processor, inputs, loaded.device, loaded.dtype, cap)
        for rows, model_inputs in batches:
            logits = model(**model_inputs).logits
            ids = logits.argmax(dim=-1).tolist()
            frames = [logits.shape[1]] * len(rows)
            mask = model_inputs.get("attention_mask")
            if mask is not None and hasattr(model, "_get_feat_extract_output_lengths"):
                frames = [int(n) for n in model._get_feat_extract_output_lengths(mask.sum(-1))]
            for k, r in enumerate(rows):
                i, j = flat[r]
                n, left, right = features[i]["strides"][j]
                token_n = int(round(n / align))
                left_t = int(round(left / n * token_n))
                right_t = int(round(right / n * token_n))
                out[r] = ids[k][: frames[k]][left_t : token_n - right_t]
        return out

    def _decode_ctc(
        self, loaded: LoadedModel, feature: dict[str, Any], tokens: list[list[int]]
    ) -> dict[str, Any]:
        tok, ts = loaded.tokenizer, self.options.return_timestamps
        ids = [t for chunk in tokens for t in chunk]
        if not ts:
            return {"text": tok.decode(ids), "chunks": []}
        unit = "char" if ts == "char" else "word"
        decoded = tok.decode(ids, **{f"output_{unit}_offsets": True})
        seconds = loaded.extras["align"] / float(loaded.processor.sampling_rate)
        chunks = [
            {
                "text": o[unit],
                "start": o["start_offset"] * seconds,
                "end": o["end_offset"] * seconds,
            }
            for o in decoded[f"{unit}_offsets"]
        ]
        return {"text": decoded["text"], "chunks": chunks}


def _decode_seq2seq(
    loaded: LoadedModel, feature: dict[str, Any], tokens: list[list[int]]
) -> dict[str, Any]:
    """Other speech seq2seq models: decode each chunk and join the texts."""
    texts = [loaded.tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in tokens]
    return {"text": " ".join(t for t in texts if t), "chunks": []}


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _chunks(
    x: np.ndarray, chunk_len: int, left: int, right: int
) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """Cut a waveform into overlapping chunks with ``(length, left stride, right stride)``."""
    if len(x) <= chunk_len:
        return [x], [(len(x), 0, 0)]
    chunks, strides = [], []
    step = chunk_len - left - right
    for start in range(0, len(x), step):
        chunk = x[start : start + chunk_len]
        last = start + chunk_len >= len(x)
        stride = (len(chunk), 0 if start == 0 else left, 0 if last else right)
        if len(chunk) > stride[1]:
            chunks.append(chunk)
            strides.append(stride)
        if last:
            break
    return chunks, strides


def _model_kind(model_dir: Path) -> str:
    """``whisper``, ``seq2seq`` or ``ctc`` from the saved config (no weights loaded)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CTC_MAPPING_NAMES,
        MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
    )

    try:
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelValidationError(f"Cannot read the ASR model config in {model_dir}: {e}") from e
    if config.model_type == "whisper":
        return "whisper"
    if config.model_type in MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES:
        return "seq2seq"
    if config.model_type in MODEL_FOR_CTC_MAPPING_NAMES:
        return "ctc"
    raise ModelValidationError(
        f"{config.model_type!r} is not a speech recognition model (expected Whisper or another "
        f"speech seq2seq model, or a CTC model such as wav2vec2)"
    )
