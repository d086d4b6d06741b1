"""Rebuild the sample data shipped in data/ (run from the repo root; output is committed).

- ``texts.jsonl``: 320 real English paragraphs from Python standard library docstrings
  (``id``, ``source``, ``text``), deterministic for a given Python version.
- ``audio/*.wav``: a few short spoken sentences (espeak-ng, 16 kHz mono).

Example:
    $ .venv/bin/python data/build_sample.py
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = [
    "json", "csv", "argparse", "logging", "pathlib", "collections", "itertools", "functools",
    "datetime", "decimal", "fractions", "statistics", "random", "textwrap", "string", "re",
    "difflib", "heapq", "bisect", "shutil", "tempfile", "zipfile", "tarfile", "gzip", "hashlib",
    "hmac", "secrets", "base64", "urllib.parse", "http.client", "email.message", "smtplib",
    "socket", "selectors", "asyncio.queues", "threading", "queue", "subprocess", "sched",
    "contextlib", "dataclasses", "enum", "typing", "inspect", "pickle", "copy", "pprint",
    "unittest.case", "doctest", "timeit", "trace", "sqlite3", "calendar", "locale", "gettext",
    "uuid", "ipaddress", "mimetypes", "fnmatch", "glob", "tokenize", "ast", "dis", "weakref",
]
N_ROWS = 320
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Spark runs the model on every executor in parallel.",
    "Please send the quarterly report before Friday.",
    "Hello, this is a short test of speech recognition.",
]


def paragraphs() -> list[tuple[str, str]]:
    """(source, paragraph) pairs: module and public function/class docstrings, prose only."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in MODULES:
        module = importlib.import_module(name)
        objects = [(name, module)] + [
            (f"{name}.{attr}", obj) for attr, obj in sorted(vars(module).items())
            if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
        for source, obj in objects:
            doc = inspect.getdoc(obj) or ""
            for para in re.split(r"\n\s*\n", doc):
                text = " ".join(para.split())
                if len(text) < 60 or text in seen or ">>>" in text or text.count("  ") > 2:
                    continue
                if sum(c.isalpha() or c.isspace() for c in text) / len(text) < 0.85:
                    continue  # tables, signatures and code
                seen.add(text)
                out.append((source, text))
    return out


def write_texts() -> None:
    rows = paragraphs()
    step = max(1, len(rows) // N_ROWS)
    picked = rows[::step][:N_ROWS]
    with open(HERE / "texts.jsonl", "w", encoding="utf-8") as f:
        for i, (source, text) in enumerate(picked, start=1):
            f.write(json.dumps({"id": i, "source": source, "text": text}) + "\n")
    print(f"texts.jsonl: {len(picked)} rows from {len(rows)} paragraphs")


def write_audio() -> None:
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is needed for the audio samples (apt-get install espeak-ng)")
    folder = HERE / "audio"
    folder.mkdir(exist_ok=True)
    for i, sentence in enumerate(SENTENCES, start=1):
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(raw), sentence], check=True)
            audio, rate = sf.read(raw, dtype="float32")
            audio = resample_poly(audio, 16000, rate).astype(np.float32)
            sf.write(folder / f"utt{i:02d}.wav", audio, 16000, subtype="PCM_16")
    (folder / "transcripts.txt").write_text(
        "".join(f"utt{i:02d}.wav\t{s}\n" for i, s in enumerate(SENTENCES, start=1)))
    print(f"audio: {len(SENTENCES)} wav files")


if __name__ == "__main__":
    write_texts()
    write_audio()
