"""Generation: static vs continuous batching, prefix reuse, structured output, dedupe.

One Python process, one CPU thread, a random GPT-2 (4 x 256, 1,024-token context; built
offline by :func:`examples.tiny_llm.build_demo_llm`) with its end-of-text embedding scaled so
greedy outputs end at widely varying lengths (1 to ``max_new_tokens``). Each number is the best
of ``reps`` runs after a warm-up; the model's own compute, so the ratios are what hfspark's
generation path changes (Spark adds the same per-row overhead to every variant).

* ``static``: hfspark's path: length-sorted batches of 8, left padded, ``generate()``;
* ``continuous``: transformers 5 ``generate_batch()`` (paged cache, continuous batching) on
  the same prompts and budget; kept as a measurement only (hfspark uses it where it wins);
* ``prefix reuse``: a ~300-token shared instruction before short rows, ``reuse_prefix`` on/off;
* ``structured``: the same prompts, ``output_schema`` (xgrammar) vs free text;
* ``dedupe``: 30 % of the rows repeat another row, ``dedupe`` on/off (through the engine).

Example:
    $ HFSPARK_BENCH_TASKS=generation .venv/bin/python -m bench.run
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_generation"]

WORDS = (
    "the cat sat on the mat",
    "I love this movie",
    "boring and bad",
    "Spark runs pandas UDFs",
    "the weather in Paris is sunny",
    "machine learning needs data",
)
SCHEMA = {
    "type": "object",
    "required": ["sentiment", "stars"],
    "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}


def _model(work: Path) -> tuple[Path, Any]:
    import torch
    import transformers

    from examples.tiny_llm import build_demo_llm

    folder = build_demo_llm(work / "models" / "bench-llm", context=1024, width=256, layers=4)
    tuned = work / "models" / "bench-llm-eos"
    if not (tuned / "config.json").exists():
        model = transformers.AutoModelForCausalLM.from_pretrained(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():  # eos likelier in some states: outputs of very different lengths
            model.transformer.wte.weight[tok.eos_token_id] *= 4.0
        model.save_pretrained(tuned)
        tok.save_pretrained(tuned)
    return tuned, transformers.AutoTokenizer.from_pretrained(tuned)


def _rows(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"Review {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        for i in range(n)
    ]


def _best(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _adapter_run(adapter: Any, loaded: Any, texts: list[str], batch_size: int = 8) -> list[Any]:
    """hfspark's generation path without Spark: prepare, sort by length, forward in batches."""
    import torch

    features = adapter.prepare(loaded, [adapter.convert(t) for t in texts])
    order = sorted(range(len(features)), key=lambda k: len(features[k]["input_ids"]))
    out: list[Any] = [None] * len(features)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            batch = order[s : s + batch_size]
            for k, o in zip(
                batch, adapter.forward(loaded, [features[k] for k in batch]), strict=True
            ):
                out[k] = o
    return out


def _timed_generation(base: type, timer: list[Any]) -> type:
    """``base`` whose grammar processors add their time and row-steps to ``timer``."""

    class Timed(base):  # type: ignore[misc,valid-type]
        def constraint_processors(self, loaded: Any, batch_size: int) -> list[Any]:
            procs = super().constraint_processors(loaded, batch_size)

            def wrap(proc: Any) -> Any:
                def call(input_ids: Any, scores: Any) -> Any:
                    start = time.perf_counter()
                    out = proc(input_ids, scores)
                    timer[0] += time.perf_counter() - start
                    timer[1] += int(input_ids.shape[0])
                    return out

                return call

            return [wrap(p) for p in procs]

    return Timed


def _tokens(out: list[Any]) -> int:
    return sum(o["completion_tokens"] for o in out if isinstance(o, dict))


def _rate(rows: int, tokens: int, seconds: float) -> dict[str, float]:
    return {"rows_per_s": rows / seconds, "tokens_per_s": tokens / seconds, "seconds": seconds}


def run_generation(work: Path, *, reps: int = 2, quick: bool = False) -> dict[str, Any]:
    """Rows/s and tokens/s of each generation variant (see the module docstring)."""
    import logging

    import pyarrow as pa
    import torch
    from transformers import GenerationConfig

    from hfspark.tasks.text_generation import TextGeneration
    from hfspark.udfs import model_udf
    from hfspark.udfs.arrow import arrow_type
    from hfspark.udfs.engine import predict_batch
    from hfspark.udfs.executor import get_runtime

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    n, max_new = (16, 32) if quick else (64, 64)
    folder, tok = _model(work)
    texts = _rows(n)
    results: dict[str, Any] = {"model": "random GPT-2 4x256", "rows": n, "max_new_tokens": max_new}

    # static (hfspark) vs continuous batching, the same greedy budget
    static = TextGeneration({"max_new_tokens": max_new})
    loaded = static.load(folder, {}, "cpu", None)
    secs, out = _best(lambda: _adapter_run(static, loaded, texts), reps)
    lengths = [o["completion_tokens"] for o in out]
    results["static"] = _rate(n, sum(lengths), secs)
    results["output_lengths"] = {
        "min": min(lengths),
        "max": max(lengths),
        "mean": sum(lengths) / len(lengths),
    }
    ids = [tok(t)["input_ids"] for t in texts]
    config = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )

    def continuous() -> int:
        with torch.inference_mode():
            res = loaded.model.generate_batch(inputs=ids, generation_config=config, warmup=False)
        return sum(len(r.generated_tokens) for r in res.values())

    secs, cont_tokens = _best(continuous, max(1, reps - 1))
    results["continuous"] = _rate(n, cont_tokens, secs)
    results["continuous_vs_static"] = (
        results["continuous"]["tokens_per_s"] / results["static"]["tokens_per_s"]
    )

    # prefix reuse: a ~300-token shared instruction, short rows
    instruction = (
        "You are a careful annotator. Read the product review below and classify its "
        "sentiment as positive, negative or neutral, then rate it. "
    ) * 5
    prompts = [f"{instruction}\n{t}\nAnswer:" for t in texts]
    results["prefix_tokens"] = len(tok(instruction)["input_ids"])
    short = 8
    for name, reuse in (("prefix_off", False), ("prefix_on", None)):
        adapter = TextGeneration({"max_new_tokens": short, "reuse_prefix": reuse})
        loaded_p = adapter.load(folder, {}, "cpu", None)
        secs, out = _best(lambda a=adapter, lp=loaded_p: _adapter_run(a, lp, prompts), reps)
        results[name] = _rate(n, _tokens(out), secs)
        results[f"{name}_outputs"] = [o["generated_text"] for o in out]
    results["prefix_speedup"] = (
        results["prefix_on"]["rows_per_s"] / results["prefix_off"]["rows_per_s"]
    )
    results["prefix_same_outputs"] = results.pop("prefix_on_outputs") == results.pop(
        "prefix_off_outputs"
    )

    # structured vs free output, the same prompts and budget; the grammar's own time measured
    timer = [0.0, 0]
    timed = _timed_generation(TextGeneration, timer)
    for name, extra in (("free", {}), ("structured", {"output_schema": SCHEMA})):
        adapter = timed({"max_new_tokens": 48, "repetition_penalty": 1.5, **extra})
        loaded_s = adapter.load(folder, {}, "cpu", None)
        compile_start = time.perf_counter()
        adapter.constraint_processors(loaded_s, 1)  # compiles (once per worker) outside the timing
        compile_s = time.perf_counter() - compile_start
        timer[:] = [0.0, 0]
        secs, out = _best(lambda a=adapter, ls=loaded_s: _adapter_run(a, ls, texts), reps)
        results[name] = {
            **_rate(n, _tokens(out), secs),
            "valid_rows": sum(isinstance(o, dict) for o in out),
        }
        if extra:
            results["grammar_compile_s"] = compile_s
            results["constraint_ms_per_row_token"] = 1000 * timer[0] / max(1, timer[1])
            results["constraint_share"] = timer[0] / ((reps + 1) * secs) if secs else None

    # dedupe: 30 % duplicates, through the engine (one Arrow batch)
    rng = random.Random(1)
    k = round(0.3 * n)
    dup = texts[: n - k] + [rng.choice(texts[: n - k]) for _ in range(k)]
    rng.shuffle(dup)
    for name, on in (("dedupe_off", False), ("dedupe_on", True)):
        f = model_udf(
            str(folder),
            task="text-generation",
            device="cpu",
            batch_size=8,
            params={"max_new_tokens": max_new, "dedupe": on},
        )
        runtime = get_runtime(f.ref)
        target = arrow_type(f.returnType)
        secs, out = _best(
            lambda r=runtime, f=f, t=target: predict_batch(
                r, [pa.array(dup)], f.ref.options, t
            ).to_pylist(),
            reps,
        )
        results[name] = _rate(n, sum(o["completion_tokens"] for o in out), secs)
    results["duplicate_share"] = 1 - len(set(dup)) / len(dup)
    results["dedupe_speedup"] = (
        results["dedupe_on"]["rows_per_s"] / results["dedupe_off"]["rows_per_s"]
    )
    return results
