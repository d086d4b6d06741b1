"""The ONNX Runtime engine: parity with torch per task and model family, the check, light workers.

Everything is real: models are exported with torch's exporter and run in ONNX Runtime; the
Spark test runs a fresh local session whose worker must never import torch.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from hfspark.errors import ConfigError
from hfspark.flavor import save_model
from hfspark.tasks._graph import ONNX_MODEL_TYPES
from hfspark.udfs.engine import predict_rows
from hfspark.udfs.executor import clear_cache, get_runtime
from hfspark.udfs.options import UdfOptions
from hfspark.udfs.reference import resolve_model
from tests.helpers.tiny_models import MAX_LEN, bert_tokenizer, wordpiece_vocab

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "I love this movie, it is great and wonderful.",
    "bad",
    "The weather in Paris is sunny today. " * 6,
    "John works for Google in Berlin.",
]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFSPARK_CACHE_DIR", str(tmp_path / "cache"))
    clear_cache()
    yield
    clear_cache()


def _both(folder: Path, task: str, rows: list, **params) -> tuple[list, list, str]:
    """(torch results, onnx results, the engine the onnx runtime ended up on)."""
    out = {}
    for engine in ("torch", "onnx"):
        clear_cache()
        ref = resolve_model(
            str(folder), task=task, options=UdfOptions(engine=engine, params=params)
        )
        runtime = get_runtime(ref)
        results, errors = predict_rows(runtime, rows, ref.options)
        assert errors == [None] * len(rows)
        out[engine] = (results, runtime.engine)
    assert out["torch"][1] == "torch"
    return out["torch"][0], out["onnx"][0], out["onnx"][1]


def _close(a, b, tol: float = 1e-5) -> None:
    """Same structure, same strings and ints, floats within ``tol``."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, tol)
    elif isinstance(a, float):
        assert abs(a - b) <= tol, (a, b)
    else:
        assert a == b


# ------------------------------------------------------------------ every encoder task
TASK_ROWS = {
    "text-classification": (TEXTS, {}),
    "token-classification": (TEXTS, {}),
    "fill-mask": (["the [MASK] is sunny today.", "[MASK] works for google."], {"top_k": 3}),
    "question-answering": (
        [{"question": "Where does John work?", "context": "John works for Google in Berlin."}],
        {},
    ),
    "zero-shot-classification": (TEXTS[:2], {"candidate_labels": "sports, politics, movies"}),
    "feature-extraction": (TEXTS, {}),
}


@pytest.mark.parametrize("task", sorted(TASK_ROWS))
def test_task_parity(tiny_models: dict[str, Path], task: str) -> None:
    rows, params = TASK_ROWS[task]
    torch_out, onnx_out, engine = _both(tiny_models[task], task, rows, **params)
    assert engine == "onnx"
    _close(torch_out, onnx_out)


# ------------------------------------------------------------------ model families
def _family(kind: str, out: Path, task: str) -> Path:
    """A tiny random model of the family ``kind`` with the test WordPiece tokenizer."""
    torch.manual_seed(0)
    common = dict(
        vocab_size=len(wordpiece_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN + 2,
        pad_token_id=0,
        num_labels=3,
    )
    configs = {
        "roberta": transformers.RobertaConfig(**common),
        "xlm-roberta": transformers.XLMRobertaConfig(**common),
        "camembert": transformers.CamembertConfig(**common),
        "electra": transformers.ElectraConfig(embedding_size=16, **common),
        "deberta-v2": transformers.DebertaV2Config(**common),
        "distilbert": transformers.DistilBertConfig(
            vocab_size=common["vocab_size"],
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=MAX_LEN,
            pad_token_id=0,
            num_labels=3,
        ),
    }
    auto = (
        transformers.AutoModelForSequenceClassification
        if task == "text-classification"
        else transformers.AutoModel
    )
    model = auto.from_config(configs[kind]).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    bert_tokenizer().save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "kind", ["roberta", "xlm-roberta", "camembert", "distilbert", "electra", "deberta-v2"]
)
def test_family_parity(tmp_path: Path, kind: str) -> None:
    assert kind in ONNX_MODEL_TYPES  # engine="auto" takes ONNX Runtime for what is tested here
    for task in ("text-classification", "feature-extraction"):
        folder = _family(kind, tmp_path / task, task)
        torch_out, onnx_out, engine = _both(folder, task, TEXTS)
        assert engine == "onnx", (kind, task)
        _close(torch_out, onnx_out)


def test_real_minilm_embeddings(minilm_dir: Path) -> None:
    texts = [*TEXTS, "Spark runs pandas UDFs on Arrow batches."] * 3
    torch_out, onnx_out, engine = _both(minilm_dir, "feature-extraction", texts)
    assert engine == "onnx"
    a, b = np.array(torch_out), np.array(onnx_out)
    assert a.shape == (len(texts), 384)
    assert float((a * b).sum(1).min()) >= 1 - 1e-5
    assert float(np.abs(a - b).max()) < 1e-4


def test_graph_traced_with_eager_attention(minilm_dir: Path, tmp_path: Path) -> None:
    """The export traces eager attention (no SDPA NaN guards) and gives the model its kernel back."""
    import onnx

    from hfspark.tasks import get_task
    from hfspark.tasks._export import export_verified

    adapter = get_task("feature-extraction")({})
    loaded = adapter.load(minilm_dir, {}, "cpu", torch.float32)
    assert loaded.model.config._attn_implementation == "sdpa"
    path = tmp_path / f"{adapter.graph_name()}.onnx"
    record = export_verified(adapter, loaded, path, minilm_dir)
    assert record["passed"] and record["max_diff"] <= 1e-4
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "IsNaN" not in ops and "Softmax" in ops
    assert loaded.model.config._attn_implementation == "sdpa"  # torch keeps its own kernel


# ------------------------------------------------------------------ save, check, fall back
def test_save_onnx_and_mlflow_loads(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "sst"
    save_model(str(tiny_models["text-classification"]), dest, task="text-classification", onnx=True)
    graphs = sorted((dest / "onnx").glob("*.onnx"))
    assert len(graphs) == 1
    record = json.loads(graphs[0].with_suffix(".json").read_text())
    assert record["passed"] and record["max_diff"] <= record["tolerance"] == 1e-4
    assert record["light_tokenizer"] is True

    ref = resolve_model(str(dest), options=UdfOptions(engine="onnx"))
    runtime = get_runtime(ref)
    assert runtime.engine == "onnx" and Path(runtime.loaded.model.path) == graphs[0]
    assert not (Path(os.environ["HFSPARK_CACHE_DIR"]) / "onnx").exists()  # nothing exported

    import mlflow

    pipe = mlflow.transformers.load_model(str(dest))
    assert (
        pipe("I love it")[0]["label"]
        == predict_rows(runtime, ["I love it"], ref.options)[0][0]["label"]
    )


def test_cli_save_onnx(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from hfspark.cli import main

    dest = tmp_path / "ner"
    assert main(["save", str(tiny_models["token-classification"]), str(dest), "--onnx"]) == 0
    assert [p.suffix for p in sorted((dest / "onnx").iterdir())] == [".json", ".onnx"]


def test_broken_graph_falls_back_to_torch(
    tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx
    from onnx import numpy_helper

    dest = tmp_path / "sst"
    save_model(str(tiny_models["text-classification"]), dest, task="text-classification", onnx=True)
    graph_path = next((dest / "onnx").glob("*.onnx"))
    graph = onnx.load(str(graph_path))
    for init in graph.graph.initializer:  # a deliberately broken graph: the head's weights x3
        if "classifier" in init.name and init.name.endswith("weight"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3.0, init.name))
            break
    else:
        pytest.fail("no classifier weight in the graph")
    onnx.save(graph, str(graph_path))

    expected = predict_rows(
        get_runtime(resolve_model(str(dest), options=UdfOptions())), TEXTS, UdfOptions()
    )
    clear_cache()
    ref = resolve_model(str(dest), options=UdfOptions(engine="onnx"))
    with caplog.at_level(logging.WARNING, logger="hfspark.onnx"):
        runtime = get_runtime(ref)
    assert runtime.engine == "torch"
    assert predict_rows(runtime, TEXTS, ref.options) == expected
    refused = [
        r.getMessage() for r in caplog.records if "not using the ONNX graph" in r.getMessage()
    ]
    assert len(refused) == 1 and "tolerance 0.0001" in refused[0] and "running torch" in refused[0]
    # the refusal is recorded: the next worker runs torch without checking again
    clear_cache()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hfspark.onnx"):
        assert get_runtime(ref).engine == "torch"
    assert not any("Loading" in r.getMessage() for r in caplog.records)
    records = list((Path(os.environ["HFSPARK_CACHE_DIR"]) / "onnx" / "verified").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["passed"] is False


# ------------------------------------------------------------------ driver-side choice
def test_engine_checked_on_the_driver(tiny_models: dict[str, Path]) -> None:
    gen = tiny_models["text-generation"]
    with pytest.raises(
        ConfigError,
        match="engine='onnx' cannot run this model: task 'text-generation' runs on torch",
    ):
        resolve_model(str(gen), task="text-generation", options=UdfOptions(engine="onnx"))
    with pytest.raises(ConfigError, match="bf16 is torch's"):
        resolve_model(
            str(tiny_models["text-classification"]),
            task="text-classification",
            options=UdfOptions(engine="onnx", torch_dtype="bfloat16"),
        )
    auto = UdfOptions(engine="auto")
    assert resolve_model(str(gen), task="text-generation", options=auto).engine == "torch"
    assert (
        resolve_model(
            str(tiny_models["text-classification"]), task="text-classification", options=auto
        ).engine
        == "auto"
    )
    on_gpu = UdfOptions(engine="auto", device="cuda")
    assert (
        resolve_model(
            str(tiny_models["text-classification"]), task="text-classification", options=on_gpu
        ).engine
        == "torch"
    )


# ------------------------------------------------------------------ Spark: a light worker
_SPARK_APP = """
import json, os, sys
from pathlib import Path
from pyspark.sql import functions as F
from pyspark.sql.functions import ArrowUDFType, arrow_udf
from hfspark import local_spark, model_udf

folder, stats = sys.argv[1], sys.argv[2]
spark = local_spark("local[1]", conf={
    "spark.executorEnv.HFSPARK_WORKER_PRELOAD": "onnx,hfspark",
    "spark.executorEnv.HFSPARK_STATS_DIR": stats,
})
df = spark.createDataFrame([(t,) for t in %r], "text string").coalesce(1)
out = {}
for engine in ("onnx", "auto", "torch"):
    f = model_udf(folder, task="text-classification", engine=engine)
    out[engine] = [r[0].asDict(recursive=True) for r in df.select(f("text")).collect()]
    if engine == "auto":  # the same worker, right after two ONNX UDFs: no torch imported
        import pyarrow as pa

        @arrow_udf("string", ArrowUDFType.SCALAR_ITER)
        def probe(batches):
            for b in batches:
                info = json.dumps({"pid": os.getpid(), "torch": "torch" in sys.modules})
                yield pa.array([info] * len(b))

        out["probe"] = sorted({json.loads(r[0]) ["pid"]: json.loads(r[0]) for r in df.select(probe("text")).collect()}.values(), key=str)
print("RESULT " + json.dumps(out))
spark.stop()
"""


@pytest.mark.slow
def test_spark_onnx_worker_never_imports_torch(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(_SPARK_APP % (TEXTS,)))
    stats = tmp_path / "stats"
    folder = tmp_path / "sst"
    save_model(
        str(tiny_models["text-classification"]), folder, task="text-classification", onnx=True
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HFSPARK_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(app), str(folder), str(stats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    _close(out["onnx"], out["torch"])
    assert out["auto"] == out["onnx"]
    assert [p["torch"] for p in out["probe"]] == [False]
    loads = [x.split("\t") for x in (stats / "loads.log").read_text().splitlines()]
    onnx_pids = {pid for pid, _, device, _ in loads if device == "cpu/onnx"}
    assert onnx_pids == {str(out["probe"][0]["pid"])}
