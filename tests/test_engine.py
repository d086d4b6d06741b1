"""The engine's data path without Spark: batching plan, row isolation, OOM back-off, row counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hfspark.errors import RowError
from hfspark.udfs.batching import plan_batches
from hfspark.udfs.engine import predict_frame, rows_from_columns
from hfspark.udfs.executor import Runtime, choose_device, choose_dtype
from hfspark.udfs.options import UdfOptions


def test_plan_batches_sorts_and_respects_budget() -> None:
    lengths = [50, 3, 40, 3, 7, 100, 2]
    batches = plan_batches(lengths, batch_size=3, max_tokens=120)
    assert sorted(p for b in batches for p in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[p] for p in b) * len(b) <= 120
    flat = [lengths[p] for b in batches for p in b]
    assert flat == sorted(flat)


def test_rows_from_columns_shapes() -> None:
    assert rows_from_columns([pd.Series(["a", None])], ("text",)) == ["a", None]
    frame = pd.DataFrame({"question": ["q", None], "context": ["c", "d"]})
    assert rows_from_columns([frame], ("question", "context")) == [
        {"question": "q", "context": "c"}, None]
    two = rows_from_columns([pd.Series(["q"]), pd.Series(["c"])], ("question", "context"))
    assert two == [{"question": "q", "context": "c"}]


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
        return self.inner.forward(loaded, [{k: v for k, v in f.items() if k != "poison"} for f in features])

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
    out = predict_frame(runtime, [pd.Series(texts)], opts)
    assert len(out) == len(texts)
    assert out["error"][1].startswith("ValueError: poisoned row")
    assert out["label"][2] is None and out["error"][2] is None
    assert all(out["label"][i] in ("NEGATIVE", "POSITIVE") for i in (0, 3, 4, 5))
    assert max(runtime.adapter.calls) > 2  # a big batch was tried, then halved
    clean = predict_frame(runtime, [pd.Series(["terrible film"])], opts)
    assert abs(clean["score"][0] - out["score"][3]) < 1e-6  # same result after the back-off
    with pytest.raises(RowError, match="Row 1"):
        predict_frame(runtime, [pd.Series(texts)], UdfOptions(batch_size=8))


def test_device_and_dtype_choice_on_cpu() -> None:
    import torch

    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert choose_dtype("auto", "cpu") == torch.float32
    assert choose_dtype("bfloat16", "cpu") == torch.bfloat16
