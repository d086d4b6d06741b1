"""MLflow interop both ways: mlflow.transformers <-> hfspark.flavor (needs mlflow installed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hfspark.errors import ConfigError
from hfspark.flavor import load_model, read_info, save_model

pytest.importorskip("mlflow")
import mlflow  # noqa: E402
import mlflow.transformers  # noqa: E402

#: tiny model -> pipeline task
MODELS = {
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "fill-mask": "fill-mask",
    "text-generation": "text-generation",
    "asr-whisper": "automatic-speech-recognition",
    "image-classification": "image-classification",
}
REQS = ["transformers", "torch"]  # skips MLflow's slow requirement inference


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory):
    """hfspark cache and MLflow tracking inside the test's temp folder."""
    keys = ("HFSPARK_CACHE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["HFSPARK_CACHE_DIR"] = str(tmp_path_factory.mktemp("hfspark-cache"))
    # a file store: a sqlite store spends seconds on its schema migrations
    os.environ["MLFLOW_TRACKING_URI"] = tmp_path_factory.mktemp("mlruns").as_uri()
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def pipes(tiny_models: dict[str, Path]) -> dict[str, Any]:
    import transformers

    return {
        name: transformers.pipeline(task, model=str(tiny_models[name]), device="cpu")
        for name, task in MODELS.items()
    }


def _sample(name: str) -> Any:
    if name.startswith("asr"):
        t = np.arange(16000) / 16000
        return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if name == "image-classification":
        from PIL import Image

        rng = np.random.default_rng(0)
        return Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    if name == "fill-mask":
        return "The cat sat on the [MASK]."
    return "My name is Sarah and I live in London."


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


def _run(pipe: Any, name: str) -> Any:
    x = _sample(name)
    return _plain(pipe(x.copy() if isinstance(x, np.ndarray) else x))


@pytest.mark.parametrize("name", list(MODELS))
def test_mlflow_saved_model_loads_in_hfspark(
    name: str, pipes: dict[str, Any], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    pipe = pipes[name]
    path = tmp_path / "mlflow-model"
    mlflow.transformers.save_model(pipe, str(path), pip_requirements=REQS)

    info = read_info(path)
    assert info.flavor == "mlflow" and info.task == MODELS[name]
    assert info.content_hash == read_info(tiny_models[name]).content_hash
    assert set(info.components) == set(
        mlflow.models.Model.load(str(path)).flavors["transformers"]["components"]
    )
    assert info.metadata["hfspark"]["content_hash"] == info.content_hash
    loaded = load_model(path, device="cpu")
    assert _run(loaded, name) == _run(pipe, name)


def test_mlflow_model_config(pipes: dict[str, Any], tmp_path: Path) -> None:
    """MLflow's pyfunc model_config becomes inference_config where hfspark has the option.

    (MLflow 3.17's folder-copy save, ``save_model("<folder>", task=...)``, fails on
    transformers 5.24 inside MLflow itself, so it is not tested here.)
    """
    path = tmp_path / "ckpt"
    mlflow.transformers.save_model(
        pipes["text-classification"],
        str(path),
        pip_requirements=REQS,
        model_config={"top_k": 2, "batch_size": 8},
    )
    info = read_info(path)
    assert info.flavor == "mlflow" and info.task == "text-classification"
    from hfspark.flavor.taskinfo import adapter_class

    if adapter_class("text-classification") is not None:
        assert info.inference_config == {"top_k": 2}
    parts = load_model(path, return_type="components", device="cpu")
    assert type(parts["model"]).__name__ == "BertForSequenceClassification"


@pytest.mark.parametrize("name", list(MODELS))
def test_hfspark_saved_model_loads_in_mlflow(
    name: str, pipes: dict[str, Any], tmp_path: Path
) -> None:
    pipe = pipes[name]
    info = save_model(pipe, tmp_path / "hf-model")
    loaded = mlflow.transformers.load_model(str(info.root), device=-1)
    assert type(loaded).__name__ == type(pipe).__name__
    assert _run(loaded, name) == _run(pipe, name)
    parts = mlflow.transformers.load_model(str(info.root), return_type="components")
    assert type(parts["model"]).__name__ == type(pipe.model).__name__


def test_hfspark_saved_model_pyfunc_predict(pipes: dict[str, Any], tmp_path: Path) -> None:
    info = save_model(pipes["text-classification"], tmp_path / "tc")
    pred = mlflow.pyfunc.load_model(str(info.root)).predict(["I love this movie"])
    want = pipes["text-classification"]("I love this movie")[0]
    assert pred["label"][0] == want["label"]
    assert pred["score"][0] == pytest.approx(want["score"], abs=1e-5)


def test_prompt_template_applied_by_mlflow(pipes: dict[str, Any], tmp_path: Path) -> None:
    template = "Answer briefly: {prompt}"
    info = save_model(pipes["text-generation"], tmp_path / "gen", prompt_template=template)
    pred = mlflow.pyfunc.load_model(str(info.root)).predict(["Hello world"])
    want = pipes["text-generation"](template.format(prompt="Hello world"), return_full_text=False)[
        0
    ]["generated_text"]
    assert pred == [want.strip()]  # MLflow strips the generated text


def test_removed_pipeline_tasks_load_as_components_in_mlflow(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    info = save_model(str(tiny_models["question-answering"]), tmp_path / "qa")
    doc = mlflow.models.Model.load(str(info.root))
    assert "python_function" not in doc.flavors  # transformers 5 has no QA pipeline to serve
    parts = mlflow.transformers.load_model(str(info.root), return_type="components")
    assert type(parts["model"]).__name__ == "BertForQuestionAnswering"
    with pytest.raises(ConfigError, match="return_type='components'"):
        load_model(info.root)


def test_translation_model_from_mlflow_keeps_language_pair(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    info = save_model(
        str(tiny_models["text2text-generation"]), tmp_path / "tr", task="translation_en_to_de"
    )
    flavor = mlflow.models.Model.load(str(info.root)).flavors["transformers"]
    assert flavor["task"] == "translation_en_to_de"
    parts = mlflow.transformers.load_model(str(info.root), return_type="components")
    assert type(parts["model"]).__name__ == "BartForConditionalGeneration"


def test_runs_uri(pipes: dict[str, Any], tmp_path: Path) -> None:
    """A model logged as run artifacts is read through a runs:/ URI (copied into the cache)."""
    info = save_model(pipes["fill-mask"], tmp_path / "fm")
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # no global run state
    run = client.create_run(client.create_experiment("hfspark-flavor-tests"))
    client.log_artifacts(run.info.run_id, str(info.root), "model")
    client.set_terminated(run.info.run_id)
    uri = f"runs:/{run.info.run_id}/model"
    remote = read_info(uri)
    assert remote.uri == uri and remote.root != info.root
    assert remote.content_hash == info.content_hash and remote.flavor == "hfspark"
    assert read_info(uri).root == remote.root  # cached: no second download


def test_missing_run_is_not_retried() -> None:
    from hfspark.errors import ModelStoreError

    with pytest.raises(ModelStoreError, match="runs:/0123456789abcdef/model: not found"):
        read_info("runs:/0123456789abcdef/model")
