"""The ASR adapter on the real Whisper tiny.en with speech made by espeak-ng (word error rate)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from hfspark.tasks.speech_recognition import SpeechRecognition
from tests.helpers.adapter_runner import load, run_adapter
from tests.helpers.real_whisper import (
    SENTENCES,
    espeak_available,
    normalize,
    speak,
    whisper_tiny_en,
)

pytestmark = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed (make system-deps, or apt-get install espeak-ng)",
)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return whisper_tiny_en(tmp_path_factory.mktemp("real-whisper") / "whisper-tiny-en")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("speech")
    return [speak(s, folder / f"s{i}.wav") for i, s in enumerate(SENTENCES)]


def _wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses])


def test_real_whisper_transcribes_speech(whisper_dir: Path, speech: list[bytes]) -> None:
    out = run_adapter(SpeechRecognition({}), whisper_dir, speech, batch_size=4)
    texts = [row["text"] for row in out]
    assert _wer(SENTENCES, texts) <= 0.3, texts
    assert all(row["chunks"] == [] for row in out)


def test_real_whisper_long_audio_with_timestamps(whisper_dir: Path, speech: list[bytes]) -> None:
    import soundfile as sf

    adapter = SpeechRecognition({"return_timestamps": True})
    loaded = load(adapter, whisper_dir)
    waves = [sf.read(io.BytesIO(w), dtype="float32") for w in speech]
    rate = waves[0][1]
    gap = np.zeros(int(rate * 9), np.float32)  # about 45 s in all: two 30 s chunks
    long_audio = np.concatenate([part for wave, _ in waves for part in (wave, gap)])
    assert len(long_audio) / rate > 30
    row = run_adapter(adapter, loaded, [{"array": long_audio, "sampling_rate": rate}])[0]
    assert _wer([" ".join(SENTENCES)], [row["text"]]) <= 0.3, row["text"]
    starts = [c["start"] for c in row["chunks"]]
    assert len(starts) >= 2 and starts == sorted(starts)
    assert all(
        c["end"] is None or c["start"] <= c["end"] <= len(long_audio) / rate + 1
        for c in row["chunks"]
    )


def test_real_whisper_through_spark(
    spark, whisper_dir: Path, speech: list[bytes], tmp_path: Path
) -> None:
    """The saved real Whisper tiny.en through a Spark model UDF on WAV bytes: WER <= 0.3."""
    from hfspark.flavor import save_model
    from hfspark.udfs import model_udf

    saved = tmp_path / "whisper"
    save_model(str(whisper_dir), saved, task="automatic-speech-recognition")
    rows = [(i, wav) for i, wav in enumerate(speech)] + [(len(speech), None)]
    df = spark.createDataFrame(rows, "id int, audio binary").repartition(2)
    asr = model_udf(str(saved), batch_size=2, errors="column", device="cpu")
    out = sorted(df.select("id", asr("audio").alias("t")).collect(), key=lambda r: r.id)
    assert len(out) == len(speech) + 1
    assert out[-1].t is None  # null in -> a null result (not a struct of nulls)
    assert all(r.t.error is None for r in out[:-1])
    assert _wer(SENTENCES, [r.t.text for r in out[:-1]]) <= 0.3
