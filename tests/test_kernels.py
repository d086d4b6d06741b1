"""oneDNN Linear kernels on CPU (hfspark.udfs.kernels): real MiniLM, real tiny models, real Spark."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hfspark.errors import ConfigError
from hfspark.udfs.kernels import PackedLinear, use_onednn


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> tuple[Any, Any]:
    import transformers

    model = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


def _embed(model: Any, tok: Any, texts: list[str]) -> Any:
    import torch

    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).last_hidden_state


def test_onednn_matches_torch_and_keeps_the_parameters(minilm: tuple[Any, Any]) -> None:
    import torch

    model, tok = minilm
    texts = ["Spark runs pandas UDFs on Arrow batches.", "short", "a " * 40]
    want = _embed(model, tok, texts)
    packed = copy.deepcopy(model)
    params = dict(packed.named_parameters())
    report = use_onednn(packed, mode="onednn")
    assert report["kernels"] == "onednn" and report["layers"] == 6 * 6 + 1  # + the pooler
    query = packed.encoder.layer[0].attention.self.query
    assert isinstance(query, PackedLinear) and isinstance(query, torch.nn.Linear)
    assert dict(packed.named_parameters()) == params  # the same Parameter objects, no copies
    assert packed.state_dict().keys() == model.state_dict().keys()
    got = _embed(packed, tok, texts)
    assert float((got - want).abs().max()) < 5e-5 * float(want.abs().max())  # fp32 rounding
    x = torch.randn(4, 384, requires_grad=True)  # autograd: nn.Linear's own path
    assert torch.equal(query(x), torch.nn.functional.linear(x, query.weight, query.bias))


def test_auto_measures_and_aten_leaves_the_model(minilm: tuple[Any, Any]) -> None:
    import torch

    model, _ = minilm
    auto = use_onednn(copy.deepcopy(model), mode="auto")
    assert auto["kernels"] in ("onednn", "aten") and auto["gain"] > 0 and auto["diff"] < 1e-4
    assert (auto["kernels"] == "onednn") == (auto["gain"] >= 1.1)
    plain = copy.deepcopy(model)
    assert use_onednn(plain, mode="aten") == {
        "kernels": "aten",
        "layers": 0,
        "why": "cpu_kernels=aten",
    }
    assert not any(isinstance(m, PackedLinear) for m in plain.modules())
    half = copy.deepcopy(model).to(torch.bfloat16)  # only float32 layers are packed
    assert use_onednn(half, mode="onednn")["layers"] == 0


def test_tied_weights_stay_tied(tiny_models: dict[str, Path]) -> None:
    import transformers

    model = transformers.AutoModelForMaskedLM.from_pretrained(str(tiny_models["fill-mask"])).eval()
    decoder = model.get_output_embeddings()
    assert decoder.weight is model.get_input_embeddings().weight
    use_onednn(model, mode="onednn")
    assert isinstance(model.get_output_embeddings(), PackedLinear)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_the_option_is_checked_and_keys_the_cache(tiny_models: dict[str, Path]) -> None:
    from hfspark.udfs import model_udf

    with pytest.raises(ConfigError, match="cpu_kernels"):
        model_udf(str(tiny_models["feature-extraction"]), cpu_kernels="mkl")
    keys = {
        model_udf(str(tiny_models["feature-extraction"]), cpu_kernels=k).ref.cache_key
        for k in ("auto", "onednn", "aten")
    }
    assert len(keys) == 3


def test_spark_workers_report_the_kernels_and_agree(spark: Any, minilm_dir: Path) -> None:
    from hfspark.jobs.startup import describe, worker_startup
    from hfspark.udfs import model_udf

    df = spark.createDataFrame([(f"row {i} " * (i % 7 + 1),) for i in range(16)], "text string")
    fast = model_udf(str(minilm_dir), task="feature-extraction", cpu_kernels="onednn")
    plain = model_udf(str(minilm_dir), task="feature-extraction", cpu_kernels="aten")
    rows = df.select(fast("text").alias("a"), plain("text").alias("b")).collect()
    assert len(rows) == 16
    for row in rows:
        assert max(abs(x - y) for x, y in zip(row.a, row.b, strict=True)) < 1e-4
    startup = worker_startup(spark)
    assert "onednn" in startup["cpu_kernels"] and "CPU Linear layers on" in describe(startup)
