"""Bad input through real Spark (local[2]) with tiny models saved by ``hfspark.flavor.save_model``.

Two kinds of cases, counted and printed by :func:`test_case_count`:

* **Per row** (``errors="column"``): each family puts its bad rows between good rows in one
  partition (one Arrow batch) and the same good rows alone in a second partition. A bad row
  gets an ``error`` naming what was wrong (or, where the input is legitimate, a prediction;
  a null row a null result); every good row is predicted and equals its prediction alone.
* **Up front** (before any Spark job): missing or misspelled columns, wrong Spark types,
  unknown tasks and options, broken or unsafe model folders, bad job confs, an output path
  that holds something else. Each raises a clear hfspark error, checked with a job group
  that must stay empty.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hfspark.errors import (
    ConfigError,
    HfSparkError,
    InputSchemaError,
    ModelStoreError,
    ModelValidationError,
    UnknownTaskError,
    UnsafeModelError,
)
from hfspark.flavor.constants import INCOMPLETE_MARKER
from tests.helpers.badmedia import INVALID_UTF8, flac, image, png_header, tone, wav

pytestmark = pytest.mark.filterwarnings("ignore")

OK = "<predicted>"  # the row is legitimate: it must be predicted, with no error
NULL = "<null>"  # a null row: null result, no error, no model call


@dataclass(frozen=True)
class Case:
    """One bad row: its input and what the row must give (an error regex, OK or NULL)."""

    name: str
    value: Any
    expect: str

    def make(self) -> Any:
        """The input value (built lazily for large ones)."""
        return self.value() if callable(self.value) else self.value


@dataclass(frozen=True)
class Family:
    """Bad rows of one task and input shape, run between good rows in one Arrow batch."""

    name: str
    model: str  # key of the ``saved`` fixture
    columns: str  # the input columns' DDL (several columns: the UDF gets each)
    good: tuple[Any, ...]
    cases: tuple[Case, ...]
    options: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs
SENTENCES = (
    "I love this movie, it is great and wonderful.",
    "This film was terrible, boring and bad.",
    "John works for Google in Berlin.",
)
ONE_MB = ("The weather in Paris is sunny today. " * 28_000)[:1_000_000]
LONG_PROMPT = "the cat sat on the mat " * 40  # > 120 tokens: over the tiny GPT's context
CHATS = (
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}],
    [{"role": "user", "content": "The weather in Paris?"}],
)
GOOD_WAVS = (
    wav(tone(1.0, freq=440), 16000),
    wav(tone(0.5, freq=880), 16000),
    wav(tone(0.7, rate=8000, freq=300), 8000, channels=2),
)
GOOD_ARRAYS = tuple(
    {"array": tone(s, freq=f).tolist(), "sampling_rate": 16000}
    for s, f in ((0.5, 440), (0.8, 660), (0.3, 220))
)
GOOD_IMAGES = tuple(image("RGB", "PNG", 32, 32, seed) for seed in range(3))


def _ten_minutes() -> bytes:
    """10 minutes of 16 kHz mono WAV (19 MB): Whisper transcribes it in 30 s chunks."""
    return wav(tone(600.0, freq=220, amp=0.05), 16000)


FAMILIES: tuple[Family, ...] = (
    Family(
        "text-classification",
        "text-classification",
        "x string",
        SENTENCES,
        (
            Case("null text", None, NULL),
            Case("empty text", "", OK),
            Case("whitespace-only text", " \t\n  ", OK),
            Case("1 MB text (truncated to max_length)", ONE_MB, OK),
            Case("1 MB single word", "x" * 1_000_000, OK),
            Case("control characters and NUL", "\x00\x01\x1b[31m\u202e\ufeff", OK),
        ),
    ),
    Family(
        "feature-extraction",
        "feature-extraction",
        "x string",
        SENTENCES,
        (
            Case("null text", None, NULL),
            Case("empty text", "", OK),
            Case("whitespace-only text", "   ", OK),
            Case("1 MB text (truncated)", ONE_MB, OK),
        ),
    ),
    Family(
        "token-classification",
        "token-classification",
        "x string",
        SENTENCES,
        (
            Case("empty text", "", OK),
            Case("1 MB text (truncated)", ONE_MB, OK),
        ),
    ),
    Family(
        "fill-mask",
        "fill-mask",
        "x string",
        ("The capital of France is [MASK].", "I [MASK] this movie."),
        (
            Case("no mask token", "The capital of France is Paris.", "no mask token"),
            Case("two mask tokens", "[MASK] is [MASK].", "2 mask tokens"),
            Case("empty text", "", "no mask token"),
            Case("mask at the end of 1 MB (windowed)", ONE_MB + " [MASK].", OK),
        ),
        {"params": {"top_k": 2}},
    ),
    Family(
        "question-answering",
        "question-answering",
        "q string, c string",
        (
            ("What is the capital of France?", "The capital of France is Paris."),
            ("Where does John work?", "John works for Google in Berlin."),
        ),
        (
            Case("empty question", ("", "The cat sat on the mat."), "question.* is empty"),
            Case("whitespace-only context", ("Where?", "   \n"), "context.* is empty"),
            Case("null context", ("Where?", None), "context.*got null"),
            Case("null question (first column)", (None, "ctx"), NULL),
            Case("1 MB context (windows)", ("Where is it sunny?", ONE_MB), OK),
        ),
    ),
    Family(
        "zero-shot",
        "zero-shot-classification",
        "t string, labels array<string>",
        (
            ("The match ended 2-1.", ["sports", "politics"]),
            ("The stock market rose sharply.", ["economy", "sports", "science"]),
        ),
        (
            Case("no candidate labels (null)", ("Some text", None), "no candidate labels"),
            Case("empty candidate labels", ("Some text", []), "no candidate labels"),
            Case(
                "10,000 candidate labels",
                ("Some text", [f"label {i}" for i in range(10_000)]),
                "10000 candidate labels.*max_candidate_labels",
            ),
            Case("a null label", ("Some text", ["sports", None]), "must be strings"),
            Case("empty text with labels", ("", ["sports", "politics"]), OK),
        ),
    ),
    Family(
        "chat",
        "text-generation-chat",
        "x array<struct<role: string, content: string>>",
        CHATS,
        (
            Case("unknown role", [{"role": "wizard", "content": "hi"}], "unknown role 'wizard'"),
            Case("null role", [{"role": None, "content": "hi"}], "unknown role None"),
            Case("null content", [{"role": "user", "content": None}], "has no text content"),
            Case("empty chat", [], "no messages"),
            Case(
                "chat over the context length",
                [{"role": "user", "content": LONG_PROMPT}],
                "tokens; at most .* fit",
            ),
        ),
        {"params": {"max_new_tokens": 4}},
    ),
    Family(
        "prompt",
        "text-generation",
        "x string",
        ("Hello", "The weather in Paris"),
        (
            Case(
                "prompt over the context length", LONG_PROMPT, "tokens; at most .*truncate_prompt"
            ),
            Case("1 MB prompt", ONE_MB, "tokens; at most"),
            Case("empty prompt (starts from the bos token)", "", OK),
            Case("whitespace-only prompt", "   ", OK),
        ),
        {"params": {"max_new_tokens": 4}},
    ),
    Family(
        "prompt, truncate_prompt=True",
        "text-generation",
        "x string",
        ("Hello", "The weather in Paris"),
        (
            Case("prompt over the context length", LONG_PROMPT, OK),
            Case("1 MB prompt (keeps its end)", ONE_MB, OK),
        ),
        {"params": {"max_new_tokens": 4, "truncate_prompt": True}},
    ),
    Family(
        "summarization",
        "summarization",
        "x string",
        SENTENCES,
        (
            Case("input over the encoder's limit", LONG_PROMPT * 3, "this model takes at most"),
            Case("1 MB input", ONE_MB, "this model takes at most"),
            Case("empty input", "", OK),
        ),
        {"params": {"max_new_tokens": 4}},
    ),
    Family(
        "speech-recognition, file bytes",
        "asr-whisper",
        "x binary",
        GOOD_WAVS,
        (
            Case("empty bytes", b"", "audio bytes are empty"),
            Case("corrupt bytes", b"RIFF\x00\x00garbage" * 20, "cannot decode"),
            Case("truncated WAV", GOOD_WAVS[0][:5000], "WAV file is truncated"),
            Case("truncated FLAC", lambda: flac(tone(1.0), 16000)[:3000], "cannot decode"),
            Case("invalid UTF-8 bytes", INVALID_UTF8, "cannot decode"),
            Case("0 s of audio", wav(np.zeros(0), 16000), r"empty \(0 samples\)"),
            Case("WAV claiming 16 Hz (kHz for Hz)", wav(tone(1.0), 16), "between 1000 and"),
            Case("10 minutes (chunked)", _ten_minutes, OK),
        ),
    ),
    Family(
        "speech-recognition, float arrays",
        "asr-ctc",
        "x struct<array: array<float>, sampling_rate: int>",
        GOOD_ARRAYS,
        (
            Case(
                "NaN samples", {"array": [0.1, float("nan")] * 800, "sampling_rate": 16000}, "NaN"
            ),
            Case(
                "+inf samples",
                {"array": [0.1, float("inf")] * 800, "sampling_rate": 16000},
                "infinite",
            ),
            Case(
                "-inf samples",
                {"array": [float("-inf")] * 1600, "sampling_rate": 16000},
                "infinite",
            ),
            Case("empty array", {"array": [], "sampling_rate": 16000}, r"0 samples"),
            Case(
                "null sample",
                {"array": [0.1, None, 0.2] * 500, "sampling_rate": 16000},
                "null samples",
            ),
            Case(
                "null sampling_rate",
                {"array": [0.1] * 1600, "sampling_rate": None},
                "integer 'sampling_rate'",
            ),
            Case(
                "sampling_rate 0", {"array": [0.1] * 1600, "sampling_rate": 0}, "between 1000 and"
            ),
            Case(
                "sampling_rate in kHz",
                {"array": [0.1] * 1600, "sampling_rate": 16},
                "between 1000 and",
            ),
            Case("null array (first field)", {"array": None, "sampling_rate": 16000}, NULL),
        ),
    ),
    Family(
        "audio-classification",
        "audio-classification",
        "x binary",
        GOOD_WAVS,
        (
            Case("corrupt bytes", b"\x00" * 300, "cannot decode"),
            Case("0 s of audio", wav(np.zeros(0), 8000), r"0 samples"),
            Case("empty bytes", b"", "audio bytes are empty"),
        ),
        {"params": {"top_k": 2}},
    ),
    Family(
        "image-classification",
        "image-classification",
        "x binary",
        GOOD_IMAGES,
        (
            Case("empty bytes", b"", "image bytes are empty"),
            Case("corrupt bytes", b"\x89PNG garbage" * 30, "not an image"),
            Case("truncated PNG", lambda: image("RGB", "PNG", 64, 64)[:2000], "truncated|corrupt"),
            Case("invalid UTF-8 bytes", INVALID_UTF8, "not an image"),
            Case(
                "100k x 100k PNG header (decompression bomb)",
                png_header(100_000, 100_000),
                "too large to decode safely",
            ),
            Case("20k x 20k PNG header", png_header(20_000, 20_000), "too large to decode safely"),
            Case(
                "10k x 10k PNG header (over max_pixels)",
                png_header(10_000, 10_000),
                "over the limit of",
            ),
            Case("GIF header only", b"GIF89a", "not an image"),
            Case("1 x 1 image", image("RGB", "PNG", 1, 1), OK),
            Case("RGBA PNG", image("RGBA", "PNG", 40, 20), OK),
            Case("16-bit grayscale PNG", image("I;16", "PNG", 20, 20), OK),
            Case("CMYK JPEG", image("CMYK", "JPEG", 24, 24), OK),
        ),
        {"params": {"top_k": 2}},
    ),
    Family(
        "image-feature-extraction, bytes or paths",
        "image-feature-extraction",
        "x string",
        tuple(f"data:{i}" for i in range(3)),
        (
            Case("path to no file", "/no/such/dir/cat.png", "no image file at"),
            Case("empty path", "", "image path is empty"),
            Case("path to a text file", "data:text", "not an image"),
            Case("path to a truncated PNG", "data:truncated", "truncated|corrupt"),
            Case("path to a decompression bomb", "data:bomb", "too large to decode safely"),
            Case("unknown fsspec protocol", "nosuchfs://bucket/cat.png", "cannot read the image"),
            Case("file: URI of an image", "data:uri", OK),
        ),
    ),
    Family(
        "zero-shot-image-classification",
        "zero-shot-image",
        "x binary, labels array<string>",
        tuple((g, ["cat", "dog"]) for g in GOOD_IMAGES),
        (
            Case("no candidate labels", (GOOD_IMAGES[0], None), "no candidate labels"),
            Case("a null label", (GOOD_IMAGES[0], ["cat", None]), "must be strings"),
            Case(
                "2,000 candidate labels",
                (GOOD_IMAGES[0], [f"l{i}" for i in range(2000)]),
                "max_candidate_labels",
            ),
            Case("corrupt image with labels", (b"\x89PNG garbage" * 30, ["cat"]), "not an image"),
            Case("empty image with labels", (b"", ["cat"]), "image bytes are empty"),
            Case("null image (first column)", (None, ["cat"]), NULL),
        ),
    ),
)

#: tasks the saved models are saved with (``saved`` fixture key -> tiny model, task).
SAVED = {
    "text-classification": ("text-classification", "text-classification"),
    "feature-extraction": ("feature-extraction", "feature-extraction"),
    "token-classification": ("token-classification", "token-classification"),
    "fill-mask": ("fill-mask", "fill-mask"),
    "question-answering": ("question-answering", "question-answering"),
    "zero-shot-classification": ("zero-shot-classification", "zero-shot-classification"),
    "text-generation": ("text-generation", "text-generation"),
    "summarization": ("text2text-generation", "summarization"),
    "asr-whisper": ("asr-whisper", "automatic-speech-recognition"),
    "asr-ctc": ("asr-ctc", "automatic-speech-recognition"),
    "audio-classification": ("audio-classification", "audio-classification"),
    "image-classification": ("image-classification", "image-classification"),
}
#: the same for the tiny vision models (tests/tiny_vision.py).
VISION_SAVED = {
    "image-feature-extraction": ("vit", "image-feature-extraction"),
    "zero-shot-image": ("clip", "zero-shot-image-classification"),
}
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def saved(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tiny models saved with the hfspark flavor (plus a chat-template text generator)."""
    from hfspark.flavor import save_model

    root = tmp_path_factory.mktemp("bad-input-models")
    out = {}
    for key, (tiny, task) in SAVED.items():
        save_model(str(tiny_models[tiny]), root / key, task=task)
        out[key] = str(root / key)
    chat = root / "chat-src"
    shutil.copytree(tiny_models["text-generation"], chat)
    tok = json.loads((chat / "tokenizer_config.json").read_text())
    (chat / "tokenizer_config.json").write_text(json.dumps({**tok, "chat_template": CHAT_TEMPLATE}))
    save_model(str(chat), root / "text-generation-chat", task="text-generation")
    out["text-generation-chat"] = str(root / "text-generation-chat")
    from tests.helpers.tiny_vision import build_vision

    vision = build_vision(root / "vision-src")
    for key, (tiny, task) in VISION_SAVED.items():
        save_model(str(vision[tiny]), root / key, task=task)
        out[key] = str(root / key)
    return out


@pytest.fixture(scope="module", autouse=True)
def image_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Image files for the path cases: ``data:NAME`` values in FAMILIES are replaced by their path."""
    root = tmp_path_factory.mktemp("image-files")
    files = {
        **{str(i): image("RGB", "PNG", 32, 32, i) for i in range(3)},
        "text": b"just some text, not an image",
        "truncated": image("RGB", "PNG", 64, 64)[:2000],
        "bomb": png_header(100_000, 100_000),
        "uri": image("RGB", "JPEG", 20, 20),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    _IMAGE_FILES.update({f"data:{n}": str(root / n) for n in files})
    _IMAGE_FILES["data:uri"] = f"file://{root / 'uri'}"
    yield
    _IMAGE_FILES.clear()


_IMAGE_FILES: dict[str, str] = {}


def _files(value: Any) -> Any:
    """A ``data:NAME`` placeholder as the path of that image file (see ``image_files``)."""
    return _IMAGE_FILES.get(value, value) if isinstance(value, str) else value


def _udf(saved: dict[str, str], family: Family) -> Any:
    """The family's model UDF with errors="column" on the CPU."""
    from hfspark.udfs import model_udf

    return model_udf(
        saved[family.model], errors="column", device="cpu", batch_size=4, **family.options
    )


def _frame(spark: Any, family: Family) -> tuple[Any, list[tuple[int, str, int]]]:
    """Partition 0: good, bad, good, bad, ..., good (one Arrow batch); partition 1: good alone.

    Returns the DataFrame (``id``, ``kind``, ``ref``, input columns) and the row plan.
    """
    n_inputs = len(_column_names(family.columns))
    plan: list[tuple[int, str, int]] = []
    for i in range(len(family.cases)):
        plan += [(len(plan), "good", i % len(family.good)), (len(plan) + 1, "bad", i)]
    plan.append((len(plan), "good", len(family.cases) % len(family.good)))
    alone = [(len(plan) + j, "alone", j) for j in range(len(family.good))]

    def values(kind: str, ref: int) -> tuple:
        v = family.cases[ref].make() if kind == "bad" else family.good[ref]
        return tuple(v) if n_inputs > 1 else (_files(v),)

    mixed = [(i, kind, ref, *values(kind, ref)) for i, kind, ref in plan]
    good_alone = [(i, kind, ref, *values(kind, ref)) for i, kind, ref in alone]
    rdd = spark.sparkContext.parallelize([mixed, good_alone], 2).flatMap(lambda part: part)
    df = spark.createDataFrame(rdd, f"id int, kind string, ref int, {family.columns}")
    return df, plan + alone


def _column_names(ddl: str) -> list[str]:
    """The column names of a DDL string (commas inside ``<...>`` do not split columns)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            names.append(ddl[start:i].split()[0])
            start = i + 1
    return names


def _approx(a: Any, b: Any, tol: float = 1e-4) -> bool:
    """Recursive equality with a float tolerance."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_approx(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_approx(x, y, tol) for x, y in zip(a, b, strict=True))
    return a == b


def _result(pred: Any) -> dict[str, Any] | None:
    """The prediction struct as a dict without its error field (None for a null struct)."""
    if pred is None:
        return None
    out = pred.asDict(recursive=True)
    out.pop("error")
    return out


@contextmanager
def no_spark_job(spark: Any) -> Iterator[None]:
    """Assert that the block starts no Spark job (it must fail on the driver first)."""
    sc = spark.sparkContext
    group = f"upfront-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, "must stay empty")
    try:
        yield
    finally:
        jobs = list(sc.statusTracker().getJobIdsForGroup(group))
        sc.setLocalProperty("spark.jobGroup.id", None)
        assert jobs == [], f"a Spark job ran before the error: {jobs}"


# ----------------------------------------------------------------------------- per row
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_bad_rows_in_one_batch(spark: Any, saved: dict[str, str], family: Family) -> None:
    """Each bad row gets its error (or prediction); the good rows around it are unaffected."""
    udf = _udf(saved, family)
    df, plan = _frame(spark, family)
    out = df.select("id", "kind", "ref", udf(*_column_names(family.columns)).alias("p")).collect()
    assert len(out) == len(plan)
    by_id = {r.id: r for r in out}
    alone = {r.ref: _result(r.p) for r in out if r.kind == "alone"}
    assert all(a is not None for a in alone.values()), alone
    failures = []
    for row_id, kind, ref in plan:
        row = by_id[row_id]
        pred, err = row.p, (row.p.error if row.p is not None else None)
        if kind == "good":
            if err is not None or not _approx(_result(pred), alone[ref]):
                failures.append(
                    f"good row {ref} next to bad rows: {err or _result(pred)!r:.300}"
                    f" != alone {alone[ref]!r:.300}"
                )
            continue
        if kind == "alone":
            continue
        case = family.cases[ref]
        got = _result(pred)
        if case.expect == NULL:
            ok = err is None and (got is None or all(v is None for v in got.values()))
        elif case.expect == OK:
            ok = err is None and got is not None and any(v is not None for v in got.values())
        else:
            ok = (
                err is not None
                and re.search(case.expect, err) is not None
                and (got is None or all(v is None for v in got.values()))
            )
        if not ok:
            failures.append(
                f"{case.name}: expected {case.expect!r}, got error={err!r:.300} result={got!r:.200}"
            )
    assert not failures, "\n".join(failures)


def test_invalid_utf8_in_string_column(spark: Any, saved: dict[str, str]) -> None:
    """A string column holding invalid UTF-8 (cast from binary): ``transform`` repairs it and
    every row is still predicted (pyarrow would otherwise fail the whole batch)."""
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf

    udf = model_udf(saved["text-classification"], errors="column", device="cpu")
    rows = [(1, SENTENCES[0].encode()), (2, b"bad " + INVALID_UTF8), (3, SENTENCES[1].encode())]
    df = spark.createDataFrame(rows, "id int, b binary").coalesce(1)
    df = df.withColumn("text", F.col("b").cast("string"))
    out = {r.id: r.p for r in udf.transform(df, "text", output="p").select("id", "p").collect()}
    assert out[1].label and out[3].label and out[1].error is None


def test_invalid_utf8_workaround(spark: Any, saved: dict[str, str]) -> None:
    """The documented workaround: ``F.make_valid_utf8`` replaces bad bytes with U+FFFD."""
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf

    udf = model_udf(saved["text-classification"], errors="column", device="cpu")
    rows = [(1, SENTENCES[0].encode()), (2, b"bad " + INVALID_UTF8), (3, SENTENCES[1].encode())]
    df = spark.createDataFrame(rows, "id int, b binary").coalesce(1)
    text = F.make_valid_utf8(F.col("b").cast("string"))
    out = {r.id: r.p for r in df.select("id", udf(text).alias("p")).collect()}
    assert all(p.label and p.error is None for p in out.values())


# ----------------------------------------------------------------------------- up front
@dataclass
class Ctx:
    """What an up-front case needs: Spark, the saved models and a scratch folder."""

    spark: Any
    saved: dict[str, str]
    tiny: dict[str, Path]
    tmp: Path

    def udf(self, key: str = "text-classification", **kw: Any) -> Any:
        """A model UDF of a saved model."""
        from hfspark.udfs import model_udf

        return model_udf(self.saved[key], **kw)

    def df(self, ddl: str = "id int, text string") -> Any:
        """An empty DataFrame with this schema (no job runs to make it)."""
        return self.spark.createDataFrame([], ddl)

    def broken(self, src: str, edit: Callable[[Path], None], task: str | None = None) -> Any:
        """``model_udf`` on a copy of a saved model folder broken by ``edit``.

        With ``task``, ``src`` names a tiny transformers folder (no MLmodel) instead.
        """
        from hfspark.udfs import model_udf

        dest = self.tmp / f"broken-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.tiny[src] if task else self.saved[src], dest)
        edit(dest)
        return model_udf(str(dest), task=task)

    def fresh(self) -> Path:
        """A new empty folder."""
        folder = self.tmp / f"empty-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def load(self, folder: Path) -> Any:
        """``model_udf`` on a folder of the scratch space."""
        from hfspark.udfs import model_udf

        return model_udf(str(folder))


def _json_edit(path: str, **extra: Any) -> Callable[[Path], None]:
    """An edit that adds keys to a JSON file of the folder."""

    def edit(root: Path) -> None:
        f = root / path
        f.write_text(json.dumps({**json.loads(f.read_text()), **extra}))

    return edit


def _truncate(path: str, keep: int) -> Callable[[Path], None]:
    """An edit that cuts a file of the folder to ``keep`` bytes."""

    def edit(root: Path) -> None:
        f = root / path
        f.write_bytes(f.read_bytes()[:keep])

    return edit


def _unlink(*paths: str) -> Callable[[Path], None]:
    """An edit that deletes files or folders of the folder."""

    def edit(root: Path) -> None:
        for p in paths:
            target = root / p
            shutil.rmtree(target) if target.is_dir() else target.unlink()

    return edit


def _pickle_only(root: Path) -> None:
    """Replace the safetensors weights with a pickle file."""
    (root / "model.safetensors").unlink()
    (root / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 pickled state dict")


def _bad_header(root: Path) -> None:
    """Overwrite the safetensors header with garbage of the right length."""
    f = root / "model" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:40] = b"{not json at all!!!!!!!!!!!!!!!}"
    f.write_bytes(bytes(data))


def _conf(ctx: Ctx, **sections: Any) -> str:
    """A job conf as YAML text, with sections overridden."""
    conf: dict[str, Any] = {
        "input": {"format": "parquet", "path": str(ctx.tmp / "in")},
        "models": [{"name": "pred", "uri": ctx.saved["text-classification"], "inputs": "text"}],
        "output": {"path": str(ctx.tmp / "out")},
    }
    conf.update(sections)
    return yaml.safe_dump(conf)


def _parse(text: str, **kw: Any) -> Any:
    """Parse a job conf with the jobs loader."""
    from hfspark.jobs import parse_config

    return parse_config(text, "job.yaml", **kw)


UPFRONT: list[tuple[str, Callable[[Ctx], Any], type[BaseException], str]] = [
    # input columns (ModelUDF.check_input / transform)
    (
        "missing input column",
        lambda c: c.udf().transform(c.df(), "nope"),
        InputSchemaError,
        "'nope' not found",
    ),
    (
        "misspelled input column",
        lambda c: c.udf().transform(c.df(), "txet"),
        InputSchemaError,
        "Did you mean 'text'",
    ),
    (
        "int column for a text task",
        lambda c: c.udf().check_input(c.df("id int, text int"), "text"),
        InputSchemaError,
        "must be of Spark type string, got int",
    ),
    (
        "int column for an image task",
        lambda c: c.udf("image-classification").check_input(c.df("id int, img int"), "img"),
        InputSchemaError,
        "binary or string or struct",
    ),
    (
        "array<double> column for a text task",
        lambda c: c.udf().check_input(c.df("id int, text array<double>"), "text"),
        InputSchemaError,
        "got array<double>",
    ),
    (
        "audio struct with wrong fields",
        lambda c: c.udf("asr-ctc").check_input(
            c.df("id int, a struct<samples: array<float>, rate: int>"), "a"
        ),
        InputSchemaError,
        "struct<array array<float>, sampling_rate int>",
    ),
    (
        "chat messages with wrong fields",
        lambda c: c.udf("text-generation").check_input(
            c.df("id int, m array<struct<role: string, text: string>>"), "m"
        ),
        InputSchemaError,
        "role string, content string",
    ),
    (
        "struct input lacking a field",
        lambda c: c.udf("question-answering").check_input(
            c.df("id int, s struct<question: string>"), "s"
        ),
        InputSchemaError,
        "lacks \\['context'\\]",
    ),
    (
        "too many input columns",
        lambda c: c.udf().check_input(c.df("a string, b string, d string"), "a", "b", "d"),
        InputSchemaError,
        r"takes 1 to 2 input columns \(text, text_pair\), got 3",
    ),
    ("no input column", lambda c: c.udf()(), InputSchemaError, "Pass the input column"),
    # tasks and options
    (
        "unknown task",
        lambda c: c.udf(task="sentiment-analysys"),
        UnknownTaskError,
        "Did you mean 'sentiment-analysis'",
    ),
    (
        "misspelled UDF option",
        lambda c: c.udf(batchsize=3),
        ConfigError,
        "did you mean 'batch_size'",
    ),
    ("bad errors= value", lambda c: c.udf(errors="ignore"), ConfigError, "errors"),
    ("batch_size 0", lambda c: c.udf(batch_size=0), ConfigError, "batch_size"),
    (
        "unknown task option",
        lambda c: c.udf(params={"topk": 2}),
        ConfigError,
        "did you mean 'top_k'",
    ),
    ("device that is not there", lambda c: c.udf(device="tpu"), ConfigError, "device"),
    # model folders
    (
        "model folder that does not exist",
        lambda c: c.load(c.tmp / "nowhere"),
        ModelStoreError,
        "No model at",
    ),
    (
        "empty folder",
        lambda c: c.load(c.fresh()),
        ModelValidationError,
        "neither MLmodel nor config.json",
    ),
    (
        "model without weights",
        lambda c: c.broken("text-classification", _unlink("model/model.safetensors")),
        ModelValidationError,
        "no weights",
    ),
    (
        "transformers folder without a tokenizer",
        lambda c: c.broken(
            "text-classification",
            _unlink("tokenizer.json", "tokenizer_config.json"),
            "text-classification",
        ),
        ModelValidationError,
        "needs a tokenizer",
    ),
    (
        "saved model missing its tokenizer folder",
        lambda c: c.broken("text-classification", _unlink("components/tokenizer")),
        ModelValidationError,
        "missing although MLmodel lists it",
    ),
    (
        "image model without its image processor",
        lambda c: c.broken(
            "image-classification", _unlink("preprocessor_config.json"), "image-classification"
        ),
        ModelValidationError,
        "needs a",
    ),
    (
        "truncated safetensors",
        lambda c: c.broken("text-classification", _truncate("model/model.safetensors", 50_000)),
        ModelValidationError,
        "truncated",
    ),
    (
        "safetensors of 4 bytes",
        lambda c: c.broken("text-classification", _truncate("model/model.safetensors", 4)),
        ModelValidationError,
        "truncated",
    ),
    (
        "corrupt safetensors header",
        lambda c: c.broken("text-classification", _bad_header),
        ModelValidationError,
        "corrupt safetensors header",
    ),
    (
        "pickle weights only",
        lambda c: c.broken("text-classification", _pickle_only, "text-classification"),
        UnsafeModelError,
        "pickle",
    ),
    (
        "auto_map in config.json (remote code)",
        lambda c: c.broken(
            "text-classification", _json_edit("model/config.json", auto_map={"AutoModel": "x.Y"})
        ),
        UnsafeModelError,
        "auto_map",
    ),
    (
        "auto_map in tokenizer_config.json",
        lambda c: c.broken(
            "text-classification",
            _json_edit(
                "components/tokenizer/tokenizer_config.json",
                auto_map={"AutoTokenizer": ["x.T", None]},
            ),
        ),
        UnsafeModelError,
        "auto_map",
    ),
    (
        "config.json missing",
        lambda c: c.broken("text-classification", _unlink("model/config.json")),
        ModelValidationError,
        "config.json is missing",
    ),
    (
        "config.json not JSON",
        lambda c: c.broken("text-classification", _truncate("model/config.json", 10)),
        ModelValidationError,
        "not valid JSON",
    ),
    (
        "leftover of an interrupted save",
        lambda c: c.broken(
            "text-classification", lambda r: (r / INCOMPLETE_MARKER).write_text("x")
        ),
        ModelValidationError,
        "interrupted save",
    ),
    # job configurations (hfspark.jobs loader)
    (
        "conf: misspelled key",
        lambda c: _parse(_conf(c, run={"chunk_row": 10})),
        ConfigError,
        "unknown key 'chunk_row' \\(did you mean 'chunk_rows'\\?\\)",
    ),
    (
        "conf: misspelled step option",
        lambda c: _parse(
            _conf(
                c,
                models=[{"name": "p", "uri": "/m", "inputs": "text", "options": {"batchsize": 8}}],
            )
        ),
        ConfigError,
        "did you mean 'batch_size'",
    ),
    (
        "conf: unknown section",
        lambda c: _parse(_conf(c, outputs={"path": "x"})),
        ConfigError,
        "unknown key 'outputs'",
    ),
    (
        "conf: missing section",
        lambda c: _parse(
            yaml.safe_dump(
                {
                    "input": {"format": "parquet", "path": "x"},
                    "models": [{"name": "p", "uri": "/m", "inputs": "t"}],
                }
            )
        ),
        ConfigError,
        "output: required key is missing",
    ),
    (
        "conf: wrong value type",
        lambda c: _parse(_conf(c, run={"chunk_rows": "many"})),
        ConfigError,
        "chunk_rows",
    ),
    (
        "conf: unset environment variable",
        lambda c: _parse(_conf(c, output={"path": "${NOT_SET_ANYWHERE}"}), env={}),
        ConfigError,
        "NOT_SET_ANYWHERE",
    ),
    (
        "conf: duplicate key",
        lambda c: _parse(_conf(c) + "output: {path: y}\n"),
        ConfigError,
        "duplicate key 'output'",
    ),
    (
        "conf: not a mapping",
        lambda c: _parse("- just\n- a list\n"),
        ConfigError,
        "mapping of sections",
    ),
]


@pytest.fixture(scope="module")
def ctx(
    spark: Any,
    saved: dict[str, str],
    tiny_models: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Ctx:
    """The shared context of the up-front cases."""
    return Ctx(spark, saved, tiny_models, tmp_path_factory.mktemp("upfront"))


@pytest.mark.parametrize(("case", "make", "error", "message"), UPFRONT, ids=[u[0] for u in UPFRONT])
def test_refused_up_front(
    ctx: Ctx, case: str, make: Callable[[Ctx], Any], error: type[BaseException], message: str
) -> None:
    """A clear hfspark error on the driver before any Spark job (model folders: at model_udf)."""
    with no_spark_job(ctx.spark), pytest.raises(error, match=message) as info:
        make(ctx)
    assert isinstance(info.value, HfSparkError)


def test_no_spark_job_guard_sees_jobs(spark: Any) -> None:
    """The guard of the up-front cases does notice a Spark job."""
    with pytest.raises(AssertionError, match="a Spark job ran"), no_spark_job(spark):
        spark.range(3).collect()


def test_cli_exits_non_zero_on_bad_conf(tmp_path: Path) -> None:
    """``hfspark validate`` with an unknown key: exit code 2 and the key named, no Spark started."""
    conf = tmp_path / "job.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "input": {"format": "parquet", "path": str(tmp_path)},
                "models": [{"name": "p", "uri": str(tmp_path), "inputs": "text"}],
                "output": {"path": str(tmp_path / "out"), "mdoe": "append"},
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "hfspark.cli", "validate", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown key 'mdoe' (did you mean 'mode'?)" in proc.stderr


def test_job_input_column_missing(spark: Any, saved: dict[str, str], tmp_path: Path) -> None:
    """validate_job names a model step's missing input column before inference."""
    from hfspark.jobs import validate_job

    spark.createDataFrame([(1, "a")], "id long, body string").write.parquet(str(tmp_path / "in"))
    job = _parse(
        yaml.safe_dump(
            {
                "input": {"format": "parquet", "path": str(tmp_path / "in")},
                "models": [{"name": "p", "uri": saved["text-classification"], "inputs": "text"}],
                "output": {"path": str(tmp_path / "out")},
            }
        )
    )
    with pytest.raises(InputSchemaError, match="input column 'text' not found"):
        validate_job(job, spark)
    assert not (tmp_path / "out").exists()


def test_output_path_holding_non_delta_table(
    spark: Any, saved: dict[str, str], tmp_path: Path
) -> None:
    """A Delta output path that holds a Parquet table is refused before anything is written."""
    from hfspark.jobs import run_job, validate_job

    spark.createDataFrame([(1, "a")], "id long, text string").write.parquet(str(tmp_path / "in"))
    spark.createDataFrame([(9, "x")], "id long, other string").write.parquet(str(tmp_path / "out"))
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    job = _parse(
        yaml.safe_dump(
            {
                "input": {"format": "parquet", "path": str(tmp_path / "in"), "id_column": "id"},
                "models": [
                    {
                        "name": "p",
                        "uri": saved["text-classification"],
                        "inputs": "text",
                        "options": {"device": "cpu"},
                    }
                ],
                "output": {"path": str(tmp_path / "out")},
                "run": {"progress": "off", "report_path": None},
            }
        )
    )
    try:
        with pytest.raises(ConfigError, match="not a Delta table"):
            validate_job(job, spark)
        report = run_job(job, spark, raise_on_error=False)
        assert report.status == "failed" and "not a Delta table" in (report.reason or "")
    finally:
        after = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert after == before, "the output folder was written to"


# ----------------------------------------------------------------------------- count
#: cases checked by the single tests above (besides the families and UPFRONT).
EXTRA_CASES = (
    "invalid UTF-8 in a string column repaired by transform",
    "invalid UTF-8 in a string column with make_valid_utf8",
    "CLI exit code on a bad conf",
    "job step input column missing",
    "output path holding a non-Delta table",
)


def case_count() -> int:
    """Distinct bad-input cases in this module."""
    return sum(len(f.cases) for f in FAMILIES) + len(UPFRONT) + len(EXTRA_CASES)


def test_case_count(record_property: Callable[[str, Any], None]) -> None:
    """Print and record how many distinct bad-input cases this module checks."""
    n = case_count()
    rows = sum(len(f.cases) for f in FAMILIES)
    print(
        f"bad-input cases: {n} ({rows} per row in {len(FAMILIES)} families, "
        f"{len(UPFRONT)} up front, {len(EXTRA_CASES)} others)"
    )
    record_property("bad_input_cases", n)
    assert n >= 40
