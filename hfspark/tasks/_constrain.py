"""Grammar-constrained decoding with xgrammar: JSON schemas, fixed choices, regexes.

The grammar is compiled once per loaded model (so once per Python worker: the model cache
keeps it in ``LoadedModel.extras``) and each ``generate()`` call gets a fresh, single-use
xgrammar logits processor for its rows. JSON is compiled without free whitespace
(``any_whitespace=False``): a model may otherwise emit spaces until ``max_new_tokens``.

Example:
    >>> grammar = compiled_grammar(loaded, "json", {"type": "object", ...})
    >>> model.generate(..., logits_processor=[grammar_processor(grammar, batch_size)])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hfspark.errors import ConfigError

__all__ = ["compiled_grammar", "grammar_processor", "choices_ebnf"]


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as e:
        raise ConfigError(
            "structured output (output_schema, choices, regex) needs xgrammar: pip install xgrammar"
        ) from e
    return xgrammar


def choices_ebnf(choices: Sequence[str]) -> str:
    """An EBNF grammar whose only sentences are ``choices``.

    Example:
        >>> choices_ebnf(["yes", "no"])
        'root ::= "yes" | "no"'
    """
    return "root ::= " + " | ".join(json.dumps(c) for c in choices)


def compiled_grammar(loaded: Any, kind: str, spec: Any) -> Any:
    """The compiled grammar for this model, compiled on first use and kept in ``loaded.extras``.

    Args:
        loaded: the LoadedModel (its tokenizer and vocabulary size).
        kind: ``json`` (spec: a JSON Schema dict), ``choices`` (a list) or ``regex`` (a string).
        spec: the schema, choices or pattern.
    """
    cache = loaded.extras.setdefault("grammars", {})
    key = (kind, json.dumps(spec, sort_keys=True))
    if key in cache:
        return cache[key]
    xgr = _xgrammar()
    if "grammar_compiler" not in loaded.extras:
        vocab = getattr(loaded.model.config, "vocab_size", None)
        decoder = getattr(loaded.model.config, "decoder", None)  # encoder-decoder wrappers
        vocab = vocab or getattr(decoder, "vocab_size", None)
        info = xgr.TokenizerInfo.from_huggingface(loaded.tokenizer, vocab_size=vocab)
        loaded.extras["grammar_compiler"] = xgr.GrammarCompiler(info, max_threads=1)
    compiler = loaded.extras["grammar_compiler"]
    try:
        if kind == "json":
            grammar = compiler.compile_json_schema(
                json.dumps(spec), any_whitespace=False, strict_mode=True
            )
        elif kind == "choices":
            grammar = compiler.compile_grammar(choices_ebnf(spec))
        else:
            grammar = compiler.compile_regex(spec)
    except Exception as e:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError subclasses
        raise ConfigError(f"cannot compile the {kind} grammar ({e}); simplify the {kind}") from e
    cache[key] = grammar
    return grammar


def grammar_processor(grammar: Any, batch_size: int) -> Any:
    """A fresh xgrammar logits processor for one ``generate()`` call of ``batch_size`` rows."""
    xgr = _xgrammar()
    return xgr.contrib.hf.LogitsProcessor([grammar] * batch_size)
