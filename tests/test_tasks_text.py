"""Text task adapters on tiny models, without Spark: schemas, values against transformers'
pipelines (or a reference loop where the pipeline is gone), batch-order independence, row
errors, options; plus the real all-MiniLM-L6-v2 against a one-text-at-a-time computation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hfspark.errors import ConfigError, InputSchemaError, ModelValidationError, RowError
from hfspark.tasks import get_task
from hfspark.tasks.base import LoadedModel, TaskAdapter

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore")

TEXTS = [
    "I love this movie, it is great and wonderful.",
    "This film was terrible, boring and bad.",
    "My name is Sarah and I live in London.",
    "John works for Google in Berlin.",
    "Sarahson worksfor Googlers in Berlinia, Zoë too!",
    "",
    "Hello world! How are you doing today?",
    "The weather in Paris is sunny today. " * 30,  # longer than the tiny models' 128 tokens
]
MASKED = [
    "[MASK] is the capital of france.",
    "The cat sat on the [MASK].",
    "I love this [MASK], it is great",
    "Zoë [MASK] xyzzy",
    "hello [MASK]",
]
QA = [
    {"question": "What is the capital of France?", "context": "The capital of France is Paris."},
    {"question": "Where does John work?", "context": "John works for Google in Berlin. " * 20},
    {"question": "who? " * 40, "context": "Sarah lives in London."},
    {"question": "Which weather?", "context": "The weather in Paris is sunny today."},
]


# --------------------------------------------------------------------------- the engine's loop
def run_adapter(
    adapter: TaskAdapter,
    folder: Path,
    items: Sequence[Any],
    batch_size: int,
    loaded: LoadedModel | None = None,
) -> list[Any]:
    """Drive an adapter as the UDF engine does: convert -> prepare -> sort by length -> forward.

    Returns one output per item: the result, the RowError a bad row raised, or None for None.
    """
    loaded = loaded or adapter.load(Path(folder), {}, "cpu", None)
    out: list[Any] = [None] * len(items)
    rows, inputs = [], []
    for i, value in enumerate(items):
        if value is None:
            continue
        try:
            inputs.append(adapter.convert(value))
            rows.append(i)
        except RowError as e:
            out[i] = e
    if not inputs:
        return out
    features = adapter.prepare(loaded, inputs)
    assert len(features) == len(inputs)
    order = sorted(range(len(features)), key=lambda k: adapter.length(features[k]))
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            results = adapter.forward(loaded, [features[k] for k in chunk])
            assert len(results) == len(chunk)
            for k, result in zip(chunk, results, strict=True):
                out[rows[k]] = result
    return out


def check_type(value: Any, dtype: Any, where: str = "value") -> None:
    """Assert a Python value matches a Spark type exactly (dict keys, list items, scalar kinds)."""
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        FloatType,
        IntegerType,
        StringType,
        StructType,
    )

    if isinstance(dtype, StructType):
        assert isinstance(value, dict) and list(value) == dtype.names, f"{where}: {value!r}"
        for f in dtype.fields:
            check_type(value[f.name], f.dataType, f"{where}.{f.name}")
    elif isinstance(dtype, ArrayType):
        assert isinstance(value, list), f"{where}: {type(value)}"
        for i, item in enumerate(value):
            check_type(item, dtype.elementType, f"{where}[{i}]")
    elif isinstance(dtype, (DoubleType, FloatType)):
        assert type(value) is float and np.isfinite(value), f"{where}: {value!r}"
    elif isinstance(dtype, IntegerType):
        assert type(value) is int and -(2**31) <= value < 2**31, f"{where}: {value!r}"
    elif isinstance(dtype, StringType):
        assert isinstance(value, str), f"{where}: {value!r}"
    else:  # pragma: no cover
        raise AssertionError(f"unexpected type {dtype}")


def assert_close(a: Any, b: Any, tol: float = 1e-5, where: str = "value") -> None:
    """Recursive equality with a tolerance on floats."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {a} != {b}"
        for k in a:
            assert_close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(float(a) - float(b)) <= tol, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def by_label(result: dict) -> dict:
    """A ranked result keyed by label, so near-ties may swap places."""
    if "scores" in result and isinstance(result["scores"][0], dict):
        return {s["label"]: s["score"] for s in result["scores"]}
    return dict(zip(result["labels"], result["scores"], strict=True))


def pipe(task: str, folder: Path, **kwargs: Any) -> Any:
    import transformers

    return transformers.pipeline(task, model=str(folder), device="cpu", **kwargs)


# --------------------------------------------------------------------------- contract surface
SCHEMAS = {
    "text-classification": "struct<label:string,score:double,scores:array<struct<label:string,score:double>>>",
    "token-classification": "array<struct<entity_group:string,score:float,word:string,start:int,end:int>>",
    "fill-mask": "array<struct<token_str:string,token:int,score:double,sequence:string>>",
    "question-answering": "struct<answer:string,score:double,start:int,end:int>",
    "zero-shot-classification": "struct<labels:array<string>,scores:array<double>>",
    "feature-extraction": "array<float>",
}
TYPOS = {  # a misspelt key -> the key the error must suggest
    "text-classification": ("top_kk", "top_k"),
    "token-classification": ("aggregation_strategie", "aggregation_strategy"),
    "fill-mask": ("target", "targets"),
    "question-answering": ("doc_strides", "doc_stride"),
    "zero-shot-classification": ("multilabel", "multi_label"),
    "feature-extraction": ("poolng", "pooling"),
}


@pytest.mark.parametrize("task", list(SCHEMAS))
def test_registry_schema_and_attributes(task: str) -> None:
    cls = get_task(task)
    assert cls.name == task
    adapter = cls()
    assert adapter.output_type().simpleString() == SCHEMAS[task]
    assert set(adapter.input_types) <= set(cls.input_fields)
    assert set(cls.optional_fields) <= set(cls.input_fields)
    if not SCHEMAS[task].startswith("struct"):
        assert cls.result_field != "result"


@pytest.mark.parametrize("task", list(TYPOS))
def test_unknown_option_names_nearest(task: str) -> None:
    typo, nearest = TYPOS[task]
    with pytest.raises(ConfigError, match=f"did you mean '{nearest}'"):
        get_task(task)({typo: 1})


@pytest.mark.parametrize(
    ("task", "options", "match"),
    [
        ("text-classification", {"top_k": 0}, "top_k"),
        ("text-classification", {"function_to_apply": "relu"}, "function_to_apply"),
        ("token-classification", {"aggregation_strategy": "longest"}, "aggregation_strategy"),
        ("fill-mask", {"top_k": -1}, "top_k"),
        ("question-answering", {"max_answer_len": 0}, "max_answer_len"),
        ("zero-shot-classification", {"hypothesis_template": "no slot"}, "hypothesis_template"),
        ("zero-shot-classification", {"hypothesis_template": "{0} {1}"}, "hypothesis_template"),
        ("feature-extraction", {"pooling": "sum"}, "pooling"),
    ],
)
def test_invalid_option_values(task: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get_task(task)(options)


def test_option_aliases_and_label_strings() -> None:
    assert get_task("ner")({"aggregation": "max"}).options.aggregation_strategy == "max"
    zs = get_task("zero-shot")({"candidate_labels": "sports, politics ,"})
    assert zs.options.candidate_labels == ("sports", "politics")


def test_text_classification_default_function() -> None:
    from types import SimpleNamespace as Config

    from hfspark.tasks.text_classification import default_function

    assert default_function(Config(problem_type=None, num_labels=3)) == "softmax"
    assert default_function(Config(problem_type=None, num_labels=1)) == "sigmoid"
    assert (
        default_function(Config(problem_type="multi_label_classification", num_labels=4))
        == "sigmoid"
    )
    assert default_function(Config(problem_type="regression", num_labels=1)) == "none"
    assert get_task("fill-mask")({"targets": "paris"}).options.targets == ("paris",)


def test_check_input_types() -> None:
    from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

    s = StringType()
    tc = get_task("text-classification")()
    tc.check_input([s])
    tc.check_input([s, s])
    tc.check_input([StructType([StructField("text", s), StructField("text_pair", s)])])
    with pytest.raises(InputSchemaError):
        tc.check_input([IntegerType()])
    qa = get_task("question-answering")()
    qa.check_input([StructType([StructField("question", s), StructField("context", s)])])
    qa.check_input([s, s])
    with pytest.raises(InputSchemaError, match="context"):
        qa.check_input([StructType([StructField("question", s)])])
    with pytest.raises(InputSchemaError):
        qa.check_input([s])
    zs = get_task("zero-shot-classification")()
    zs.check_input([s])
    zs.check_input([s, ArrayType(s)])
    with pytest.raises(InputSchemaError):
        zs.check_input([s, s])


def test_max_length_over_model_limit(tiny_models: dict[str, Path]) -> None:
    adapter = get_task("text-classification")({"max_length": 4096})
    with pytest.raises(ConfigError, match="128"):
        adapter.load(tiny_models["text-classification"], {}, "cpu", None)


# --------------------------------------------------------------------------- values
def test_text_classification_matches_pipeline(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["text-classification"]
    items = [
        *TEXTS[:-1],
        {"text": "I love it", "text_pair": "It is great"},
        {"text": "bad", "text_pair": None},
    ]
    p = pipe("text-classification", folder)
    for options, kwargs in [
        ({}, {"top_k": None}),
        (
            {"top_k": 1, "function_to_apply": "sigmoid"},
            {"top_k": 1, "function_to_apply": "sigmoid"},
        ),
        ({"function_to_apply": "none"}, {"top_k": None, "function_to_apply": "none"}),
    ]:
        adapter = get_task("text-classification")(options)
        ours = run_adapter(adapter, folder, items, batch_size=4)
        for item, got in zip(items, ours, strict=True):
            check_type(got, adapter.output_type())
            ref = p(item, **kwargs)
            ref = ref[0] if isinstance(ref[0], list) else ref
            assert_close(got["scores"], [{"label": r["label"], "score": r["score"]} for r in ref])
            assert (got["label"], got["score"]) == (
                ref[0]["label"],
                pytest.approx(ref[0]["score"], abs=1e-5),
            )


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max", "none"])
def test_token_classification_matches_pipeline(tiny_models: dict[str, Path], strategy: str) -> None:
    folder = tiny_models["token-classification"]
    texts = TEXTS[:-1]
    adapter = get_task("token-classification")({"aggregation_strategy": strategy})
    ours = run_adapter(adapter, folder, texts, batch_size=3)
    refs = pipe("token-classification", folder, aggregation_strategy=strategy)(texts)
    for text, got, ref in zip(texts, ours, refs, strict=True):
        check_type(got, adapter.output_type())
        want = [
            {
                "entity_group": r.get("entity_group", r.get("entity")),
                "score": float(r["score"]),
                "word": r["word"],
                "start": r["start"],
                "end": r["end"],
            }
            for r in ref
        ]
        assert_close(got, want)
        for e in got:  # offsets are character offsets into the input
            assert 0 <= e["start"] < e["end"] <= len(text)


def test_token_classification_truncates_long_text(tiny_models: dict[str, Path]) -> None:
    text = TEXTS[-1]
    adapter = get_task("token-classification")(
        {"aggregation_strategy": "none", "ignore_labels": []}
    )
    (got,) = run_adapter(adapter, tiny_models["token-classification"], [text], batch_size=1)
    assert len(got) == 126  # 128 tokens minus [CLS] and [SEP]
    assert all(text[e["start"] : e["end"]].lower() == e["word"].removeprefix("##") for e in got)


def test_fill_mask_matches_pipeline(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["fill-mask"]
    p = pipe("fill-mask", folder)
    for options in ({}, {"top_k": 3, "targets": ["paris", "cat", "zzqq"]}):
        adapter = get_task("fill-mask")(options)
        ours = run_adapter(adapter, folder, MASKED, batch_size=2)
        for text, got in zip(MASKED, ours, strict=True):
            check_type(got, adapter.output_type())
            ref = p(text, **options)
            assert len(got) == options.get("top_k", 5)
            assert_close(
                got, [{k: r[k] for k in ("token_str", "token", "score", "sequence")} for r in ref]
            )


def test_fill_mask_rows(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["fill-mask"]
    items = ["no mask here", "two [MASK] and [MASK]", 42, "one [MASK]."]
    out = run_adapter(get_task("fill-mask")(), folder, items, batch_size=2)
    assert isinstance(out[0], RowError) and "'[MASK]'" in str(out[0])
    assert isinstance(out[1], RowError) and "allow_multiple_masks" in str(out[1])
    assert isinstance(out[2], RowError) and "string" in str(out[2])
    assert len(out[3]) == 5
    allowed = run_adapter(
        get_task("fill-mask")({"allow_multiple_masks": True}), folder, items[1:2], 1
    )
    assert all(r["sequence"].endswith("and [MASK]") for r in allowed[0])
    # a mask past max_length tokens is kept: the row is cut to a window around it
    long = "the cat sat on the mat " * 40 + "[MASK] " + "the dog barked " * 40
    (got,) = run_adapter(get_task("fill-mask")({"max_length": 32}), folder, [long], 1)
    assert len(got) == 5 and all(len(r["sequence"].split()) < 32 for r in got)


def reference_qa(folder: Path, question: str, context: str, max_length: int, stride: int) -> dict:
    """transformers 4's question-answering pipeline, one window at a time (max_answer_len 15)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    enc = tok(
        question,
        context,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    answers = []
    for w in range(len(enc["input_ids"])):
        inputs = {
            k: torch.tensor([enc[k][w]]) for k in ("input_ids", "token_type_ids", "attention_mask")
        }
        with torch.inference_mode():
            out = model(**inputs)
        allowed = np.array([s == 1 for s in enc.sequence_ids(w)])
        allowed[0] = True  # CLS
        probs = []
        for logits in (out.start_logits[0].numpy(), out.end_logits[0].numpy()):
            x = np.where(allowed, logits, -10000.0)
            x = np.exp(x - x.max())
            probs.append(x / x.sum())
        start, end = probs
        start[0] = end[0] = 0.0
        cand = np.tril(np.triu(np.outer(start, end)), 14)
        i, j = np.unravel_index(cand.argmax(), cand.shape)
        s_char = enc.word_to_chars(w, enc.token_to_word(w, int(i)), sequence_index=1)[0]
        e_char = enc.word_to_chars(w, enc.token_to_word(w, int(j)), sequence_index=1)[1]
        answers.append(
            {
                "answer": context[s_char:e_char],
                "score": float(cand[i, j]),
                "start": s_char,
                "end": e_char,
            }
        )
    return sorted(answers, key=lambda a: -a["score"])[0]


def test_question_answering_matches_reference(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["question-answering"]
    adapter = get_task("question-answering")(
        {"max_length": 96, "doc_stride": 20, "max_question_len": 16}
    )
    loaded = adapter.load(folder, {}, "cpu", None)
    assert loaded.extras["stride"] == 20
    items = [adapter.convert(q) for q in QA]
    windows = [len(f["windows"]) for f in adapter.prepare(loaded, items)]
    assert windows[0] == 1 and windows[1] == 3  # the long context spans several windows
    ours = run_adapter(adapter, folder, QA, batch_size=2, loaded=loaded)
    for item, got in zip(QA, ours, strict=True):
        check_type(got, adapter.output_type())
        assert item["context"][got["start"] : got["end"]] == got["answer"] != ""
        if len(item["question"]) < 50:  # the reference does not cut long questions
            assert_close(got, reference_qa(folder, item["question"], item["context"], 96, 20))


def test_question_answering_options_and_rows(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["question-answering"]
    loaded = get_task("question-answering")().load(folder, {}, "cpu", None)
    assert loaded.extras["max_length"] == 128 and loaded.extras["stride"] == 30  # (128-64-3)//2
    with pytest.raises(ConfigError, match="max_question_len"):
        get_task("question-answering")({"max_length": 60}).load(folder, {}, "cpu", None)
    rows = [
        {"question": "Where?", "context": "  "},
        {"question": None, "context": "Paris"},
        {"question": "Where?"},
        ("Where?", "In Paris."),
    ]
    out = run_adapter(get_task("question-answering")(), folder, rows, batch_size=2)
    assert "context" in str(out[0]) and "question" in str(out[1]) and "context" in str(out[2])
    assert all(isinstance(o, RowError) for o in out[:3])
    assert isinstance(out[3], RowError)  # a tuple is not a struct row
    short = get_task("question-answering")({"max_answer_len": 1, "align_to_words": False})
    for got in run_adapter(short, folder, QA, batch_size=4):
        assert len(got["answer"].split()) <= 1
    impossible = get_task("question-answering")({"handle_impossible_answer": True})
    for got in run_adapter(impossible, folder, QA, batch_size=4):
        assert got["answer"] == "" or got["end"] > got["start"]


def test_zero_shot_matches_pipeline(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["zero-shot-classification"]
    p = pipe("zero-shot-classification", folder)
    labels = ["sports", "politics", "weather", "movies"]
    for options in ({}, {"multi_label": True}, {"hypothesis_template": "It is about {}!"}):
        adapter = get_task("zero-shot-classification")({"candidate_labels": labels, **options})
        texts = [t for t in TEXTS[:-1] if t]  # the pipeline refuses "" (we score it)
        ours = run_adapter(adapter, folder, texts, batch_size=3)
        for text, got in zip(texts, ours, strict=True):
            check_type(got, adapter.output_type())
            ref = p(text, candidate_labels=labels, **options)
            assert_close(by_label(got), by_label(ref))
            assert got["scores"] == sorted(got["scores"], reverse=True)
    # per-row labels, one label (entailment vs contradiction), fallback to the option
    adapter = get_task("zero-shot-classification")({"candidate_labels": labels})
    rows = [{"text": "a b", "candidate_labels": ["x"]}, {"text": "a b", "candidate_labels": None}]
    one, fallback = run_adapter(adapter, folder, rows, batch_size=2)
    assert_close(by_label(one), by_label(p("a b", candidate_labels=["x"])))
    assert sorted(fallback["labels"]) == sorted(labels)


def test_zero_shot_rows_and_model(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["zero-shot-classification"]
    adapter = get_task("zero-shot-classification")({"max_candidate_labels": 3})
    rows = [
        "no labels anywhere",
        {"text": "x", "candidate_labels": []},
        {"text": "x", "candidate_labels": ["a", "b", "c", "d"]},
        {"text": "x", "candidate_labels": ["a", None]},
        {"text": None, "candidate_labels": ["a"]},
        {"text": "x", "candidate_labels": np.array(["a", "b"], dtype=object)},
    ]
    out = run_adapter(adapter, folder, rows, batch_size=2)
    assert "no candidate labels" in str(out[0]) and "no candidate labels" in str(out[1])
    assert "max_candidate_labels=3" in str(out[2])
    assert isinstance(out[3], RowError) and isinstance(out[4], RowError)
    assert sorted(out[5]["labels"]) == ["a", "b"]
    with pytest.raises(ModelValidationError, match="entail"):
        adapter.load(tiny_models["text-classification"], {}, "cpu", None)


def test_feature_extraction_matches_pipeline(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["feature-extraction"]
    texts = TEXTS[:-1]
    tokens = [
        np.array(t[0]) for t in pipe("feature-extraction", folder)(texts)
    ]  # (tokens, dim) each
    expected = {
        "mean": [t.mean(axis=0) for t in tokens],
        "cls": [t[0] for t in tokens],
        "max": [t.max(axis=0) for t in tokens],
    }
    for pooling, vectors in expected.items():
        adapter = get_task("feature-extraction")({"pooling": pooling, "normalize": False})
        ours = run_adapter(adapter, folder, texts, batch_size=3)
        for got, want in zip(ours, vectors, strict=True):
            check_type(got, adapter.output_type())
            np.testing.assert_allclose(got, want, atol=1e-5)
    normed = run_adapter(get_task("feature-extraction")(), folder, texts, batch_size=8)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- batch independence
BATCH_CASES = {
    "text-classification": ({}, [*TEXTS, {"text": "a", "text_pair": "b c d"}]),
    "token-classification": ({"aggregation_strategy": "average"}, TEXTS),
    "fill-mask": ({}, MASKED),
    "question-answering": ({"max_length": 96, "max_question_len": 16}, QA),
    "zero-shot-classification": (
        {"candidate_labels": ["sports", "politics", "weather"]},
        [*TEXTS, {"text": "x y", "candidate_labels": ["a", "b", "c", "d", "e"]}],
    ),
    "feature-extraction": ({}, TEXTS),
}


def _comparable(task: str, value: Any) -> Any:
    return by_label(value) if task in ("text-classification", "zero-shot-classification") else value


@pytest.mark.parametrize("task", list(BATCH_CASES))
def test_batch_order_independence(tiny_models: dict[str, Path], task: str) -> None:
    options, items = BATCH_CASES[task]
    adapter = get_task(task)(options)
    loaded = adapter.load(tiny_models[task], {}, "cpu", None)
    alone = [run_adapter(adapter, tiny_models[task], [item], 1, loaded)[0] for item in items]
    rng = random.Random(0)
    for batch_size in (2, 3, len(items)):
        order = list(range(len(items)))
        rng.shuffle(order)
        shuffled = run_adapter(
            adapter, tiny_models[task], [items[i] for i in order], batch_size, loaded
        )
        for pos, i in enumerate(order):
            check_type(shuffled[pos], adapter.output_type())
            assert_close(
                _comparable(task, shuffled[pos]), _comparable(task, alone[i]), 1e-5, f"row {i}"
            )


@pytest.mark.parametrize("task", list(BATCH_CASES))
def test_non_string_rows_are_row_errors(tiny_models: dict[str, Path], task: str) -> None:
    options, items = BATCH_CASES[task]
    adapter = get_task(task)(options)
    out = run_adapter(adapter, tiny_models[task], [12, items[0], None], batch_size=2)
    assert isinstance(out[0], RowError) and "string" in str(out[0])
    assert not isinstance(out[1], RowError) and out[2] is None


# --------------------------------------------------------------------------- real MiniLM
def test_minilm_sentence_embeddings(minilm_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    sentences = [
        "I like food",
        "I eat bread",
        "The stock market fell sharply on Monday.",
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The weather in Paris is sunny today. " * 60,  # past the 256-token limit
    ]
    adapter = get_task("sentence-embeddings")()
    loaded = adapter.load(minilm_dir, {}, "cpu", None)
    assert loaded.extras == {**loaded.extras, "pooling": "mean", "max_length": 256}
    ours = np.array(run_adapter(adapter, minilm_dir, sentences, batch_size=4, loaded=loaded))
    assert ours.shape == (6, 384)

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir).eval()
    for got, sentence in zip(ours, sentences, strict=True):  # one text at a time, no padding
        enc = tok(sentence, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state[0]
        want = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)

    sim = ours @ ours.T
    assert sim[0, 1] > 0.5 > sim[0, 2]  # food ~ bread, not the stock market
    assert sim[3, 4] > max(sim[3, 0], sim[3, 1], sim[3, 2])
