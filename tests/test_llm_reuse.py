"""Dedupe of identical prompts (fewer model calls, same outputs, through the UDF engine on one
Arrow batch) and shared-prefix reuse (the same greedy/seeded tokens as without it)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from hfspark.tasks._prefix import common_prefix_len
from hfspark.tasks.text_generation import TextGeneration
from tests.helpers.adapter_runner import load, run_adapter
from tests.helpers.llm_models import build_bart, build_gpt

INSTRUCTION = " ".join(["Spark runs pandas UDFs on Arrow batches. The cat sat on the mat."] * 8)
TEXTS = [
    "I love this movie",
    "bad",
    "The cat sat on the mat",
    "Spark runs pandas",
    "Hello world!",
    "What is the capital",
    "x",
    "0 1 2 3 4 5 6 7",
]
PROMPTS = [f"{INSTRUCTION}\nReview: {t}\nSentiment:" for t in TEXTS]


@pytest.fixture(scope="session")
def llm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.getbasetemp() / "llm-models"
    return {"gpt": build_gpt(root / "gpt"), "bart": build_bart(root / "bart")}


def _engine(folder: Path, task: str, rows: list, **options):
    """Outputs of one Arrow batch through the real engine, and the rows the model generated."""
    from hfspark.udfs import model_udf
    from hfspark.udfs.arrow import arrow_type
    from hfspark.udfs.engine import predict_batch
    from hfspark.udfs.executor import get_runtime

    f = model_udf(str(folder), task=task, device="cpu", **options)
    runtime = get_runtime(f.ref)
    before = runtime.loaded.extras.get("generated_rows", 0)
    out = predict_batch(
        runtime, [pa.array(rows, pa.string())], f.ref.options, arrow_type(f.returnType)
    )
    return out.to_pylist(), runtime.loaded.extras["generated_rows"] - before


@pytest.mark.parametrize(("task", "model"), [("text-generation", "gpt"), ("summarization", "bart")])
def test_dedupe_same_outputs_fewer_model_calls(llm_models, task, model) -> None:
    rng = random.Random(0)
    rows = [
        rng.choice(TEXTS[:5]) if rng.random() < 0.5 else f"{t} {i}" for i, t in enumerate(TEXTS * 3)
    ] + [None]
    distinct = len({r for r in rows if r is not None})
    params = {"max_new_tokens": 5}
    on, calls_on = _engine(llm_models[model], task, rows, batch_size=4, params=params)
    off, calls_off = _engine(
        llm_models[model], task, rows, batch_size=4, params={**params, "dedupe": False}
    )
    assert on == off and on[-1] is None
    assert calls_on == distinct < calls_off == len(rows) - 1
    # unseeded sampling is not deterministic: every row is generated
    _, sampled = _engine(llm_models[model], task, rows, params={**params, "do_sample": True})
    assert sampled == len(rows) - 1


def test_prefix_reuse_gives_the_same_tokens(llm_models) -> None:
    loaded = load(TextGeneration({}), llm_models["gpt"])
    ids = [loaded.tokenizer(p)["input_ids"] for p in PROMPTS]
    assert common_prefix_len(ids) >= 100
    for opts in (
        {"max_new_tokens": 8},
        {"max_new_tokens": 8, "do_sample": True, "seed": 3},
        {"choices": ["positive", "negative"], "max_new_tokens": 12},
    ):
        off = TextGeneration({**opts, "reuse_prefix": False})
        on = TextGeneration(opts)  # on by default: the prefix is over 32 tokens
        assert all("prefix" not in f for f in off.prepare(loaded, PROMPTS))
        assert {f["prefix"] for f in on.prepare(loaded, PROMPTS)} == {common_prefix_len(ids)}
        loaded_on = load(on, llm_models["gpt"])
        expected = run_adapter(off, loaded, PROMPTS, batch_size=3)
        assert run_adapter(on, loaded_on, PROMPTS, batch_size=3) == expected
        assert run_adapter(on, loaded_on, PROMPTS[::-1], batch_size=8)[::-1] == expected
        assert len(loaded_on.extras["prefix_caches"]) == 1  # one prefix, computed once
    short = TextGeneration({})  # a short common prefix: no reuse unless asked for
    assert all("prefix" not in f for f in short.prepare(loaded, ["Hello world", "Hello there"]))
    forced = TextGeneration({"reuse_prefix": True})
    assert {f["prefix"] for f in forced.prepare(loaded, ["Hello world", "Hello there"])} == {1}
