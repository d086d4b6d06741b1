"""The engine's data path without Spark: batching plan, row isolation, OOM back-off, row counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfspark.errors import RowError
from hfspark.udfs.arrow import BadInput, arrow_rows, arrow_type
from hfspark.udfs.batching import plan_batches
from hfspark.udfs.engine import predict_batch
from hfspark.udfs.executor import Runtime, choose_device, choose_dtype
from hfspark.udfs.options import UdfOptions
from hfspark.udfs.reference import output_type


def predict(runtime: Runtime, texts: list[Any], opts: UdfOptions) -> list[Any]:
    """The engine on one Arrow batch of texts, as Python values (one per row)."""
    target = arrow_type(output_type(runtime.adapter, opts))
    out = predict_batch(runtime, [pa.array(texts, type=pa.string())], opts, target)
    assert out.type == target and len(out) == len(texts)
    return out.to_pylist()


def test_plan_batches_sorts_and_respects_budget() -> None:
    lengths = [50, 3, 40, 3, 7, 100, 2]
    batches = plan_batches(lengths, batch_size=3, max_tokens=120)
    assert sorted(p for b in batches for p in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[p] for p in b) * len(b) <= 120
    flat = [lengths[p] for b in batches for p in b]
    assert flat == sorted(flat)


def _plan_cost(lengths: list[int], batches: list[list[int]], call_cost: float) -> float:
    return sum(call_cost + len(b) * max(lengths[p] for p in b) for b in batches)


def _best_cost(
    sizes: list[int], batch_size: int, max_tokens: int | None, call_cost: float
) -> float:
    """Brute force over every way to cut the sorted rows into consecutive batches."""
    from itertools import product

    n, best = len(sizes), float("inf")
    if n == 0:
        return 0.0
    for cuts in product((False, True), repeat=max(0, n - 1)):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        groups = [sizes[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        if all(
            len(g) == 1
            or (len(g) <= batch_size and (max_tokens is None or len(g) * max(g) <= max_tokens))
            for g in groups
        ):
            best = min(best, sum(call_cost + len(g) * max(g) for g in groups))
    return best


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=9),
    batch_size=st.integers(1, 5),
    max_tokens=st.one_of(st.none(), st.integers(1, 900)),
    call_cost=st.floats(0, 64),
)
def test_cost_plan_is_optimal_and_valid(
    lengths: list[int], batch_size: int, max_tokens: int | None, call_cost: float
) -> None:
    plan = plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens, call_cost=call_cost)
    assert sorted(p for b in plan for p in b) == list(range(len(lengths)))
    for b in plan:
        assert len(b) == 1 or (
            len(b) <= batch_size
            and (max_tokens is None or len(b) * max(lengths[p] for p in b) <= max_tokens)
        )
    greedy = plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens)
    cost = _plan_cost(lengths, plan, call_cost)
    assert cost <= _plan_cost(lengths, greedy, call_cost) + 1e-9
    assert cost == pytest.approx(_best_cost(sorted(lengths), batch_size, max_tokens, call_cost))


def test_cost_plan_extremes() -> None:
    lengths = [5, 98, 7, 100, 6, 99]
    # a free call: only equal-length rows share a batch
    assert plan_batches(lengths, batch_size=8, max_tokens=None, call_cost=0) == [
        [0],
        [4],
        [2],
        [1],
        [5],
        [3],
    ]
    # a costly call: full batches, as the greedy plan
    assert plan_batches(lengths, batch_size=3, max_tokens=None, call_cost=1e6) == plan_batches(
        lengths, batch_size=3, max_tokens=None
    )
    # the encoder default: short rows together, long rows together
    assert plan_batches(lengths, batch_size=8, max_tokens=None, call_cost=8) == [
        [0, 4, 2],
        [1, 5, 3],
    ]


def test_arrow_rows_shapes() -> None:
    assert arrow_rows([pa.array(["a", None])], ("text",)) == ["a", None]
    struct = pa.array([{"question": "q", "context": "c"}, None, {"question": None, "context": "d"}])
    assert arrow_rows([struct], ("question", "context")) == [
        {"question": "q", "context": "c"},
        None,
        None,
    ]  # a null struct, or a null first field
    two = arrow_rows([pa.array(["q"]), pa.array(["c"])], ("question", "context"))
    assert two == [{"question": "q", "context": "c"}]
    bad = pa.array([b"ok", b"A\xffB", None], type=pa.binary()).view(pa.string())
    rows = arrow_rows([bad], ("text",))
    assert rows[0] == "ok" and rows[2] is None and isinstance(rows[1], BadInput)
    assert "invalid UTF-8" in rows[1].reason and "make_valid_utf8" in rows[1].reason


class _Flaky:
    """A real text-classification adapter whose forward fails like a GPU out of memory above
    ``limit`` rows, and on rows containing ``poison``."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit, self.calls = inner, limit, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def forward(self, loaded: Any, features: list[Any]) -> list[Any]:
        import torch

        self.calls.append(len(features))
        if len(features) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if any(f.get("poison") for f in features):
            raise ValueError("poisoned row")
        return self.inner.forward(
            loaded, [{k: v for k, v in f.items() if k != "poison"} for f in features]
        )

    def prepare(self, loaded: Any, items: list[Any]) -> list[Any]:
        feats = self.inner.prepare(loaded, items)
        return [dict(f, poison="poison" in str(t)) for f, t in zip(feats, items, strict=True)]


@pytest.fixture(scope="module")
def runtime(tiny_models: dict[str, Path]) -> Runtime:
    import torch

    from hfspark.tasks import get_task

    adapter = _Flaky(get_task("text-classification")(), limit=2)
    loaded = adapter.inner.load(tiny_models["text-classification"], {}, "cpu", torch.float32)
    return Runtime(adapter=adapter, loaded=loaded, device="cpu", dtype=torch.float32, nbytes=0)


def test_oom_halves_the_batch_and_bad_rows_are_isolated(runtime: Runtime) -> None:
    texts = ["I love this movie", "poison here", None, "terrible film", "hello world", "the cat"]
    opts = UdfOptions(batch_size=8, errors="column")
    out = predict(runtime, texts, opts)
    assert out[1]["error"].startswith("ValueError: poisoned row") and out[1]["label"] is None
    assert out[2] is None  # a null row gives a null struct, not a struct of nulls
    assert all(out[i]["label"] in ("NEGATIVE", "POSITIVE") for i in (0, 3, 4, 5))
    assert max(runtime.adapter.calls) > 2  # a big batch was tried, then halved
    clean = predict(runtime, ["terrible film"], opts)
    assert abs(clean[0]["score"] - out[3]["score"]) < 1e-6  # same result after the back-off
    with pytest.raises(RowError, match="Row 1"):
        predict(runtime, texts, UdfOptions(batch_size=8))


def test_engine_plans_by_call_cost_on_cpu(runtime: Runtime) -> None:
    """An encoder task on CPU cuts batches by cost (short and long rows apart); a large
    call_cost fills batches; the results are the same either way."""
    from hfspark.tasks import get_task

    assert get_task("text-classification").cpu_call_cost == 8
    assert get_task("text-generation").cpu_call_cost is None  # generation fills batches
    texts = ["good", "bad", "fine", " ".join(["word"] * 30), " ".join(["word"] * 31)]
    adapter = runtime.adapter
    adapter.limit = 100
    try:
        adapter.calls.clear()
        by_cost = predict(runtime, texts, UdfOptions(batch_size=8))
        assert sorted(adapter.calls) == [2, 3]
        adapter.calls.clear()
        full = predict(runtime, texts, UdfOptions(batch_size=8, call_cost=1e6))
        assert adapter.calls == [5]
    finally:
        adapter.limit = 2
    assert [r["label"] for r in by_cost] == [r["label"] for r in full]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(by_cost, full, strict=True)) < 1e-5


def test_device_and_dtype_choice_on_cpu() -> None:
    import torch

    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert choose_dtype("auto", "cpu") == torch.float32
    assert choose_dtype("bfloat16", "cpu") == torch.bfloat16
