"""hfspark.flavor: save/load round trips for every tiny model, MiniLM, validation, atomicity.

MLflow interop is in test_flavor_interop.py, remote stores in test_flavor_store.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hfspark.errors import (
    ConfigError,
    ModelValidationError,
    UnknownTaskError,
    UnsafeModelError,
)
from hfspark.flavor import ModelInfo, load_model, read_info, save_model

REPO = Path(__file__).resolve().parents[1]

#: tiny model -> transformers pipeline task (the tasks transformers 5 still has pipelines for).
PIPELINE_MODELS = {
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "fill-mask": "fill-mask",
    "zero-shot-classification": "zero-shot-classification",
    "feature-extraction": "feature-extraction",
    "text-generation": "text-generation",
    "asr-whisper": "automatic-speech-recognition",
    "asr-ctc": "automatic-speech-recognition",
    "image-classification": "image-classification",
    "audio-classification": "audio-classification",
}
#: tiny model -> the task hfspark infers from its folder.
ALL_MODELS = {
    **PIPELINE_MODELS,
    "question-answering": "question-answering",
    "text2text-generation": "text2text-generation",
}


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Keep hfspark's cache (remote copies, weight hashes) inside the test's temp folder."""
    old = os.environ.get("HFSPARK_CACHE_DIR")
    os.environ["HFSPARK_CACHE_DIR"] = str(tmp_path_factory.mktemp("hfspark-cache"))
    yield
    if old is None:
        os.environ.pop("HFSPARK_CACHE_DIR", None)
    else:
        os.environ["HFSPARK_CACHE_DIR"] = old


@pytest.fixture()
def copy_tiny(tiny_models: dict[str, Path], tmp_path: Path):
    """Copy a tiny model folder so that a test may damage it."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny_models[name], tmp_path / f"src-{name}"))

    return copy


def _sample(name: str) -> tuple[Any, dict]:
    """One input (and call kwargs) for the pipeline of a tiny model."""
    rng = np.random.default_rng(0)
    if name.startswith(("asr", "audio")):
        t = np.arange(16000) / 16000
        return {
            "raw": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            "sampling_rate": 16000,
        }, {}
    if name == "image-classification":
        from PIL import Image

        return Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), {}
    if name == "fill-mask":
        return "The cat sat on the [MASK].", {}
    if name == "zero-shot-classification":
        return "I love this movie", {"candidate_labels": ["positive", "negative"]}
    if name == "text-generation":
        return "Hello world", {}
    return "My name is Sarah and I live in London.", {}


def _plain(value: Any) -> Any:
    """Outputs made comparable: arrays to lists, floats rounded."""
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
    x, kwargs = _sample(name)
    if isinstance(x, dict):
        x = dict(x)  # the ASR pipeline pops keys of its input
    return _plain(pipe(x, **kwargs))


def _mlmodel(root: Path) -> dict:
    return yaml.safe_load((root / "MLmodel").read_text())


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", list(PIPELINE_MODELS))
def test_pipeline_round_trip(name: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import transformers

    task = PIPELINE_MODELS[name]
    pipe = transformers.pipeline(task, model=str(tiny_models[name]), device="cpu")
    expected = _run(pipe, name)
    info = save_model(pipe, tmp_path / "saved")

    assert isinstance(info, ModelInfo) and info.flavor == "hfspark"
    assert info.task == task and info.root == tmp_path / "saved"
    assert len(info.content_hash) == 64
    doc = _mlmodel(info.root)
    flavor = doc["flavors"]["transformers"]
    assert flavor["task"] == task and flavor["model_binary"] == "model"
    assert flavor["instance_type"] == type(pipe).__name__
    assert flavor["pipeline_model_type"] == type(pipe.model).__name__
    assert flavor["framework"] == "pt" and flavor["torch_dtype"] == "torch.float32"
    for comp in flavor["components"]:
        assert (info.root / "components" / comp).is_dir()
        assert flavor[f"{comp}_type"] == type(getattr(pipe, comp)).__name__
    assert doc["flavors"]["python_function"]["loader_module"] == "mlflow.transformers"
    section = doc["metadata"]["hfspark"]
    assert section["content_hash"] == info.content_hash
    assert set(section["versions"]) >= {"hfspark", "transformers", "torch", "python"}
    assert not list((info.root / "model").glob("*.bin"))
    for f in ("model_card.md", "requirements.txt", "python_env.yaml", "conda.yaml"):
        assert (info.root / f).is_file()

    from hfspark.flavor.taskinfo import adapter_class

    adapter = adapter_class(task)
    if adapter is not None:  # the adapter's schema is written when the adapter exists
        assert section["schema"]["output"] == adapter({}).output_type().simpleString()
        assert section["schema"]["input"]["fields"] == list(adapter.input_fields)

    loaded = load_model(info.root, device="cpu")
    assert type(loaded).__name__ == type(pipe).__name__
    assert _run(loaded, name) == expected


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_folder_round_trip(name: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    src = tiny_models[name]
    source_info = read_info(src)
    assert source_info.flavor == "pretrained" and source_info.task == ALL_MODELS[name]

    info = save_model(str(src), tmp_path / "saved")  # task inferred from config.architectures
    assert info.task == ALL_MODELS[name]
    assert info.content_hash == source_info.content_hash
    for f in src.glob("*.safetensors"):
        assert (info.model_dir / f.name).read_bytes() == f.read_bytes()
    parts = load_model(info.root, return_type="components", device="cpu")
    from hfspark.flavor.taskinfo import required_components

    assert set(required_components(info.task)) <= set(parts)
    assert (
        type(parts["model"]).__name__
        == json.loads((src / "config.json").read_text())["architectures"][0]
    )


@pytest.mark.parametrize("name", ["question-answering", "text2text-generation"])
def test_components_round_trip_same_logits(
    name: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    import transformers

    src = tiny_models[name]
    auto = (
        transformers.AutoModelForQuestionAnswering
        if name == "question-answering"
        else transformers.AutoModelForSeq2SeqLM
    )
    model = auto.from_pretrained(str(src)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    info = save_model({"model": model, "tokenizer": tok}, tmp_path / "saved")
    assert info.task == name

    parts = load_model(info.root, return_type="components", device="cpu")
    assert set(parts) == {"model", "tokenizer"}
    enc = tok(
        "What is the capital of France?", "The capital of France is Paris.", return_tensors="pt"
    )
    enc2 = parts["tokenizer"](
        "What is the capital of France?", "The capital of France is Paris.", return_tensors="pt"
    )
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    with torch.no_grad():
        if name == "question-answering":
            a, b = model(**enc), parts["model"](**enc2)
            assert torch.allclose(a.start_logits, b.start_logits)
            assert torch.allclose(a.end_logits, b.end_logits)
        else:
            dec = torch.tensor([[model.config.decoder_start_token_id]])
            a = model(**enc, decoder_input_ids=dec).logits
            b = parts["model"](**enc2, decoder_input_ids=dec).logits
            assert torch.allclose(a, b)
            assert torch.equal(model.generate(**enc), parts["model"].generate(**enc2))

    with pytest.raises(ConfigError, match="return_type='components'"):
        load_model(info.root)


def test_translation_task_name_and_defaults(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(
        str(tiny_models["text2text-generation"]), tmp_path / "t", task="translation_en_to_fr"
    )
    assert info.task == "translation"
    assert _mlmodel(info.root)["flavors"]["transformers"]["task"] == "translation_en_to_fr"
    from hfspark.flavor.taskinfo import adapter_class

    if adapter_class("translation") is not None:
        assert info.inference_config == {"source_lang": "en", "target_lang": "fr"}


def test_minilm_folder_copy(minilm_dir: Path, tmp_path: Path) -> None:
    """The real MiniLM: copied file by file, loads, and gives the same embeddings."""
    import torch
    import transformers

    info = save_model(str(minilm_dir), tmp_path / "minilm")
    assert info.task == "feature-extraction"
    assert (info.model_dir / "1_Pooling" / "config.json").is_file()
    assert (info.root / "model_card.md").read_text() == (minilm_dir / "README.md").read_text()
    assert (info.model_dir / "model.safetensors").stat().st_size == (
        minilm_dir / "model.safetensors"
    ).stat().st_size

    pipe = load_model(info.root, device="cpu")
    texts = ["I like food", "I eat bread", "The stock market rose sharply"]
    ref = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))

    def embed(text: str) -> torch.Tensor:
        return torch.tensor(pipe(text)[0]).mean(0)

    with torch.no_grad():
        want = ref(**tok(texts[0], return_tensors="pt")).last_hidden_state[0].mean(0)
    assert torch.allclose(embed(texts[0]), want, atol=1e-5)
    vecs = [embed(t) for t in texts]
    cos = torch.nn.functional.cosine_similarity
    assert cos(vecs[0], vecs[1], dim=0) > cos(vecs[0], vecs[2], dim=0) + 0.2


def test_dtype_device_and_options(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import torch

    info = save_model(
        str(tiny_models["text-classification"]),
        tmp_path / "m",
        torch_dtype="float16",
        inference_config={"max_length": 16},
        input_example={"text": "hi"},
        metadata={"owner": "team-a"},
        model_card="# My card\n",
    )
    assert info.torch_dtype == "float16" and info.inference_config == {"max_length": 16}
    assert json.loads((info.root / "input_example.json").read_text()) == {"text": "hi"}
    assert (info.root / "model_card.md").read_text() == "# My card\n"
    assert info.metadata["mlmodel"]["metadata"]["owner"] == "team-a"
    parts = load_model(info.root, return_type="components", device=-1)
    assert parts["model"].dtype == torch.float16
    parts = load_model(info.root, return_type="components", torch_dtype=torch.float32)
    assert parts["model"].dtype == torch.float32
    with pytest.raises(ConfigError, match="return_type"):
        load_model(info.root, return_type="model")
    with pytest.raises(ConfigError, match="dtype"):
        load_model(info.root, torch_dtype="float99")


def test_task_override_and_aliases(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(str(tiny_models["token-classification"]), tmp_path / "ner", task="ner")
    assert info.task == "token-classification"
    # a classifier read as feature-extraction (any architecture) drops the saved options
    tc = save_model(
        str(tiny_models["text-classification"]), tmp_path / "tc", inference_config={"top_k": 2}
    )
    fe = read_info(tc.root, task="embeddings")
    assert fe.task == "feature-extraction" and fe.inference_config == {}
    pipe = load_model(tc.root, task="feature-extraction", device="cpu")
    assert type(pipe.model).__name__ == "BertModel"


def test_read_info_is_cheap_and_cached(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = save_model(str(tiny_models["fill-mask"]), tmp_path / "m")
    import hfspark.flavor.weights as weights

    calls = []
    real = weights.file_sha256
    monkeypatch.setattr(weights, "file_sha256", lambda p: calls.append(p) or real(p))
    again = read_info(str(info.root))
    assert again.content_hash == info.content_hash and not calls  # hash read from MLmodel
    bare = read_info(tiny_models["fill-mask"])
    assert bare.content_hash == info.content_hash
    assert read_info(f"file://{info.root}").root == info.root


# ------------------------------------------------------------------ validation errors
def test_truncated_and_missing_weights(copy_tiny, tmp_path: Path) -> None:
    src = copy_tiny("text-classification")
    weights = src / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    with pytest.raises(ModelValidationError, match=r"model\.safetensors is truncated"):
        read_info(src)
    with pytest.raises(ModelValidationError, match="truncated"):
        save_model(str(src), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    weights.write_bytes(data + b"\0" * 4)
    with pytest.raises(ModelValidationError, match="unexpected bytes"):
        read_info(src)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelValidationError, match="not a valid safetensors"):
        read_info(src)
    weights.write_bytes(data)
    (src / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}
        )
    )
    with pytest.raises(ModelValidationError, match="model-00002-of-00002.safetensors.*missing"):
        read_info(src)
    (src / "model.safetensors.index.json").unlink()
    weights.unlink()
    with pytest.raises(ModelValidationError, match="no weights"):
        read_info(src)


def test_weights_changed_after_save(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(str(tiny_models["text-classification"]), tmp_path / "m")
    weights = info.model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, valid header, different content
    weights.write_bytes(bytes(data))
    assert read_info(info.root).content_hash == info.content_hash  # cheap path trusts MLmodel
    with pytest.raises(ModelValidationError, match="changed since they were saved"):
        read_info(info.root, verify=True)
    other = tiny_models["fill-mask"] / "model.safetensors"
    shutil.copyfile(other, weights)
    with pytest.raises(ModelValidationError, match="was saved with"):
        read_info(info.root)


@pytest.mark.parametrize(
    ("name", "task", "match"),
    [
        ("text2text-generation", "text-generation", "ForCausalLM"),
        ("text-generation", "summarization", "ForConditionalGeneration"),
        ("text-classification", "token-classification", "ForTokenClassification"),
        ("text-classification", "zero-shot-classification", "entailment"),
        ("image-classification", "audio-classification", "ForSequenceClassification"),
    ],
)
def test_task_must_match_architecture(
    name: str, task: str, match: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelValidationError, match=match):
        read_info(tiny_models[name], task=task)
    with pytest.raises(ModelValidationError, match=match):
        save_model(str(tiny_models[name]), tmp_path / "x", task=task)
    assert not (tmp_path / "x").exists()


def test_encoder_decoder_is_not_text_generation(copy_tiny) -> None:
    src = copy_tiny("text2text-generation")
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = ["BartForCausalLM"]  # suffix fits, but the model is seq2seq
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelValidationError, match="decoder-only"):
        read_info(src, task="text-generation")


def test_unknown_or_uninferable_task(
    copy_tiny, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(UnknownTaskError, match="sentiment-analysis"):
        save_model(
            str(tiny_models["text-classification"]), tmp_path / "x", task="sentiment-analysys"
        )
    src = copy_tiny("text-classification")
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = ["MyHomeMadeNet"]
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelValidationError, match=r"Pass task=\.\.\."):
        read_info(src)
    with pytest.raises(ModelValidationError, match=r"Pass task=\.\.\."):
        save_model(str(src), tmp_path / "x")


def test_missing_components(copy_tiny, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tiny_models["text-classification"])
    )
    with pytest.raises(ModelValidationError, match="needs a tokenizer"):
        save_model({"model": model}, tmp_path / "x")
    with pytest.raises(ConfigError, match="needs a 'model'"):
        save_model({"tokenizer": None}, tmp_path / "x")
    with pytest.raises(ConfigError, match="Unknown key"):
        save_model({"model": model, "tokeniser": None}, tmp_path / "x")
    with pytest.raises(ConfigError, match="Pipeline, a dict"):
        save_model(42, tmp_path / "x")
    src = copy_tiny("image-classification")
    (src / "preprocessor_config.json").unlink()
    with pytest.raises(ModelValidationError, match="needs a image_processor"):
        read_info(src)
    src = copy_tiny("text-classification")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (src / f).unlink()
    with pytest.raises(ModelValidationError, match="needs a tokenizer"):
        save_model(str(src), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_pickle_weights_refused_or_converted(copy_tiny, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    src = copy_tiny("text-classification")
    state = load_file(str(src / "model.safetensors"))
    torch.save(state, src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    with pytest.raises(UnsafeModelError, match=r"pytorch_model\.bin.*allow_pickle=True"):
        read_info(src)
    with pytest.raises(UnsafeModelError, match="pickle"):
        save_model(str(src), tmp_path / "x")
    assert not (tmp_path / "x").exists()

    info = save_model(str(src), tmp_path / "x", allow_pickle=True)
    assert [p.name for p in info.model_dir.iterdir() if p.suffix in (".bin", ".safetensors")] == [
        "model.safetensors"
    ]
    parts = load_model(info.root, return_type="components", device="cpu")
    for key, value in state.items():
        assert torch.equal(parts["model"].state_dict()[key], value), key


def test_remote_code_refused(copy_tiny, tmp_path: Path) -> None:
    src = copy_tiny("text-classification")
    config = json.loads((src / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeModelError, match=r"config\.json has 'auto_map'"):
        read_info(src)
    with pytest.raises(UnsafeModelError, match="trust_remote_code"):
        save_model(str(src), tmp_path / "x")


def test_paths_must_stay_inside_the_model(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(str(tiny_models["text-classification"]), tmp_path / "m")
    mlmodel = info.root / "MLmodel"
    good = mlmodel.read_text()
    doc = yaml.safe_load(good)
    doc["flavors"]["transformers"]["model_binary"] = "../../etc"
    mlmodel.write_text(yaml.safe_dump(doc))
    with pytest.raises(UnsafeModelError, match="model_binary.*outside the model folder"):
        read_info(info.root)
    doc = yaml.safe_load(good)
    doc["metadata"]["hfspark"]["model_dir"] = "/etc"
    mlmodel.write_text(yaml.safe_dump(doc))
    with pytest.raises(UnsafeModelError, match="model_dir"):
        read_info(info.root)
    doc = yaml.safe_load(good)
    doc["flavors"]["transformers"]["components"] = ["../../tokenizer"]
    mlmodel.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelValidationError, match="unknown component"):
        read_info(info.root)
    mlmodel.write_text(good)
    shutil.rmtree(info.model_dir)  # a link to weights elsewhere is a path out of the folder
    info.model_dir.symlink_to(tiny_models["text-classification"], target_is_directory=True)
    with pytest.raises(UnsafeModelError, match="outside the model folder"):
        read_info(info.root)


def test_bad_mlmodel_files(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(str(tiny_models["fill-mask"]), tmp_path / "m")
    mlmodel = info.root / "MLmodel"
    good = yaml.safe_load(mlmodel.read_text())
    mlmodel.write_text("flavors: [unclosed")
    with pytest.raises(ModelValidationError, match="not valid YAML"):
        read_info(info.root)
    mlmodel.write_text(yaml.safe_dump({"flavors": {"sklearn": {}}}))
    with pytest.raises(ModelValidationError, match="no 'transformers' flavor.*sklearn"):
        read_info(info.root)
    hub_ref = dict(good)
    hub_ref["flavors"] = {
        "transformers": {
            k: v for k, v in good["flavors"]["transformers"].items() if k != "model_binary"
        }
    }
    hub_ref["flavors"]["transformers"]["source_model_revision"] = "abc123"
    mlmodel.write_text(yaml.safe_dump(hub_ref))
    with pytest.raises(ModelValidationError, match="persist_pretrained_model"):
        read_info(info.root)
    with pytest.raises(ModelValidationError, match="neither MLmodel nor config.json"):
        read_info(tmp_path)


@pytest.mark.parametrize(
    ("template", "task", "match"),
    [
        ("Answer: {}", "text-generation", "exactly one"),
        ("no placeholder", "text-generation", "exactly one"),
        ("{prompt} and {prompt}", "text-generation", "exactly one"),
        ("{prompt} in {lang}", "text-generation", "exactly one"),
        ("Classify: {prompt}", "text-classification", "not supported for task"),
        (42, "text-generation", "must be a string"),
    ],
)
def test_prompt_template_errors(
    template: Any, task: str, match: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tiny_models["text-generation" if task == "text-generation" else "text-classification"]
    with pytest.raises(ConfigError, match=match):
        save_model(str(folder), tmp_path / "x", prompt_template=template)


def test_prompt_template_saved(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    info = save_model(
        str(tiny_models["text-generation"]),
        tmp_path / "m",
        prompt_template="Answer briefly: {prompt}",
    )
    assert info.prompt_template == "Answer briefly: {prompt}"
    doc = _mlmodel(info.root)
    assert doc["metadata"]["prompt_template"] == "Answer briefly: {prompt}"
    assert doc["flavors"]["python_function"]["config"] == {"return_full_text": False}


def test_bad_arguments(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = str(tiny_models["text-classification"])
    with pytest.raises(ConfigError, match="max_length"):
        save_model(folder, tmp_path / "x", inference_config={"max_lenght": 3})
    with pytest.raises(ConfigError, match="reserved"):
        save_model(folder, tmp_path / "x", metadata={"hfspark": 1})
    with pytest.raises(ConfigError, match="JSON-serializable"):
        save_model(folder, tmp_path / "x", input_example={"x": object()})
    with pytest.raises(ConfigError, match="already a saved model"):
        save_model(save_model(folder, tmp_path / "a").root, tmp_path / "b")
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


def test_overwrite(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "m"
    first = save_model(str(tiny_models["text-classification"]), target)
    with pytest.raises(ConfigError, match="already exists.*overwrite=True"):
        save_model(str(tiny_models["fill-mask"]), target)
    assert read_info(target).content_hash == first.content_hash
    second = save_model(str(tiny_models["fill-mask"]), target, overwrite=True)
    assert second.task == "fill-mask" and second.content_hash != first.content_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folders left
    data = tmp_path / "precious"
    data.mkdir()
    (data / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="does not hold a model"):
        save_model(str(tiny_models["fill-mask"]), data, overwrite=True)
    assert (data / "thesis.tex").exists()


# ------------------------------------------------------------------ atomicity
_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import hfspark.flavor.sources as sources
    from hfspark.flavor import save_model

    src, target, signal_file = sys.argv[1:4]
    real = sources._copy_file

    def copy(a, b):  # stop for good once the weights are half-way into the new folder
        real(a, b)
        if b.suffix == ".safetensors":
            Path(signal_file).write_text("ready")
            time.sleep(120)

    sources._copy_file = copy
    save_model(src, target, task="text-classification")  # task given: no transformers import
""")


def test_killed_save_leaves_nothing_valid(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL a process in the middle of a save: no target, and the leftover is refused."""
    target = tmp_path / "out" / "model"
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILL_SCRIPT,
            str(tiny_models["text-classification"]),
            str(target),
            str(ready),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the save never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    leftovers = list(target.parent.glob(".model.tmp-*"))
    assert len(leftovers) == 1
    with pytest.raises(ModelValidationError, match="interrupted save"):
        read_info(leftovers[0])
    info = save_model(str(tiny_models["text-classification"]), target)  # a new save works
    assert info.task == "text-classification"


def test_interrupted_save_leftovers_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A save killed after its last write but before the rename leaves a staging-named folder."""
    info = save_model(str(tiny_models["fill-mask"]), tmp_path / "m")
    staged = info.root.rename(tmp_path / ".m.tmp-0123456789ab")
    with pytest.raises(ModelValidationError, match="interrupted save"):
        read_info(staged)
    done = staged.rename(tmp_path / "m")
    (done / ".hfspark-incomplete").write_text("")
    with pytest.raises(ModelValidationError, match="interrupted save"):
        read_info(done)


def test_failed_save_cleans_up(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hfspark.flavor.save as save_mod

    def boom(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(save_mod, "_publish_local", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(str(tiny_models["fill-mask"]), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
