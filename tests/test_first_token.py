"""Last-layer pruning (hfspark.tasks._first_token): same outputs as the full forward, real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from hfspark.tasks import get_task
from hfspark.tasks._first_token import FirstTokenLayer, prune_last_layer

_TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
    "vocab_size": 120,
    "num_labels": 3,
}
_CLASSIFIERS = {
    "bert": (transformers.BertConfig, transformers.BertForSequenceClassification),
    "roberta": (transformers.RobertaConfig, transformers.RobertaForSequenceClassification),
    "xlm-roberta": (
        transformers.XLMRobertaConfig,
        transformers.XLMRobertaForSequenceClassification,
    ),
    "camembert": (transformers.CamembertConfig, transformers.CamembertForSequenceClassification),
    "electra": (transformers.ElectraConfig, transformers.ElectraForSequenceClassification),
}


def _padded_batch(lengths: list[int], vocab: int = 120, pad: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded ids (first id 0 like a [CLS]) and their attention mask."""
    gen = torch.Generator().manual_seed(0)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, vocab, (n,), generator=gen)
        ids[row, 0] = 0
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _pair(config_cls, model_cls, attn: str, **extra):
    torch.manual_seed(0)
    config = config_cls(**{**_TINY, **extra}, attn_implementation=attn)
    full = model_cls(config).eval()
    pruned = model_cls(config).eval()
    pruned.load_state_dict(full.state_dict())
    return full, pruned


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("model_type", sorted(_CLASSIFIERS))
def test_pruned_classifier_gives_the_same_logits(model_type: str, attn: str) -> None:
    full, pruned = _pair(*_CLASSIFIERS[model_type], attn)
    assert prune_last_layer(pruned) is True
    assert isinstance(pruned.base_model.encoder.layer[-1], FirstTokenLayer)
    with torch.inference_mode():
        for lengths in ([7, 30, 12, 1, 64], [9, 9, 9]):  # padded, and no padding (mask may be None)
            batch = _padded_batch(lengths)
            expected = full(**batch).logits
            got = pruned(**batch).logits
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_real_minilm_classifier_same_logits(minilm_dir: Path) -> None:
    """The real all-MiniLM-L6-v2 body with a seeded 3-label head, on mixed-length real text."""
    torch.manual_seed(0)
    full = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(minilm_dir), num_labels=3
    ).eval()
    pruned = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(minilm_dir), num_labels=3
    ).eval()
    pruned.load_state_dict(full.state_dict())
    assert prune_last_layer(pruned)
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = [
        "Short.",
        "A somewhat longer sentence about Spark and batch inference on CPUs.",
        " ".join(["Paragraphs of text go on and on, with commas, numbers (42) and words."] * 12),
    ]
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(
            pruned(**batch).logits, full(**batch).logits, atol=1e-5, rtol=1e-5
        )


def test_pruning_is_idempotent() -> None:
    _, pruned = _pair(*_CLASSIFIERS["bert"], "sdpa")
    assert prune_last_layer(pruned) and prune_last_layer(pruned)
    layers = pruned.base_model.encoder.layer
    assert isinstance(layers[-1], FirstTokenLayer)
    assert not isinstance(layers[-1].layer, FirstTokenLayer)
    assert not any(isinstance(layer, FirstTokenLayer) for layer in layers[:-1])


def test_models_that_read_every_position_keep_their_full_forward() -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(**_TINY)
    token = transformers.BertForTokenClassification(config).eval()
    assert prune_last_layer(token) is False  # its head reads every token
    bare = transformers.BertModel(config).eval()
    assert prune_last_layer(bare) is False  # unless the caller says it reads position 0 only
    assert prune_last_layer(bare, head_reads_first_token=True) is True
    distil = transformers.DistilBertForSequenceClassification(
        transformers.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    ).eval()
    assert prune_last_layer(distil) is False  # another layer layout
    training = transformers.BertForSequenceClassification(config).train()
    assert prune_last_layer(training) is False
    for model in (token, distil, training):
        assert not any(isinstance(m, FirstTokenLayer) for m in model.modules())


def test_text_classification_adapter_prunes_by_default(tiny_models: dict[str, Path]) -> None:
    adapter_cls = get_task("text-classification")
    texts = ["good", "a much longer text about nothing in particular at all", "bad movie"]
    results = {}
    for prune in (True, False):
        adapter = adapter_cls({"prune_last_layer": prune})
        loaded = adapter.load(tiny_models["text-classification"], {}, "cpu", torch.float32)
        assert loaded.extras.get("pruned", False) is prune
        feats = adapter.prepare(loaded, [adapter.convert(t) for t in texts])
        with torch.inference_mode():
            results[prune] = adapter.forward(loaded, feats)
    for got, expected in zip(results[True], results[False], strict=True):
        assert got["label"] == expected["label"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-6)


def test_feature_extraction_prunes_only_for_cls_pooling(tiny_models: dict[str, Path]) -> None:
    adapter_cls = get_task("feature-extraction")
    texts = ["one", "two words here", "and a third, longer text for the batch"]
    vectors = {}
    for pooling, prune in (("cls", True), ("cls", False), ("mean", True)):
        adapter = adapter_cls({"pooling": pooling, "prune_last_layer": prune})
        loaded = adapter.load(tiny_models["feature-extraction"], {}, "cpu", torch.float32)
        assert loaded.extras.get("pruned", False) is (pooling == "cls" and prune)
        with torch.inference_mode():
            vectors[pooling, prune] = adapter.forward(loaded, adapter.prepare(loaded, texts))
    torch.testing.assert_close(
        torch.tensor(vectors["cls", True]),
        torch.tensor(vectors["cls", False]),
        atol=1e-5,
        rtol=1e-5,
    )
