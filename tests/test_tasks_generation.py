"""Adapter tests (no Spark) of text-generation and the seq2seq tasks on tiny random models."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from hfspark.errors import ConfigError, InputSchemaError, ModelValidationError, RowError
from hfspark.tasks import get_task
from hfspark.tasks._generation import finish_row, pad_batch, row_seeds
from hfspark.tasks.seq2seq import Summarization, Text2TextGeneration, Translation
from hfspark.tasks.text_generation import TextGeneration
from tests.helpers.adapter_runner import load, run_adapter

PROMPTS = [
    "Hello world",
    "The cat sat on the mat and the dog",
    "I love this movie, it is",
    "Spark runs",
    "What is the capital of France? The capital",
    "Machine learning models need",
]
STRUCT = (
    "struct<generated_text:string,finish_reason:string,prompt_tokens:int,completion_tokens:int>"
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def gpt(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["text-generation"]


@pytest.fixture(scope="module")
def bart(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["text2text-generation"]


def _variant(
    src: Path, dst: Path, config: dict | None = None, tokenizer: dict | None = None
) -> Path:
    """A copy of a model folder with keys added to config.json / tokenizer_config.json."""
    shutil.copytree(src, dst)
    for name, extra in (("config.json", config), ("tokenizer_config.json", tokenizer)):
        if extra:
            data = json.loads((dst / name).read_text())
            data.update(extra)
            (dst / name).write_text(json.dumps(data))
    return dst


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_new_token": 5}, "did you mean 'max_new_tokens'"),
        ({"temperature": 0.7}, "do_sample=True"),
        ({"do_sample": True, "num_beams": 3}, "num_beams"),
        ({"prompt_template": "no placeholder"}, "exactly once"),
        ({"prompt_template": "{prompt} {prompt}"}, "exactly once"),
        ({"prompt_template": "{prompt} {0}"}, "plain column name"),
        ({"prompt_template": "{prompt"}, "not a valid format string"),
        ({"stop": [""]}, "must not be empty"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 1.5, "do_sample": True}, "top_p"),
    ],
)
def test_text_generation_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TextGeneration(options)


def test_options_normalise_stop_and_registry() -> None:
    assert TextGeneration({"stop": "###"}).options.stop == ("###",)
    assert TextGeneration({}).options.do_sample is False
    for task, cls in [
        ("text-generation", TextGeneration),
        ("summarization", Summarization),
        ("translation", Translation),
        ("translation_en_to_de", Translation),
        ("text2text-generation", Text2TextGeneration),
    ]:
        assert get_task(task) is cls
        assert cls({}).output_type().simpleString() == STRUCT
    with pytest.raises(ConfigError, match="unknown option 'source_lang'"):
        Summarization({"source_lang": "en"})


def test_input_types() -> None:
    from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

    chat = ArrayType(
        StructType([StructField("role", StringType()), StructField("content", StringType())])
    )
    with pytest.raises(InputSchemaError, match="role string"):
        TextGeneration({}).check_input([ArrayType(StructType([StructField("role", StringType())]))])
    TextGeneration({}).check_input([StringType()])
    TextGeneration({}).check_input([chat])
    Summarization({}).check_input([StringType()])
    with pytest.raises(InputSchemaError):
        TextGeneration({}).check_input([IntegerType()])
    with pytest.raises(InputSchemaError):
        Summarization({}).check_input([chat])


# ------------------------------------------------------------------- text-generation
def test_greedy_matches_pipeline(gpt: Path) -> None:
    import transformers

    out = run_adapter(TextGeneration({}), gpt, PROMPTS, batch_size=3)
    pipe = transformers.pipeline("text-generation", model=str(gpt))
    tok = pipe.tokenizer
    for prompt, row in zip(PROMPTS, out, strict=True):
        expected = pipe(prompt, return_full_text=False, do_sample=False)[0]["generated_text"]
        assert row["generated_text"] == expected
        assert row["prompt_tokens"] == len(tok(prompt)["input_ids"])
        assert row["completion_tokens"] == 8  # generation_config.max_new_tokens, no eos
        assert row["finish_reason"] == "length"


def test_batch_order_independent(gpt: Path) -> None:
    adapter = TextGeneration({"max_new_tokens": 5})
    loaded = load(adapter, gpt)
    reference = run_adapter(adapter, loaded, PROMPTS, batch_size=1)
    for seed, batch_size in [(1, 2), (2, 4), (3, 16)]:
        order = list(range(len(PROMPTS)))
        random.Random(seed).shuffle(order)
        out = run_adapter(adapter, loaded, [PROMPTS[i] for i in order], batch_size=batch_size)
        assert [out[order.index(i)] for i in range(len(PROMPTS))] == reference


def test_sampling_is_seeded_per_row(gpt: Path) -> None:
    adapter = TextGeneration({"do_sample": True, "seed": 11, "max_new_tokens": 6, "top_k": 50})
    loaded = load(adapter, gpt)
    first = run_adapter(adapter, loaded, PROMPTS, batch_size=1)
    again = run_adapter(adapter, loaded, PROMPTS[::-1], batch_size=4)[::-1]
    assert first == again  # same seed: same text whatever the batch
    other = run_adapter(
        TextGeneration({"do_sample": True, "seed": 12, "max_new_tokens": 6}), loaded, PROMPTS
    )
    assert [r["generated_text"] for r in other] != [r["generated_text"] for r in first]
    greedy = run_adapter(TextGeneration({"max_new_tokens": 6}), loaded, PROMPTS)
    assert [r["generated_text"] for r in greedy] != [r["generated_text"] for r in first]
    # identical prompts in one batch get identical samples (the seed follows the row's input)
    twins = run_adapter(adapter, loaded, [PROMPTS[0], PROMPTS[0]], batch_size=2)
    assert twins[0] == twins[1] == first[0]


def test_stop_strings(gpt: Path) -> None:
    adapter = TextGeneration({"do_sample": True, "seed": 3, "max_new_tokens": 8})
    loaded = load(adapter, gpt)
    full = run_adapter(adapter, loaded, PROMPTS)
    text = full[2]["generated_text"]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = run_adapter(
        TextGeneration({"do_sample": True, "seed": 3, "max_new_tokens": 8, "stop": [stop]}),
        loaded,
        PROMPTS,
    )
    assert cut[2]["generated_text"] == text[: text.find(stop)]
    assert cut[2]["finish_reason"] == "stop"
    assert 1 <= cut[2]["completion_tokens"] < full[2]["completion_tokens"]
    for before, after in zip(full, cut, strict=True):  # rows without the stop string are unchanged
        if stop not in before["generated_text"]:
            assert after == before


def test_prompt_template(gpt: Path) -> None:
    template = "Q: {prompt}\nA:"
    adapter = TextGeneration({"prompt_template": template, "max_new_tokens": 4})
    assert adapter.convert("hi") == "Q: hi\nA:"
    assert TextGeneration({"prompt_template": "{{x}} {prompt}"}).convert("{y}") == "{x} {y}"
    assert Summarization({"prompt_template": "Text: {prompt}"}).convert("hi") == "Text: hi"
    out = run_adapter(adapter, gpt, PROMPTS[:2])
    raw = run_adapter(
        TextGeneration({"max_new_tokens": 4}),
        gpt,
        [template.replace("{prompt}", p) for p in PROMPTS[:2]],
    )
    assert out == raw


def test_chat_messages(gpt: Path, tmp_path: Path) -> None:
    folder = _variant(gpt, tmp_path / "chat", tokenizer={"chat_template": CHAT_TEMPLATE})
    adapter = TextGeneration({"max_new_tokens": 4})
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello world"},
    ]
    rendered = "<system> Be brief.\n<user> Hello world\n<assistant>"
    as_numpy = np.array(messages, dtype=object)  # how Arrow hands array<struct> to pandas UDFs
    out = run_adapter(adapter, folder, [messages, as_numpy, rendered])
    assert out[0] == out[1] == out[2]
    bad = run_adapter(
        adapter,
        folder,
        [
            [{"role": "wizard", "content": "hi"}],
            [],
            [{"role": "user", "content": None}],
            42,
        ],
    )
    assert all(isinstance(e, RowError) for e in bad)
    assert "unknown role 'wizard'" in str(bad[0])
    # a tokenizer without a chat template: chat rows fail, string rows still work
    out = run_adapter(adapter, gpt, [messages, "Hello"])
    assert isinstance(out[0], RowError) and "no chat template" in str(out[0])
    assert out[1]["finish_reason"] == "length"


def test_prompt_too_long(gpt: Path) -> None:
    long_prompt = "the cat sat on the mat " * 40  # > 128 - 8 tokens
    out = run_adapter(TextGeneration({}), gpt, [long_prompt, "Hello"])
    assert isinstance(out[0], RowError) and "truncate_prompt" in str(out[0])
    assert out[1]["generated_text"]
    out = run_adapter(TextGeneration({"truncate_prompt": True}), gpt, [long_prompt])
    assert out[0]["prompt_tokens"] == 128 - 8
    out = run_adapter(
        TextGeneration({"truncate_prompt": True, "max_length": 10}), gpt, [long_prompt]
    )
    assert out[0]["prompt_tokens"] == 10
    with pytest.raises(ConfigError, match="lower max_new_tokens"):
        load(TextGeneration({"max_new_tokens": 500}), gpt)


def test_bad_prompt_values() -> None:
    adapter = TextGeneration({})
    for value in (b"bytes", 3.5, {"role": "user"}):
        with pytest.raises(RowError):
            adapter.convert(value)


# ---------------------------------------------------------------------------- helpers
def test_finish_row_and_helpers(gpt: Path) -> None:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(gpt))
    ids = tok("the cat sat on the mat")["input_ids"]
    eos = tok.eos_token_id
    row = finish_row([*ids, eos, ids[0]], eos_ids={eos}, tokenizer=tok, stop=(), prompt_tokens=3)
    assert row == {
        "generated_text": "the cat sat on the mat",
        "finish_reason": "stop",
        "prompt_tokens": 3,
        "completion_tokens": len(ids) + 1,
    }
    row = finish_row(ids, eos_ids={eos}, tokenizer=tok, stop=(" on",))
    assert (row["generated_text"], row["finish_reason"]) == ("the cat sat", "stop")
    assert tok.decode(ids[: row["completion_tokens"]]).endswith(" on")
    row = finish_row(ids, eos_ids={eos}, tokenizer=tok, stop=(), forced_eos_at=None)
    assert row["finish_reason"] == "length"
    row = finish_row([*ids[:3], eos], eos_ids={eos}, tokenizer=tok, stop=(), forced_eos_at=4)
    assert row["finish_reason"] == "length"  # the eos BART forces at the budget's end
    ids_t, mask = pad_batch([[5, 6], [7]], pad_id=0, side="left", device="cpu")
    assert ids_t.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]
    assert row_seeds(1, [[1, 2]]) == row_seeds(1, [[1, 2]]) != row_seeds(2, [[1, 2]])


# ---------------------------------------------------------------------------- seq2seq
def test_seq2seq_matches_generate(bart: Path) -> None:
    import torch
    import transformers

    out = run_adapter(Text2TextGeneration({"max_new_tokens": 6}), bart, PROMPTS, batch_size=4)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(bart)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(bart))
    for prompt, row in zip(PROMPTS, out, strict=True):
        with torch.inference_mode():
            ref = model.generate(
                **tok(prompt, return_tensors="pt"), max_new_tokens=6, do_sample=False
            )
        assert row["generated_text"] == tok.decode(ref[0], skip_special_tokens=True)
        assert row["prompt_tokens"] == len(tok(prompt)["input_ids"])
        assert row["completion_tokens"] == ref.shape[1] - 1  # minus the decoder start token
        assert row["finish_reason"] == "stop"  # this random model says eos at once


def test_seq2seq_sampling_batch_independent(bart: Path) -> None:
    adapter = Summarization({"do_sample": True, "seed": 5, "max_new_tokens": 5})
    loaded = load(adapter, bart)
    first = run_adapter(adapter, loaded, PROMPTS, batch_size=1)
    shuffled = run_adapter(adapter, loaded, PROMPTS[::-1], batch_size=3)[::-1]
    assert first == shuffled
    # max_new_tokens reached: the model's forced final eos still reports "length"
    assert {r["finish_reason"] for r in first if r["completion_tokens"] == 5} <= {"length"}
    assert any(r["completion_tokens"] == 5 for r in first)


def test_seq2seq_prefixes(bart: Path, tmp_path: Path) -> None:
    params = {
        "summarization": {"prefix": "summarize: "},
        "translation_en_to_de": {"prefix": "translate English to German: "},
    }
    folder = _variant(bart, tmp_path / "t5ish", config={"task_specific_params": params})
    base = run_adapter(Text2TextGeneration({}), folder, ["the house is wonderful"])[0][
        "prompt_tokens"
    ]

    def tokens(adapter) -> int:
        return run_adapter(adapter, folder, ["the house is wonderful"])[0]["prompt_tokens"]

    loaded = load(Summarization({}), folder)
    assert loaded.extras["prefix"] == "summarize: "
    assert load(Translation({"source_lang": "en", "target_lang": "de"}), folder).extras[
        "prefix"
    ] == ("translate English to German: ")
    assert (
        load(Translation({"source_lang": "en", "target_lang": "fr"}), folder).extras["prefix"] == ""
    )
    assert load(Translation({"prefix": "x: "}), folder).extras["prefix"] == "x: "
    assert load(Text2TextGeneration({}), folder).extras["prefix"] == ""
    assert tokens(Summarization({})) > base
    assert tokens(Summarization({"prefix": ""})) == base


def test_seq2seq_input_limits(bart: Path, gpt: Path) -> None:
    long_text = "the cat sat on the mat " * 40  # > 128 tokens
    out = run_adapter(Text2TextGeneration({"max_new_tokens": 3}), bart, [long_text, "hi", 7])
    assert isinstance(out[0], RowError) and "at most 128" in str(out[0])
    assert out[1]["finish_reason"] in ("stop", "length")
    assert isinstance(out[2], RowError)
    out = run_adapter(
        Text2TextGeneration({"max_new_tokens": 3, "truncate_prompt": True}), bart, [long_text]
    )
    assert out[0]["prompt_tokens"] == 128
    with pytest.raises((ConfigError, ModelValidationError)):
        load(Text2TextGeneration({}), gpt)
