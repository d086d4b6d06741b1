"""Tiny random LLMs for the LLM-job tests, built offline (GPT-2 with a longer context, BART).

Example:
    >>> gpt = build_gpt(Path("/tmp/gpt"))       # 512-token context, greedy, max_new_tokens 8
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers

from tests.helpers.tiny_models import _save, _seed, build_text2text, byte_level_bpe

__all__ = ["CHAT_TEMPLATE", "build_gpt", "build_bart", "with_chat_template"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def build_gpt(out: Path, context: int = 512) -> Path:
    """A 2-layer random GPT-2 (byte-level BPE on the tiny corpus) with a ``context`` window."""
    if (out / "config.json").exists():
        return out
    _seed()
    vocab, merges = byte_level_bpe(["<|endoftext|>"])
    tok = transformers.GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=context)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=context,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False, max_new_tokens=8
    )
    return _save(out, model, tok)


def build_bart(out: Path) -> Path:
    """The tiny random BART of tests/tiny_models.py."""
    if (out / "config.json").exists():
        return out
    return build_text2text(out)


def with_chat_template(src: Path, out: Path) -> Path:
    """A copy of ``src`` whose tokenizer has :data:`CHAT_TEMPLATE`."""
    import shutil

    if not (out / "config.json").exists():
        shutil.copytree(src, out)
        path = out / "tokenizer_config.json"
        data = json.loads(path.read_text())
        data["chat_template"] = CHAT_TEMPLATE
        path.write_text(json.dumps(data))
    return out
