"""text-generation: a causal language model continues a prompt or answers a chat.

Input: a string prompt (optionally rendered through ``prompt_template``), or chat messages
``array<struct<role string, content string>>`` rendered with the tokenizer's chat template.
Output: ``struct<generated_text, finish_reason, prompt_tokens, completion_tokens>`` where
``generated_text`` holds only the new text (never the prompt).

Batches are left-padded; decoding is greedy unless ``do_sample=True`` (then each row is
sampled with its own seeded generator, so results never depend on the batch).

Example:
    >>> adapter = TextGeneration({"max_new_tokens": 32, "prompt_template": "Q: {prompt}\\nA:"})
    >>> adapter.output_type().simpleString()
    'struct<generated_text:string,finish_reason:string,prompt_tokens:int,completion_tokens:int>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hfspark.errors import ConfigError, InputSchemaError, RowError
from hfspark.tasks._generation import (
    DEFAULT_MAX_NEW_TOKENS,
    eos_token_ids,
    finish_row,
    forced_eos_budget,
    generate_kwargs,
    pad_batch,
    pad_token_id,
)
from hfspark.tasks._llm import LLMAdapter, LLMOptions
from hfspark.tasks._prefix import common_prefix_len, prefixed_batch
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["TextGeneration", "TextGenerationOptions", "CHAT_ROLES"]

#: roles a chat message may have.
CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})

_CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
)


class TextGenerationOptions(LLMOptions):
    """Options of text-generation (see :class:`~hfspark.tasks._llm.LLMOptions`).

    ``prompt_template`` applies to string prompts only; chats use the chat template.
    ``truncate_prompt`` keeps the *last* tokens of an over-long prompt.
    """


class TextGeneration(LLMAdapter):
    """Causal LM generation with left padding, token counts and finish reasons."""

    name: ClassVar[str] = "text-generation"
    auto_model: ClassVar[str] = "AutoModelForCausalLM"
    architectures: ClassVar[tuple[str, ...]] = ("ForCausalLM", "LMHeadModel")
    components: ClassVar[tuple[str, ...]] = ("tokenizer",)
    input_fields: ClassVar[tuple[str, ...]] = ("prompt",)
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {"prompt": ("string", "array<struct>")}
    Options: ClassVar[type[TextGenerationOptions]] = TextGenerationOptions
    options: TextGenerationOptions

    def check_input(self, types: Sequence[DataType]) -> None:
        """Also check that a chat column is ``array<struct<role string, content string>>``."""
        from pyspark.sql.types import ArrayType, StringType, StructType

        super().check_input(types)
        dtype = types[0] if len(types) == 1 and not self.binds_by_name else None
        if isinstance(dtype, ArrayType) and isinstance(dtype.elementType, StructType):
            fields = {f.name: f.dataType for f in dtype.elementType.fields}
            if not all(isinstance(fields.get(k), StringType) for k in ("role", "content")):
                raise InputSchemaError(
                    f"Task 'text-generation': chat messages must be array<struct<role string, "
                    f"content string>>, got {dtype.simpleString()}."
                )

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        model, tok = loaded.model, loaded.tokenizer
        config = model.generation_config
        max_new = self.options.max_new_tokens or config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        context = _context_length(model.config, tok)
        limit = self.options.max_length
        if context is not None:
            if context - max_new < 1:
                raise ConfigError(
                    f"max_new_tokens={max_new} leaves no room for a prompt in this model's "
                    f"context of {context} tokens; lower max_new_tokens"
                )
            limit = min(limit or context, context - max_new)
        loaded.extras.update(
            eos_ids=eos_token_ids(model, tok),
            pad_id=pad_token_id(model, tok),
            prompt_limit=limit,
            context=context,
            max_new_tokens=max_new,
        )
        return loaded

    def convert(self, value: Any) -> str | list[dict[str, str]]:
        """A string prompt (templated) or a validated list of chat messages."""
        if isinstance(value, str) or self.binds_by_name:
            return self.prompt_text(value)
        if isinstance(value, (bytes, bytearray, Mapping)) or not _is_sequence(value):
            raise RowError(
                f"text-generation takes a string prompt or an array of {{role, content}} messages, "
                f"got {type(value).__name__}"
            )
        return _messages(value)

    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[dict[str, Any]]:
        tok, ex = loaded.tokenizer, loaded.extras
        features = []
        system = self.options.system_prompt
        for item in items:
            if isinstance(item, list):
                if system is not None and item[0]["role"] != "system":
                    item = [{"role": "system", "content": system}, *item]
                ids = _chat_ids(tok, item)
            elif self.uses_chat(tok):
                turns = [{"role": "system", "content": system}] if system is not None else []
                ids = _chat_ids(tok, [*turns, {"role": "user", "content": item}])
            else:
                ids = tok(self.plain_text(item))["input_ids"]
            ids = [int(i) for i in ids]
            if not ids:
                bos = getattr(tok, "bos_token_id", None)
                if bos is None:
                    bos = loaded.model.generation_config.bos_token_id
                if not isinstance(bos, int):
                    raise RowError(
                        "the prompt is empty and the model has no start token to begin from"
                    )
                ids = [bos]
            limit = ex["prompt_limit"]
            if limit is not None and len(ids) > limit:
                if not self.options.truncate_prompt:
                    raise RowError(
                        f"the prompt has {len(ids)} tokens; at most {limit} fit (context "
                        f"{ex['context']} minus max_new_tokens {ex['max_new_tokens']}). Shorten it, "
                        f"lower max_new_tokens, or set truncate_prompt=True to keep its end"
                    )
                ids = _truncate_left(ids, limit, getattr(tok, "bos_token_id", None))
            features.append({"input_ids": ids})
        return self._mark_prefix(features)

    def _mark_prefix(self, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record the prompts' common prefix when reusing it pays (see :mod:`._prefix`)."""
        opts = self.options
        if opts.reuse_prefix is False or (opts.num_beams or 1) > 1 or len(features) < 2:
            return features
        n = common_prefix_len([f["input_ids"] for f in features])
        if n >= (opts.min_prefix_tokens if opts.reuse_prefix is None else 1):
            for f in features:
                f["prefix"] = n
        return features

    def forward(self, loaded: LoadedModel, features: list[dict[str, Any]]) -> list[Any]:
        from transformers import LogitsProcessorList

        model, tok, ex = loaded.model, loaded.tokenizer, loaded.extras
        prompts = [f["input_ids"] for f in features]
        prefix = min(f.get("prefix", 0) for f in features)
        cache: dict[str, Any] = {}
        if prefix:  # the shared prefix's cache, computed once per worker
            ids, mask, cache["cache"] = prefixed_batch(loaded, prompts, prefix, ex["pad_id"])
        else:
            ids, mask = pad_batch(prompts, ex["pad_id"], "left", loaded.device)
        kwargs = generate_kwargs(self.options, model, ex["pad_id"], prompts, tok)
        grammar = self.constraint_processors(loaded, len(prompts))
        if grammar:
            kwargs["logits_processor"] = LogitsProcessorList(
                [*grammar, *kwargs.get("logits_processor", [])]
            )
        ex["generated_rows"] = ex.get("generated_rows", 0) + len(prompts)
        out = model.generate(input_ids=ids, attention_mask=mask, **cache, **kwargs)
        new = out[:, ids.shape[1] :].tolist()
        forced_at = forced_eos_budget(kwargs, model, ids.shape[1])
        return [
            self.finish_result(
                finish_row(
                    row,
                    eos_ids=ex["eos_ids"],
                    tokenizer=tok,
                    stop=self.options.stop,
                    prompt_tokens=len(prompt),
                    pad_id=ex["pad_id"],
                    forced_eos_at=forced_at,
                ),
                kwargs.get("max_new_tokens", ex["max_new_tokens"]),
            )
            for row, prompt in zip(new, prompts, strict=True)
        ]


def _is_sequence(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (list, tuple, np.ndarray))


def _messages(value: Sequence[Any]) -> list[dict[str, str]]:
    """Validate chat messages: each a {role, content} with a known role and string content."""
    messages = []
    for i, msg in enumerate(value):
        if hasattr(msg, "asDict"):
            msg = msg.asDict()
        if not isinstance(msg, Mapping):
            raise RowError(
                f"chat message {i} must be a struct<role, content>, got {type(msg).__name__}"
            )
        role, content = msg.get("role"), msg.get("content")
        if role not in CHAT_ROLES:
            raise RowError(
                f"chat message {i} has unknown role {role!r}; use one of {sorted(CHAT_ROLES)}"
            )
        if not isinstance(content, str):
            raise RowError(f"chat message {i} ({role}) has no text content")
        messages.append({"role": role, "content": content})
    if not messages:
        raise RowError("the chat has no messages")
    return messages


def _chat_ids(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """Render a chat with the tokenizer's template (a final assistant message is continued)."""
    if not getattr(tok, "chat_template", None):
        raise RowError(
            "this model's tokenizer has no chat template, so chat messages cannot be rendered; "
            "pass a string prompt (with prompt_template) instead"
        )
    cont = messages[-1]["role"] == "assistant"
    try:
        enc = tok.apply_chat_template(
            messages,
            add_generation_prompt=not cont,
            continue_final_message=cont,
            tokenize=True,
            return_dict=True,
        )
    except Exception as e:  # noqa: BLE001 - jinja raises for chats the template refuses
        raise RowError(f"the chat template refused these messages: {e}") from e
    ids = enc["input_ids"]
    return list(ids[0]) if ids and isinstance(ids[0], list) else list(ids)


def _truncate_left(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """Keep the last ``limit`` tokens, and the leading start token if there was one."""
    if bos is not None and ids and ids[0] == bos and limit > 1:
        return [bos, *ids[len(ids) - limit + 1 :]]
    return ids[len(ids) - limit :]


def _context_length(config: Any, tok: Any) -> int | None:
    """The most tokens the model attends to (config first, then the tokenizer)."""
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tok, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return None
