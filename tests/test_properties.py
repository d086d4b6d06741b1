"""Property tests (hypothesis) for every input converter and the engine's row path, no Spark.

For each task adapter, random values of the Python shapes the Arrow UDF hands the engine (weird
unicode, random bytes, float arrays with NaN/inf/empty, dicts with missing or None fields,
lists of role/content dicts, and values of the wrong type) must:

* make ``adapter.convert`` return or raise :class:`~hfspark.errors.RowError`, nothing else
  (the contract in ``hfspark/tasks/base.py``);
* go through ``arrow_rows`` + ``predict_rows`` with ``errors="column"`` giving exactly
  one result and one error per row, never an exception: a null row gives (None, None), any
  other row a result or an error string, and results have the adapter's output shape.

Models are the tiny offline ones of ``tests/tiny_models.py``, loaded once per module into
an engine ``Runtime`` (the executor's cache is not used). Examples are derandomized so CI
runs are reproducible; set ``HFSPARK_HYPOTHESIS_EXAMPLES`` to explore more.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hfspark.errors import RowError
from hfspark.tasks import get_task
from hfspark.udfs.arrow import arrow_result, arrow_rows, arrow_type
from hfspark.udfs.engine import predict_rows
from hfspark.udfs.executor import Runtime
from hfspark.udfs.options import UdfOptions
from hfspark.udfs.reference import output_type
from tests.helpers.badmedia import IMAGE_KINDS, image, png_header, wav

pytestmark = pytest.mark.filterwarnings("ignore")

_EXAMPLES = int(os.environ.get("HFSPARK_HYPOTHESIS_EXAMPLES", "25"))
PROPS = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
OPTIONS = UdfOptions(errors="column", device="cpu", batch_size=3)

#: adapter id -> (tiny model folder, task, task options).
ADAPTERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "text-classification": ("text-classification", "text-classification", {}),
    "token-classification": ("token-classification", "token-classification", {}),
    "fill-mask": ("fill-mask", "fill-mask", {"top_k": 2}),
    "question-answering": ("question-answering", "question-answering", {}),
    "zero-shot": (
        "zero-shot-classification",
        "zero-shot-classification",
        {"candidate_labels": ["sports", "politics"]},
    ),
    "feature-extraction": ("feature-extraction", "feature-extraction", {}),
    "text-generation": ("text-generation", "text-generation", {"max_new_tokens": 2}),
    "summarization": ("text2text-generation", "summarization", {"max_new_tokens": 2}),
    "asr-whisper": ("asr-whisper", "automatic-speech-recognition", {"max_new_tokens": 2}),
    "asr-ctc": ("asr-ctc", "automatic-speech-recognition", {}),
    "audio-classification": ("audio-classification", "audio-classification", {"top_k": 2}),
    "image-classification": ("image-classification", "image-classification", {"top_k": 2}),
}

# ----------------------------------------------------------------------------- strategies
WEIRD_TEXT = [
    "",
    " ",
    "\t\n\r",
    "\x00",
    "\x00\x01\x02\x1b[31m",
    "\ufeff",
    "\u200b\u200c\u200d",
    "\u202eRTL override",
    "e\u0301\u0301\u0301",
    "🙂" * 40,
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "ﷺ" * 10,
    "[MASK]",
    "[MASK] [MASK]",
    "a [MASK] b",
    "[CLS] [SEP] [PAD] [UNK]",
    "<|endoftext|>" * 3,
    "<s></s><pad><unk>",
    "{prompt}",
    "{}",
    "{0}",
    "%s %d",
    "\\x00",
    "' OR 1=1 --",
    "word " * 400,
    "x" * 3000,
    "\n" * 300,
    "日本語のテキスト" * 20,
]
texts = st.one_of(st.text(max_size=60), st.sampled_from(WEIRD_TEXT))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=32),
    texts,
)
#: values of a type no adapter accepts for that field (lists, dicts, numbers...).
junk = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=2),
)
float_arrays = st.one_of(
    st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=300),
    st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=3000),
    st.builds(
        lambda n, s: np.random.default_rng(s).normal(0, 0.1, n).astype(np.float32),
        st.integers(0, 6000),
        st.integers(0, 2**16),
    ),
    st.just(np.array([], dtype=np.float64)),
    st.just(np.array([0.1, np.nan, np.inf, -np.inf])),
    st.just(np.zeros((3, 4), dtype=np.float32)),  # not mono
    st.lists(st.one_of(st.none(), st.floats(-1, 1)), max_size=20),
)
rates = st.one_of(
    st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    st.none(),
    st.integers(-10, 2_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
audio_structs = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"array": st.one_of(float_arrays, junk), "sampling_rate": rates}
    ),
    st.fixed_dictionaries(
        {  # well-formed structs, some with bad samples
            "array": float_arrays,
            "sampling_rate": st.sampled_from([8000, 16000, 44100]),
        }
    ),
)
audio_files = st.one_of(
    st.binary(max_size=256),
    st.builds(
        lambda n, rate, ch, s: wav(np.random.default_rng(s).normal(0, 0.2, n), rate, ch),
        st.integers(0, 8000),
        st.sampled_from([8000, 16000, 44100]),
        st.integers(1, 2),
        st.integers(0, 2**16),
    ),
    st.builds(
        lambda n, cut: wav(np.zeros(n), 16000)[:cut], st.integers(1, 4000), st.integers(0, 200)
    ),  # truncated WAV
)
image_files = st.one_of(
    st.binary(max_size=256),
    st.builds(
        lambda mode_fmt, w, h, s: image(*mode_fmt, w, h, s),
        st.sampled_from(IMAGE_KINDS),
        st.integers(1, 48),
        st.integers(1, 48),
        st.integers(0, 2**16),
    ),
    st.builds(
        lambda w, h, s: image("RGB", "JPEG", w, h, s),
        st.integers(1, 64),
        st.integers(1, 64),
        st.integers(0, 2**16),
    ),
    st.builds(
        lambda w, h, s, cut: image("RGB", "PNG", w, h, s)[:cut],
        st.integers(8, 64),
        st.integers(8, 64),
        st.integers(0, 2**16),
        st.integers(0, 400),
    ),
    st.builds(png_header, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
)
roles = st.one_of(
    st.sampled_from(["system", "user", "assistant", "tool", "wizard", "", "USER"]),
    st.none(),
    st.integers(),
)
messages = st.fixed_dictionaries(
    {}, optional={"role": roles, "content": st.one_of(texts, st.none(), st.integers())}
)
chats = st.one_of(
    st.lists(messages, max_size=4),
    st.lists(messages, max_size=4).map(lambda m: np.array(m, dtype=object)),  # as Arrow gives it
    st.lists(junk, max_size=3),
)


def _struct(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Dicts with any subset of ``fields`` (missing and None fields included)."""
    return st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, st.none(), junk) for k, v in fields.items()}
    )


labels = st.one_of(
    st.lists(st.one_of(texts, st.none()), max_size=6),
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4).map(
        lambda x: np.array(x, dtype=object)
    ),
)
VALUES: dict[str, st.SearchStrategy] = {
    "text-classification": st.one_of(texts, junk, _struct({"text": texts, "text_pair": texts})),
    "token-classification": st.one_of(texts, junk),
    "fill-mask": st.one_of(texts, junk, st.builds(lambda a, b: f"{a} [MASK] {b}", texts, texts)),
    "question-answering": st.one_of(
        junk,
        _struct({"question": texts, "context": texts}),
        st.fixed_dictionaries({"question": st.text(min_size=1, max_size=30), "context": texts}),
    ),
    "zero-shot": st.one_of(texts, junk, _struct({"text": texts, "candidate_labels": labels})),
    "feature-extraction": st.one_of(texts, junk),
    "text-generation": st.one_of(texts, junk, chats),
    "summarization": st.one_of(texts, junk),
    "asr-whisper": st.one_of(audio_files, audio_structs, junk),
    "asr-ctc": st.one_of(audio_files, audio_structs, junk),
    "audio-classification": st.one_of(audio_files, audio_structs, junk),
    "image-classification": st.one_of(image_files, junk),
}


#: one well-formed row per adapter, always among the examples (so no run is vacuous).
GOOD: dict[str, Any] = {
    "text-classification": "I love this movie.",
    "token-classification": "John works for Google in Berlin.",
    "fill-mask": "The capital of France is [MASK].",
    "question-answering": {"question": "Where?", "context": "The cat sat on the mat."},
    "zero-shot": {"text": "The match ended 2-1.", "candidate_labels": ["sports", "politics"]},
    "feature-extraction": "Hello world!",
    "text-generation": "Hello",
    "summarization": "The quick brown fox jumps over the lazy dog.",
    "asr-whisper": {"array": np.zeros(8000, np.float32) + 0.01, "sampling_rate": 16000},
    "asr-ctc": {"array": np.zeros(8000, np.float32) + 0.01, "sampling_rate": 16000},
    "audio-classification": {"array": np.zeros(8000, np.float32) + 0.01, "sampling_rate": 16000},
    "image-classification": b"",  # replaced below by a real PNG
}
GOOD["image-classification"] = image("RGB", "PNG", 16, 16, 0)


# ----------------------------------------------------------------------------- runtimes
@pytest.fixture(scope="module")
def runtime_for(tiny_models: dict[str, Path]) -> Callable[[str], Runtime]:
    """A loader of engine Runtimes by adapter id (each model loaded once per module)."""
    import torch

    torch.set_num_threads(1)
    cache: dict[str, Runtime] = {}

    def get(key: str) -> Runtime:
        if key not in cache:
            folder, task, params = ADAPTERS[key]
            adapter = get_task(task)(params)
            loaded = adapter.load(Path(tiny_models[folder]), {}, "cpu", None)
            cache[key] = Runtime(adapter=adapter, loaded=loaded, device="cpu", dtype=None, nbytes=0)
        return cache[key]

    return get


def _check_result_shape(adapter: Any, result: Any) -> None:
    """A result has the adapter's output shape: the struct's fields, or a list for arrays."""
    from pyspark.sql.types import ArrayType, StructType

    out_type = adapter.output_type()
    if isinstance(out_type, StructType):
        assert isinstance(result, dict), result
        assert set(result) == {f.name for f in out_type.fields}, result
    else:
        assert isinstance(out_type, ArrayType)
        assert isinstance(result, list), result


def _check_rows(runtime: Runtime, rows: list[Any], seen: Counter | None = None) -> None:
    """predict_rows gives one (result, error) per row, never raising, shaped as declared.

    ``seen`` counts the outcomes (null, error, predicted) so a test can check it was not vacuous.
    """
    results, errors = predict_rows(runtime, rows, OPTIONS)
    assert len(results) == len(errors) == len(rows)
    for value, result, error in zip(rows, results, errors, strict=True):
        if value is None:
            assert result is None and error is None
            outcome = "null"
        elif error is not None:
            assert result is None and isinstance(error, str) and error.strip()
            outcome = "error"
        else:
            _check_result_shape(runtime.adapter, result)
            outcome = "predicted"
        if seen is not None:
            seen[outcome] += 1
    from pyspark.sql.types import StructType

    adapter = runtime.adapter
    target = arrow_type(output_type(adapter, OPTIONS))
    out = arrow_result(
        rows,
        results,
        errors,
        target,
        True,
        adapter.result_field,
        isinstance(adapter.output_type(), StructType),
    )
    assert len(out) == len(rows) and out.type == target
    assert [v is None for v in out.to_pylist()] == [r is None for r in rows]  # null in, null out


def _as_arrow(values: list[Any]) -> pa.Array | None:
    """The values as one Arrow array when they share a type (mixed junk cannot be one column)."""
    try:
        return pa.array(values)
    except (
        pa.ArrowInvalid,
        pa.ArrowTypeError,
        pa.ArrowNotImplementedError,
        OverflowError,
        TypeError,
    ):
        return None


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("key", list(ADAPTERS))
def test_convert_raises_only_row_errors(key: str) -> None:
    """``convert`` takes any value and returns, or raises RowError naming what was wrong."""
    folder, task, params = ADAPTERS[key]
    adapter = get_task(task)(params)

    @PROPS
    @given(value=VALUES[key])
    def check(value: Any) -> None:
        try:
            adapter.convert(value)
        except RowError as e:
            assert str(e).strip()

    check()


@pytest.mark.parametrize("key", list(ADAPTERS))
def test_engine_one_output_per_row(key: str, runtime_for: Callable[[str], Runtime]) -> None:
    """arrow_rows + predict_rows (errors="column"): as many rows out as in, no exception."""
    runtime = runtime_for(key)
    seen: Counter = Counter()

    @PROPS
    @given(rows=st.lists(st.one_of(st.none(), VALUES[key]), max_size=5))
    @example(rows=[None, GOOD[key], GOOD[key]])
    def check(rows: list[Any]) -> None:
        column = _as_arrow(rows)
        from_arrow = rows if column is None else arrow_rows([column], runtime.adapter.input_fields)
        assert len(from_arrow) == len(rows)
        _check_rows(runtime, from_arrow, seen)

    check()
    print(f"{key}: {dict(seen)}")
    assert seen["predicted"] >= 2 and seen["error"], f"vacuous run: {dict(seen)}"


@PROPS
@given(
    values=st.lists(
        st.tuples(st.one_of(texts, st.none()), st.one_of(texts, st.none())), max_size=8
    ),
    as_struct=st.booleans(),
)
def test_arrow_rows_shapes(values: list[tuple[Any, Any]], as_struct: bool) -> None:
    """A struct column or several columns give one dict per row; a null first field a null row."""
    first = pa.array([v[0] for v in values], type=pa.string())
    second = pa.array([v[1] for v in values], type=pa.string())
    names = ("question", "context")
    if as_struct:
        rows = arrow_rows(
            [pa.StructArray.from_arrays([first, second], names=list(names))], ("x", "y")
        )
    else:
        rows = arrow_rows([first, second], names)
    assert len(rows) == len(values)
    for (a, b), row in zip(values, rows, strict=True):
        if a is None:
            assert row is None
        else:
            assert set(row) == set(names)
            assert row["question"] == a and row["context"] == b


def test_multi_column_engine_rows(runtime_for: Callable[[str], Runtime]) -> None:
    """Two columns (question, context) with nulls and junk through the engine, row count kept."""
    runtime = runtime_for("question-answering")

    @PROPS
    @given(
        pairs=st.lists(
            st.tuples(st.one_of(texts, st.none()), st.one_of(texts, st.none(), junk)), max_size=5
        )
    )
    def check(pairs: list[tuple[Any, Any]]) -> None:
        cols = [_as_arrow([p[0] for p in pairs]), _as_arrow([p[1] for p in pairs])]
        if any(c is None for c in cols):  # junk of mixed types: the rows as the engine sees them
            rows = [None if p[0] is None else {"question": p[0], "context": p[1]} for p in pairs]
        else:
            rows = arrow_rows(cols, runtime.adapter.input_fields)
        assert len(rows) == len(pairs)
        _check_rows(runtime, rows)

    check()
