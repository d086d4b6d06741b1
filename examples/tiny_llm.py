"""A tiny random GPT-2 to try LLM jobs on a laptop in seconds (its text is noise; the shapes,
templates, schemas and batching are real). Use a real instruction model for real answers.

Example:
    >>> build_demo_llm("models/tiny-llm")      # a transformers folder, ~1 MB
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["build_demo_llm"]

_CORPUS = [
    "Title: Great film. Review: I love this movie, it is great. Sentiment: positive",
    "Title: Boring. Review: This film was terrible, boring and bad. Sentiment: negative",
    "Classify the sentiment of a product review as positive, negative or neutral.",
    '{"sentiment": "positive", "stars": 5, "tags": ["fun"]} {"sentiment": "negative"}',
] * 8


def build_demo_llm(
    folder: str | Path, context: int = 512, width: int = 32, layers: int = 2
) -> Path:
    """Write a random GPT-2 (``layers`` x ``width``) with its byte-level BPE tokenizer (seeded)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    out = Path(folder)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        _CORPUS,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    tok = transformers.GPT2Tokenizer(
        vocab=model_json["vocab"], merges=merges, model_max_length=context
    )
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=len(model_json["vocab"]),
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=max(2, width // 64),
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False, max_new_tokens=16
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
