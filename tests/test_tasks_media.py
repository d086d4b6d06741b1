"""Adapter tests (no Spark) of the audio and image tasks on tiny random models."""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hfspark.errors import ConfigError, ModelValidationError, RowError
from hfspark.tasks import get_task
from hfspark.tasks._audio import convert_audio, resample
from hfspark.tasks.audio_classification import AudioClassification
from hfspark.tasks.image_classification import ImageClassification
from hfspark.tasks.speech_recognition import SpeechRecognition
from tests.helpers.adapter_runner import load, run_adapter

RATE = 16000
LABELS = "array<struct<label:string,score:double>>"


def _waves(
    lengths: tuple[int, ...] = (8000, 16000, 3000, 12000, 16000), seed: int = 0
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(max(lengths)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    return [(tone[:n] + 0.05 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def _image(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _same_labels(a: list, b: list) -> None:
    assert [x["label"] for x in a] == [x["label"] for x in b]
    np.testing.assert_allclose(
        [x["score"] for x in a], [x["score"] for x in b], rtol=1e-4, atol=1e-6
    )


def _shuffled_runs(adapter, loaded, items: list) -> list[list]:
    """Outputs for the items run one by one, and shuffled in bigger batches (input order)."""
    runs = [run_adapter(adapter, loaded, items, batch_size=1)]
    for seed, batch_size in [(1, 2), (2, 8)]:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        out = run_adapter(adapter, loaded, [items[i] for i in order], batch_size=batch_size)
        runs.append([out[order.index(i)] for i in range(len(items))])
    return runs


# ------------------------------------------------------------------------------ audio
def test_audio_decoding_and_resampling() -> None:
    wave = _waves((22050,))[0]
    for fmt in ("WAV", "FLAC", "OGG"):
        audio = convert_audio(_encode(wave, 22050, fmt))
        assert audio.sampling_rate == 22050 and abs(len(audio.samples) - 22050) < 2000
    stereo = convert_audio(_encode(np.stack([wave, -wave], axis=1), 22050, "WAV"))
    assert np.abs(stereo.samples).max() < 1e-3  # channels averaged
    assert resample(np.ones(44100, np.float32), 44100, 16000).shape == (16000,)
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    up = resample(tone, 8000, 16000)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(up[100:-100] - ref[100:-100]).max() < 0.02  # polyphase filter, not linear


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty"),
        (b"not audio at all" * 10, "cannot decode"),
        ("a string", "file bytes"),
        ({"array": [], "sampling_rate": RATE}, "0 samples"),
        ({"array": [0.1, float("nan")], "sampling_rate": RATE}, "NaN, infinite"),
        ({"array": np.array([0.1, np.inf], np.float32), "sampling_rate": RATE}, "NaN, infinite"),
        ({"array": [0.1, 0.2]}, "sampling_rate"),
        ({"array": [0.1, 0.2], "sampling_rate": -5}, "between 1"),
        ({"array": [0.1, 0.2], "sampling_rate": 1.5}, "integer"),
        ({"array": [0.1, None], "sampling_rate": RATE}, "null samples"),
        ({"array": ["a", "b"], "sampling_rate": RATE}, "numbers only"),
        ({"sampling_rate": RATE}, "no 'array'"),
    ],
)
def test_bad_audio_rows(value, message: str) -> None:
    for cls in (SpeechRecognition, AudioClassification):
        with pytest.raises(RowError, match=message):
            cls({}).convert(value)


def test_truncated_and_long_audio_files() -> None:
    wave = _waves((16000,))[0]
    wav, flac = _encode(wave, RATE, "WAV"), _encode(wave, RATE, "FLAC")
    with pytest.raises(RowError, match="truncated"):
        convert_audio(wav[: len(wav) // 2])
    with pytest.raises(RowError, match="cannot decode"):
        convert_audio(flac[: len(flac) // 2])
    with pytest.raises(RowError, match="empty"):
        convert_audio(_encode(np.zeros(0, np.float32), RATE, "WAV"))
    with pytest.raises(RowError, match="max_duration_s"):
        SpeechRecognition({"max_duration_s": 0.5}).convert(wav)
    assert SpeechRecognition({"max_duration_s": 2}).convert(wav).duration_s == 1.0


def test_asr_options_and_schema(tiny_models: dict[str, Path]) -> None:
    assert get_task("asr") is SpeechRecognition
    assert SpeechRecognition({}).output_type().simpleString() == (
        "struct<text:string,chunks:array<struct<text:string,start:double,end:double>>>"
    )
    with pytest.raises(ConfigError, match="stride_length_s"):
        SpeechRecognition({"chunk_length_s": 10, "stride_length_s": 5})
    with pytest.raises(ConfigError, match="return_timestamps"):
        SpeechRecognition({"return_timestamps": "sentence"})
    with pytest.raises(ConfigError, match="CTC model"):
        load(SpeechRecognition({"return_timestamps": "word"}), tiny_models["asr-whisper"])
    with pytest.raises(ConfigError, match="max_new_tokens=100"):
        load(SpeechRecognition({"max_new_tokens": 100}), tiny_models["asr-whisper"])
    with pytest.raises(ConfigError, match="at most 30"):
        load(SpeechRecognition({"chunk_length_s": 40}), tiny_models["asr-whisper"])
    with pytest.raises(ModelValidationError, match="not a speech recognition model"):
        load(SpeechRecognition({}), tiny_models["text-classification"])


def test_audio_input_types() -> None:
    from pyspark.sql.types import (
        ArrayType,
        BinaryType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    from hfspark.errors import InputSchemaError

    def audio_struct(array_type, rate_type) -> StructType:
        return StructType(
            [StructField("array", ArrayType(array_type)), StructField("sampling_rate", rate_type)]
        )

    for cls in (SpeechRecognition, AudioClassification):
        adapter = cls({})
        adapter.check_input([BinaryType()])
        adapter.check_input([audio_struct(FloatType(), IntegerType())])
        adapter.check_input([audio_struct(DoubleType(), LongType())])
        for bad in (
            [StringType()],
            [audio_struct(StringType(), IntegerType())],
            [StructType([StructField("samples", ArrayType(FloatType()))])],
        ):
            with pytest.raises(InputSchemaError):
                adapter.check_input(bad)
    for ok in (
        [BinaryType()],
        [StringType()],  # bytes, a path/URI, a binaryFile row
        [StructType([StructField("path", StringType()), StructField("content", BinaryType())])],
    ):
        ImageClassification({}).check_input(ok)
    for bad in ([IntegerType()], [StructType([StructField("bytes", BinaryType())])]):
        with pytest.raises(InputSchemaError):
            ImageClassification({}).check_input(bad)


@pytest.mark.parametrize("key", ["asr-whisper", "asr-ctc"])
def test_asr_matches_pipeline(tiny_models: dict[str, Path], key: str) -> None:
    import transformers

    waves = _waves()
    out = run_adapter(
        SpeechRecognition({}),
        tiny_models[key],
        [{"array": w, "sampling_rate": RATE} for w in waves],
    )
    pipe = transformers.pipeline("automatic-speech-recognition", model=str(tiny_models[key]))
    for wave, row in zip(waves, out, strict=True):
        assert row["text"] == pipe(wave.copy())["text"].strip()
        assert row["chunks"] == []


@pytest.mark.parametrize("key", ["asr-whisper", "asr-ctc"])
def test_asr_batch_order_independent(tiny_models: dict[str, Path], key: str) -> None:
    adapter = SpeechRecognition({})
    loaded = load(adapter, tiny_models[key])
    items = [{"array": w, "sampling_rate": RATE} for w in _waves(seed=3)]
    first, *others = _shuffled_runs(adapter, loaded, items)
    for other in others:
        assert other == first


def test_ctc_padded_batches_are_exact(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A layer-norm wav2vec2 pads with an attention mask; results must match unpadded runs."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(tiny_models["asr-ctc"]))
    config.feat_extract_norm, config.do_stable_layer_norm = "layer", True
    folder = tmp_path / "ctc-layer"
    transformers.Wav2Vec2ForCTC(config).eval().save_pretrained(folder)
    for name in ("vocab.json", "tokenizer_config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((tiny_models["asr-ctc"] / name).read_bytes())
    adapter = SpeechRecognition({"return_timestamps": "char"})
    loaded = load(adapter, folder)
    waves = _waves((4000, 9000, 16000, 6500))
    single = run_adapter(
        adapter, loaded, [{"array": w, "sampling_rate": RATE} for w in waves], batch_size=1
    )
    padded = run_adapter(
        adapter, loaded, [{"array": w, "sampling_rate": RATE} for w in waves], batch_size=4
    )
    assert padded == single


def test_asr_input_forms_agree(tiny_models: dict[str, Path]) -> None:
    wave = _waves((33075,))[0]  # 1.5 s at 22.05 kHz
    adapter = SpeechRecognition({})
    loaded = load(adapter, tiny_models["asr-ctc"])
    decoded = convert_audio(_encode(wave, 22050, "FLAC"))
    out = run_adapter(
        adapter,
        loaded,
        [
            _encode(wave, 22050, "FLAC"),
            {"array": decoded.samples.tolist(), "sampling_rate": 22050},
            {"array": resample(decoded.samples, 22050, RATE), "sampling_rate": RATE},
            {"array": wave[:10], "sampling_rate": 22050},  # shorter than the conv receptive field
        ],
    )
    assert out[0] == out[1] == out[2]
    assert isinstance(out[3]["text"], str)


def test_asr_long_audio_chunks_like_pipeline(tiny_models: dict[str, Path]) -> None:
    import transformers

    wave = np.tile(_waves((16000,), seed=1)[0], 65)  # 65 s -> 3 chunks of 30 s, strides 5 s
    for key, chunk_s in (("asr-ctc", 30), ("asr-ctc", 2), ("asr-whisper", 30)):  # 2 s: 49 chunks
        pipe = transformers.pipeline("automatic-speech-recognition", model=str(tiny_models[key]))
        expected = pipe(wave.copy(), chunk_length_s=chunk_s, ignore_warning=True)["text"].strip()
        out = run_adapter(
            SpeechRecognition({"chunk_length_s": chunk_s}),
            tiny_models[key],
            [{"array": wave, "sampling_rate": RATE}],
        )
        assert out[0]["text"] == expected, key


def test_asr_timestamps(tiny_models: dict[str, Path]) -> None:
    items = [{"array": w, "sampling_rate": RATE} for w in _waves((16000, 24000))]
    for unit in ("char", "word", True):
        out = run_adapter(
            SpeechRecognition({"return_timestamps": unit}), tiny_models["asr-ctc"], items
        )
        for row in out:
            assert row["chunks"], unit
            starts = [c["start"] for c in row["chunks"]]
            assert starts == sorted(starts)
            assert all(
                isinstance(c["start"], float) and c["start"] <= c["end"] <= 1.5
                for c in row["chunks"]
            )
    out = run_adapter(
        SpeechRecognition({"return_timestamps": True}), tiny_models["asr-whisper"], items
    )
    assert all(isinstance(row["chunks"], list) and row["chunks"] for row in out)


def test_audio_classification(tiny_models: dict[str, Path]) -> None:
    import transformers

    folder = tiny_models["audio-classification"]
    assert AudioClassification({}).output_type().simpleString() == LABELS
    waves = _waves()
    out = run_adapter(
        AudioClassification({"top_k": 2}),
        folder,
        [{"array": w, "sampling_rate": RATE} for w in waves],
    )
    pipe = transformers.pipeline("audio-classification", model=str(folder))
    for wave, row in zip(waves, out, strict=True):
        _same_labels(row, pipe(wave.copy(), top_k=2))
    row = run_adapter(AudioClassification({"top_k": 50}), folder, [_encode(waves[0], 8000, "WAV")])[
        0
    ]
    assert len(row) == 3 and sum(x["score"] for x in row) == pytest.approx(1.0)
    assert [x["score"] for x in row] == sorted((x["score"] for x in row), reverse=True)
    row = run_adapter(
        AudioClassification({"function_to_apply": "sigmoid"}),
        folder,
        [_encode(waves[0], RATE, "WAV")],
    )[0]
    assert sum(x["score"] for x in row) > 1.2
    with pytest.raises(ConfigError, match="top_k"):
        AudioClassification({"top_k": 0})


def test_audio_classification_batch_order_independent(tiny_models: dict[str, Path]) -> None:
    adapter = AudioClassification({})
    loaded = load(adapter, tiny_models["audio-classification"])
    items = [{"array": w, "sampling_rate": RATE} for w in _waves(seed=5)]
    first, *others = _shuffled_runs(adapter, loaded, items)
    for other in others:
        for a, b in zip(first, other, strict=True):
            _same_labels(a, b)


# ------------------------------------------------------------------------------ image
def test_image_classification_matches_pipeline(tiny_models: dict[str, Path]) -> None:
    import transformers
    from PIL import Image

    folder = tiny_models["image-classification"]
    images = [
        _image((40, 30)),
        _image((64, 64), "JPEG", seed=1),
        _image((20, 50), "WEBP", seed=2),
        _image((33, 33), "PNG", mode="L", seed=3),
        _image((30, 20), "PNG", mode="RGBA", seed=4),
        _image((25, 25), "GIF", mode="P", seed=5),
    ]
    out = run_adapter(ImageClassification({"top_k": 2}), folder, images, batch_size=4)
    pipe = transformers.pipeline("image-classification", model=str(folder))
    for data, row in zip(images, out, strict=True):
        _same_labels(row, pipe(Image.open(io.BytesIO(data)), top_k=2))
    assert ImageClassification({}).output_type().simpleString() == LABELS
    assert len(run_adapter(ImageClassification({}), folder, images[:1])[0]) == 3  # top_k capped


def test_image_exif_orientation(tiny_models: dict[str, Path]) -> None:
    from PIL import Image, ImageOps

    raw = Image.open(io.BytesIO(_image((48, 24), seed=7)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    tagged, upright = io.BytesIO(), io.BytesIO()
    raw.save(tagged, format="JPEG", exif=exif.tobytes(), quality=95)
    ImageOps.exif_transpose(Image.open(io.BytesIO(tagged.getvalue()))).save(upright, format="PNG")
    adapter = ImageClassification({})
    assert adapter.convert(tagged.getvalue()).size == (24, 48)
    out = run_adapter(
        adapter, tiny_models["image-classification"], [tagged.getvalue(), upright.getvalue()]
    )
    _same_labels(out[0], out[1])


def test_bad_images() -> None:
    png, jpeg = _image((64, 64)), _image((64, 64), "JPEG")
    adapter = ImageClassification({})
    cases = [
        (b"", "empty"),
        (b"GIF89a nonsense" * 4, "corrupt|not an image"),
        (b"plain text, not an image", "not an image"),
        (png[: len(png) // 2], "corrupt or truncated"),
        (jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        (_png_header(50_000, 50_000), "limit"),
        (_png_header(12_000, 12_000), "over the limit"),
        ("/no/such/image.png", "no image file at"),
        (12, "file bytes, a path/URI string or a binaryFile struct"),
    ]
    for value, message in cases:
        with pytest.raises(RowError, match=message):
            adapter.convert(value)
    with pytest.raises(RowError, match="max_pixels"):
        ImageClassification({"max_pixels": 1000}).convert(png)
    assert ImageClassification({"max_pixels": 4096}).convert(png).size == (64, 64)


def test_image_batch_order_independent(tiny_models: dict[str, Path]) -> None:
    adapter = ImageClassification({"top_k": 3})
    loaded = load(adapter, tiny_models["image-classification"])
    items = [_image((16 + 7 * i, 40 - 3 * i), seed=i) for i in range(7)] + [b"broken"]
    first, *others = _shuffled_runs(adapter, loaded, items)
    assert isinstance(first[-1], RowError)
    for other in others:
        for a, b in zip(first[:-1], other[:-1], strict=True):
            _same_labels(a, b)


def test_image_preprocessor_config_kept(tiny_models: dict[str, Path]) -> None:
    config = json.loads(
        (tiny_models["image-classification"] / "preprocessor_config.json").read_text()
    )
    loaded = load(ImageClassification({}), tiny_models["image-classification"])
    assert loaded.processor.size["height"] == config["size"]["height"] == 32
