"""The generation task: the real Whisper tiny.en on speech made with espeak-ng.

Sentences are the first sentences of benchmark texts that read as plain English (6 to 16
words, letters and commas only), spoken by ``espeak-ng`` and stored as 16 kHz WAV bytes
(``audio`` binary column). hfspark, MLflow's default ``spark_udf`` and the naive pipeline
UDF transcribe them on 2 partitions; the table gives clips/s, audio seconds per second, loads,
peak memory and the word error rate against the spoken sentences.

Example:
    >>> rows = run_speech(Path("/tmp/hfspark-bench"), quick=True, cores=2, results={})
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import bench_texts
from bench.models import BenchModel
from bench.systems import SYSTEMS, error_line, run_spark_system
from bench.whisper import espeak_available, normalize, speak, whisper_tiny_en

__all__ = ["prepare_whisper", "run_speech", "sentences"]

TASK = "automatic-speech-recognition"
RATE = 16_000
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z ,']+\.$")


def sentences(n: int) -> list[str]:
    """``n`` distinct plain-English first sentences of benchmark texts (deterministic)."""
    out: list[str] = []
    for text in bench_texts(4000):
        first = " ".join(text.split("\n\n")[0].split()).split(". ")[0].rstrip(".") + "."
        if _PLAIN.match(first) and 6 <= len(first.split()) <= 16 and first not in out:
            out.append(first)
            if len(out) == n:
                break
    return out


def _to_16k(array: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return array.astype(np.float32)
    from scipy.signal import resample_poly

    g = np.gcd(rate, RATE)
    return resample_poly(array, RATE // g, rate // g).astype(np.float32)


def _clips(work: Path, texts: list[str]) -> list[bytes]:
    import soundfile

    folder = work / "speech"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, text in enumerate(texts):
        raw = folder / f"clip-{i}.raw.wav"
        array, rate = soundfile.read(io.BytesIO(speak(text, raw)), dtype="float32")
        buf = io.BytesIO()
        soundfile.write(buf, _to_16k(array, rate), RATE, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


def prepare_whisper(work: Path) -> BenchModel:
    """Whisper tiny.en as a transformers folder, the hfspark flavor and the MLflow flavor."""
    import transformers

    base = work / "models" / "v1" / TASK
    model = BenchModel(TASK, base / "folder", base / "hfspark", base / "mlflow")
    if (base / ".complete").exists():
        return model
    whisper_tiny_en(model.folder)
    from hfspark.flavor import save_model

    shutil.rmtree(model.hfspark, ignore_errors=True)
    save_model(str(model.folder), model.hfspark, task=TASK)
    import mlflow.transformers

    shutil.rmtree(model.mlflow, ignore_errors=True)
    folder = str(model.folder)
    components = {
        "model": transformers.WhisperForConditionalGeneration.from_pretrained(folder),
        "tokenizer": transformers.WhisperTokenizer.from_pretrained(folder),
        "feature_extractor": transformers.WhisperFeatureExtractor.from_pretrained(folder),
    }
    mlflow.transformers.save_model(
        components,
        str(model.mlflow),
        task=TASK,
        model_config={"batch_size": 1},
        pip_requirements=["transformers", "torch"],
    )
    (base / ".complete").write_text(TASK)
    return model


def _text(out: Any) -> str:
    if out is None:
        return ""
    if isinstance(out, str):
        return out
    return str(out["text"] if "text" in out else out[0])


def run_speech(
    work: Path,
    *,
    quick: bool,
    cores: int,
    results: dict[str, Any],
    systems: list[str] | None = None,
) -> list[dict[str, Any]]:
    """hfspark vs MLflow default vs the naive UDF on spoken sentences (2 partitions)."""
    import jiwer
    import pandas as pd

    if not espeak_available():
        results.setdefault("failures", []).append("speech: espeak-ng is not installed; skipped")
        return []
    texts = sentences(8 if quick else 64)
    clips = _clips(work, texts)
    seconds_audio = sum((len(c) - 44) / 2 / RATE for c in clips)
    data = work / "data" / f"speech-{len(clips)}.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": range(len(clips)), "audio": clips}).to_parquet(data, index=False)
    model = prepare_whisper(work)
    rows = []
    for name in ("hfspark", "mlflow default", "naive pandas_udf"):
        if systems is not None and name not in systems:
            continue
        try:
            r = run_spark_system(
                SYSTEMS[name],
                model,
                data,
                task=TASK,
                rows=len(clips),
                tokens=0,
                partitions=2,
                reps=1,
                cores=cores,
                keep=True,
            )
        except Exception as e:  # noqa: BLE001 - a failing baseline is a result
            results.setdefault("failures", []).append(f"{TASK} / {name}: {error_line(e)}")
            continue
        hyp = [normalize(_text((r.outputs or {}).get(i))) for i in range(len(clips))]
        wer = jiwer.wer([normalize(t) for t in texts], hyp)
        rows.append(
            {
                "system": name,
                "clips": len(clips),
                "audio s": round(seconds_audio, 1),
                "clips/s": r.rows_per_s,
                "audio s per s": seconds_audio / r.seconds,
                "WER": wer,
                "loads cold / timed": f"{r.loads_cold} / {r.loads_timed}",
                "workers": r.workers,
                "peak RSS/worker MiB": round(r.peak_rss_mib),
                "cold job s": r.cold_seconds,
            }
        )
    return rows
