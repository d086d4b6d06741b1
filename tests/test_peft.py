"""PEFT (LoRA) models: saved as adapter + base reference (MLflow's ``peft/`` layout) or merged,
read back from what MLflow writes, loaded by MLflow from what hfspark writes, and scored on Spark
with outputs equal to the merged model's. Tiny random base models, seeded random LoRA adapters.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore")
TEXTS = ["I love this movie, it is great.", "Terrible, boring and bad.", "Hello world!"]
PROMPTS = ["The weather in Paris", "Spark runs pandas"]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's model cache (merged adapters land there), set before its Spark starts."""
    saved = os.environ.get("HFSPARK_CACHE_DIR")
    os.environ["HFSPARK_CACHE_DIR"] = str(tmp_path_factory.mktemp("peft-cache"))
    yield Path(os.environ["HFSPARK_CACHE_DIR"])
    if saved is None:
        os.environ.pop("HFSPARK_CACHE_DIR", None)
    else:
        os.environ["HFSPARK_CACHE_DIR"] = saved


def _lora(model: Any, task_type: str, targets: list[str], **kw: Any) -> Any:
    """A LoRA adapter with random (not zero) weights, so that it changes the outputs."""
    import torch

    torch.manual_seed(1)
    tuned = peft.get_peft_model(
        model,
        peft.LoraConfig(
            task_type=task_type,
            r=4,
            lora_alpha=8,
            target_modules=targets,
            init_lora_weights=False,
            **kw,
        ),
    )
    with torch.no_grad():  # the trained classifier head (modules_to_save) differs from the base's
        for name, p in tuned.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p))
    return tuned.eval()


@pytest.fixture(scope="module")
def classifier(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    import transformers

    base_dir = tiny_models["text-classification"]
    base = transformers.AutoModelForSequenceClassification.from_pretrained(base_dir)
    tok = transformers.AutoTokenizer.from_pretrained(base_dir)
    tuned = _lora(base, "SEQ_CLS", ["query", "value"])
    merged = copy.deepcopy(tuned).merge_and_unload().eval()
    with tuned.disable_adapter():  # the adapter really changes the outputs
        assert (_logits(tuned, tok) - _logits(merged, tok)).abs().max() > 1e-2
    root = tmp_path_factory.mktemp("peft-classifier")
    return {"base_dir": base_dir, "tok": tok, "tuned": tuned, "merged": merged, "root": root}


def _logits(model: Any, tok: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(**tok(TEXTS, return_tensors="pt", padding=True)).logits


def test_save_adapter_with_base_reference_in_mlflow_layout(classifier):
    from hfspark.flavor import load_model, read_info, save_model
    from hfspark.flavor.peft import adapter_hash, combined_hash

    c = classifier
    dest = c["root"] / "lora"
    info = save_model({"model": c["tuned"], "tokenizer": c["tok"]}, dest, base_model=c["base_dir"])
    doc = yaml.safe_load((dest / "MLmodel").read_text())
    flavor = doc["flavors"]["transformers"]
    assert flavor["peft_adaptor"] == "peft" and "model_binary" not in flavor
    assert flavor["local_base_model_path"] == str(c["base_dir"])
    assert flavor["pipeline_model_type"] == "BertForSequenceClassification"
    assert sorted(p.name for p in (dest / "peft").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert not (dest / "model").exists()  # the base weights are referenced, not copied
    meta = doc["metadata"]["hfspark"]
    base_hash = read_info(c["base_dir"]).content_hash
    assert meta["peft"]["base_hash"] == base_hash and meta["peft"]["base_uri"] == str(c["base_dir"])
    assert info.content_hash == combined_hash(base_hash, adapter_hash(dest / "peft"))
    assert "peft==" in (dest / "requirements.txt").read_text()
    parts = load_model(dest, return_type="components")
    assert (_logits(parts["model"], c["tok"]) - _logits(c["merged"], c["tok"])).abs().max() < 1e-5
    # an adapter folder (peft's save_pretrained) saves to the same model, without loading it
    c["tuned"].save_pretrained(str(c["root"] / "adapter"))
    again = save_model(c["root"] / "adapter", c["root"] / "from-folder", task="text-classification")
    assert again.content_hash == info.content_hash


def test_mlflow_layouts_both_ways(classifier):
    import mlflow.transformers

    from hfspark.flavor import load_model, read_info, save_model

    c = classifier
    expected = _logits(c["merged"], c["tok"])
    ours = c["root"] / "ours"
    save_model({"model": c["tuned"], "tokenizer": c["tok"]}, ours, base_model=c["base_dir"])
    loaded = mlflow.transformers.load_model(str(ours), return_type="components")
    assert type(loaded["model"]).__name__ == "PeftModelForSequenceClassification"
    assert (_logits(loaded["model"], c["tok"]) - expected).abs().max() < 1e-5  # MLflow loads ours
    pipe = mlflow.transformers.load_model(str(ours))
    assert [r["label"] for r in pipe(TEXTS)] == [
        c["merged"].config.id2label[int(i)] for i in expected.argmax(-1)
    ]
    parts = {"model": c["tuned"], "tokenizer": c["tok"]}
    by_ref, embedded = c["root"] / "mlflow-ref", c["root"] / "mlflow-embedded"
    mlflow.transformers.save_model(
        parts,
        str(by_ref),
        task="text-classification",
        base_model_path=str(c["base_dir"]),
        pip_requirements=["peft"],
    )
    mlflow.transformers.save_model(
        parts, str(embedded), task="text-classification", pip_requirements=["peft"]
    )  # the base weights in model/
    for folder in (by_ref, embedded):
        info = read_info(folder)
        assert info.flavor == "mlflow" and info.task == "text-classification"
        assert info.metadata["peft"]["adapter_dir"] == folder / "peft"
        got = load_model(folder, return_type="components")["model"]
        # MLflow writes model/ with the adapter injected (base_layer, lora_A...): hfspark takes
        # the base weights back out of those names, so both layouts give the merged outputs
        assert (_logits(got, c["tok"]) - expected).abs().max() < 1e-5, folder.name


def test_classifier_on_spark_equals_the_merged_model(spark, classifier):
    import transformers

    from hfspark.flavor import save_model
    from hfspark.flavor.store import cache_root
    from hfspark.udfs import model_udf

    c = classifier
    lora = c["root"] / "lora"  # saved by the first test of this module
    if not lora.exists():
        save_model({"model": c["tuned"], "tokenizer": c["tok"]}, lora, base_model=c["base_dir"])
    merged = c["root"] / "merged"
    info = save_model(
        {"model": c["tuned"], "tokenizer": c["tok"]},
        merged,
        base_model=c["base_dir"],
        merge_adapter=True,
    )
    assert info.metadata["hfspark"]["peft"]["merged"] is True
    assert (merged / "model" / "model.safetensors").is_file()
    pipe = transformers.pipeline("text-classification", model=c["merged"], tokenizer=c["tok"])
    expected = pipe(TEXTS)
    udf_lora, udf_merged = model_udf(str(lora)), model_udf(str(merged))
    assert udf_lora.ref.content_hash != udf_merged.ref.content_hash  # keyed by base + adapter
    df = spark.createDataFrame(list(enumerate(TEXTS)), "id long, text string")
    rows = (
        df.select("id", udf_lora("text").alias("a"), udf_merged("text").alias("m"))
        .orderBy("id")
        .collect()
    )
    assert [r.a.label for r in rows] == [r.m.label for r in rows] == [e["label"] for e in expected]
    for r, e in zip(rows, expected, strict=True):
        assert abs(r.a.score - e["score"]) < 1e-5 and abs(r.m.score - e["score"]) < 1e-5
    merged_dirs = list((cache_root() / "merged").glob(f"{udf_lora.ref.content_hash[:32]}"))
    assert len(merged_dirs) == 1  # merged once on this machine, under the combined hash


def test_causal_lm_lora_on_spark_equals_the_merged_model(spark, tiny_models, tmp_path):
    import torch
    import transformers

    from hfspark.flavor import save_model
    from hfspark.udfs import model_udf

    base_dir = tiny_models["text-generation"]
    tok = transformers.AutoTokenizer.from_pretrained(base_dir)
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir)
    tuned = _lora(base, "CAUSAL_LM", ["c_attn"], fan_in_fan_out=True)
    merged = copy.deepcopy(tuned).merge_and_unload().eval()
    ids = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad(), tuned.disable_adapter():  # the adapter really changes the outputs
        assert (tuned(**ids).logits - merged(**ids).logits).abs().max() > 1e-2
    save_model({"model": tuned, "tokenizer": tok}, tmp_path / "lora", base_model=base_dir)
    save_model({"model": merged, "tokenizer": tok}, tmp_path / "merged", task="text-generation")
    params = {"params": {"max_new_tokens": 6}}
    a, m = (
        model_udf(str(tmp_path / "lora"), **params),
        model_udf(str(tmp_path / "merged"), **params),
    )
    rows = (
        spark.createDataFrame([(p,) for p in PROMPTS], "prompt string")
        .select(a("prompt").alias("a"), m("prompt").alias("m"))
        .collect()
    )
    assert [r.a.generated_text for r in rows] == [r.m.generated_text for r in rows]
    with torch.no_grad():  # and equal to greedy decoding of the merged model in this process
        for prompt, r in zip(PROMPTS, rows, strict=True):
            ids = tok(prompt, return_tensors="pt")
            out = merged.generate(
                **ids,
                max_new_tokens=6,
                do_sample=False,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
            assert r.a.generated_text == tok.decode(
                out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
            )


def test_base_model_as_a_registered_model(mlflow_tracking, classifier):
    import mlflow
    import mlflow.transformers

    from hfspark.flavor import load_model, log_model, read_info

    c = classifier
    with mlflow.start_run():
        log_model(
            str(c["base_dir"]),
            "base",
            task="text-classification",
            registered_model_name="tiny-peft-base",
            alias="champion",
            validate_serving_input=False,
        )
        info = log_model(
            {"model": c["tuned"], "tokenizer": c["tok"]},
            "lora",
            base_model="models:/tiny-peft-base@champion",
            registered_model_name="tiny-lora",
            validate_serving_input=False,
        )
    got = read_info("models:/tiny-lora/1")
    assert got.metadata["peft"]["base_uri"] == "models:/tiny-peft-base/1"  # the alias, pinned
    expected = _logits(c["merged"], c["tok"])
    parts = load_model(f"runs:/{info.run_id}/lora", return_type="components")
    assert (_logits(parts["model"], c["tok"]) - expected).abs().max() < 1e-5
    pipe = mlflow.transformers.load_model("models:/tiny-lora/1")  # base from this machine's cache
    assert [r["label"] for r in pipe(TEXTS)] == [
        c["merged"].config.id2label[int(i)] for i in expected.argmax(-1)
    ]


def test_unsafe_or_inconsistent_adapters_are_refused(classifier, tmp_path):
    import transformers

    from hfspark.errors import ConfigError, ModelValidationError, UnsafeModelError
    from hfspark.flavor import read_info, save_model

    c = classifier
    adapter = tmp_path / "adapter"
    c["tuned"].save_pretrained(str(adapter))
    pickled = tmp_path / "pickled"
    c["tuned"].save_pretrained(str(pickled), safe_serialization=False)
    with pytest.raises(UnsafeModelError, match="adapter_model.bin is a pickle file"):
        save_model(pickled, tmp_path / "x", task="text-classification")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "org/some-hub-model"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="pass base_model="):
        save_model(adapter, tmp_path / "x", task="text-classification")
    with pytest.raises(ConfigError, match="apply to PEFT models only"):
        save_model(str(c["base_dir"]), tmp_path / "x", base_model=str(c["base_dir"]))
    # the base model moves or changes after the adapter was saved
    base_copy = tmp_path / "base"
    shutil.copytree(c["base_dir"], base_copy)
    dest = tmp_path / "lora"
    save_model(adapter, dest, task="text-classification", base_model=base_copy)
    assert read_info(dest).task == "text-classification"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(base_copy)
    model.classifier.bias.data += 1
    model.save_pretrained(str(base_copy))
    with pytest.raises(ModelValidationError, match="base model .* changed since the adapter"):
        read_info(dest)
    shutil.rmtree(base_copy)
    with pytest.raises(ModelValidationError, match="is not there"):
        read_info(dest)
