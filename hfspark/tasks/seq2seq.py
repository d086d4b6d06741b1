"""summarization, translation and text2text-generation with encoder-decoder models.

transformers 5 removed these pipelines; the three tasks share one adapter built on
``AutoModelForSeq2SeqLM.generate``, with the same options, batching and output struct as
text-generation: ``struct<generated_text, finish_reason, prompt_tokens, completion_tokens>``.

Input prefixes: the ``prefix`` option, else (T5-style models) the prefix the model's
``config.task_specific_params`` gives for the task (``"summarize: "``,
``"translate English to German: "``). Multilingual translation models (NLLB, M2M100,
mBART) take ``source_lang``/``target_lang`` as their language codes instead.

Example:
    >>> adapter = Translation({"source_lang": "en", "target_lang": "de"})
    >>> adapter.options.target_lang
    'de'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hfspark.errors import ConfigError, RowError
from hfspark.tasks._generation import (
    eos_token_ids,
    finish_row,
    forced_eos_budget,
    generate_kwargs,
    pad_batch,
    pad_token_id,
)
from hfspark.tasks._llm import LLMAdapter, LLMOptions
from hfspark.tasks.base import LoadedModel

__all__ = [
    "Seq2SeqGeneration",
    "Seq2SeqOptions",
    "Summarization",
    "Text2TextGeneration",
    "Translation",
    "TranslationOptions",
]

# ISO codes -> the English names T5-style prefixes use ("translate English to German: ").
_LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "ro": "Romanian",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "pl": "Polish",
    "sv": "Swedish",
}


class Seq2SeqOptions(LLMOptions):
    """Options of the seq2seq tasks.

    Attributes:
        prefix: text put before every input (e.g. ``"summarize: "``); default: the model's
            task-specific prefix, if any. It goes before the ``prompt_template``'s text.
        truncate_prompt: keep the beginning of an over-long input instead of failing the row.
    """

    prefix: str | None = None


class TranslationOptions(Seq2SeqOptions):
    """Options of translation: ``source_lang``/``target_lang`` (codes such as ``en``/``de``,
    or the model's own codes such as ``eng_Latn``/``fra_Latn`` for NLLB)."""

    source_lang: str | None = None
    target_lang: str | None = None


class Seq2SeqGeneration(LLMAdapter):
    """Encoder-decoder generation; subclasses only name the task and its default prefix."""

    auto_model: ClassVar[str] = "AutoModelForSeq2SeqLM"
    architectures: ClassVar[tuple[str, ...]] = ("ForConditionalGeneration", "EncoderDecoderModel")
    components: ClassVar[tuple[str, ...]] = ("tokenizer",)
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {"text": ("string",)}
    Options: ClassVar[type[Seq2SeqOptions]] = Seq2SeqOptions
    options: Seq2SeqOptions
    #: key of ``config.task_specific_params`` holding the default prefix (None: no default).
    task_params_key: ClassVar[str | None] = None

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        model, tok = loaded.model, loaded.tokenizer
        if not getattr(model.config, "is_encoder_decoder", False):
            raise ConfigError(
                f"Task {self.name!r} needs an encoder-decoder model (T5, BART, Marian...); "
                f"{type(model).__name__} is not one. Use text-generation for decoder-only models"
            )
        loaded.extras.update(
            eos_ids=eos_token_ids(model, tok),
            pad_id=pad_token_id(model, tok),
            input_limit=self.options.max_length or _input_limit(model.config, tok),
            prefix=self._prefix(model.config),
            generate={},
        )
        return loaded

    def _prefix(self, config: Any) -> str:
        if self.options.prefix is not None:
            return self.options.prefix
        params = getattr(config, "task_specific_params", None) or {}
        key = self.task_params_key
        if key and isinstance(params.get(key), Mapping):
            return str(params[key].get("prefix") or "")
        return ""

    def convert(self, value: Any) -> str:
        return self.plain_text(self.prompt_text(value))

    def prepare(self, loaded: LoadedModel, items: list[str]) -> list[dict[str, Any]]:
        tok, ex = loaded.tokenizer, loaded.extras
        limit = ex["input_limit"]
        features = []
        for text in items:
            ids = list(tok(ex["prefix"] + text)["input_ids"])
            if limit is not None and len(ids) > limit:
                if not self.options.truncate_prompt:
                    raise RowError(
                        f"the input has {len(ids)} tokens; this model takes at most {limit}. "
                        f"Shorten it or set truncate_prompt=True to keep its beginning"
                    )
                ids = list(tok(ex["prefix"] + text, truncation=True, max_length=limit)["input_ids"])
            features.append({"input_ids": [int(i) for i in ids]})
        return features

    def forward(self, loaded: LoadedModel, features: list[dict[str, Any]]) -> list[Any]:
        from transformers import LogitsProcessorList

        model, tok, ex = loaded.model, loaded.tokenizer, loaded.extras
        inputs = [f["input_ids"] for f in features]
        ids, mask = pad_batch(inputs, ex["pad_id"], "right", loaded.device)
        kwargs = {
            **generate_kwargs(self.options, model, ex["pad_id"], inputs, tok),
            **ex["generate"],
        }
        grammar = self.constraint_processors(loaded, len(inputs))
        if grammar:
            kwargs["logits_processor"] = LogitsProcessorList(
                [*grammar, *kwargs.get("logits_processor", [])]
            )
        ex["generated_rows"] = ex.get("generated_rows", 0) + len(inputs)
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, 1:].tolist()  # drop the decoder start token
        forced_at = forced_eos_budget(kwargs, model, 1)
        return [
            self.finish_result(
                finish_row(
                    row,
                    eos_ids=ex["eos_ids"],
                    tokenizer=tok,
                    stop=self.options.stop,
                    prompt_tokens=len(inp),
                    pad_id=ex["pad_id"],
                    forced_eos_at=forced_at,
                ),
                forced_at or kwargs.get("max_new_tokens"),
            )
            for row, inp in zip(new, inputs, strict=True)
        ]


class Summarization(Seq2SeqGeneration):
    """Summarize texts (T5 models get their ``"summarize: "`` prefix by default)."""

    name: ClassVar[str] = "summarization"
    task_params_key: ClassVar[str | None] = "summarization"


class Text2TextGeneration(Seq2SeqGeneration):
    """Any text-to-text generation; the input is used as given (plus ``prefix`` if set)."""

    name: ClassVar[str] = "text2text-generation"


class Translation(Seq2SeqGeneration):
    """Translate texts between ``source_lang`` and ``target_lang``."""

    name: ClassVar[str] = "translation"
    Options: ClassVar[type[TranslationOptions]] = TranslationOptions
    options: TranslationOptions

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        tok, src, tgt = loaded.tokenizer, self.options.source_lang, self.options.target_lang
        if hasattr(tok, "src_lang"):  # multilingual tokenizer (NLLB, M2M100, mBART-50...)
            if not (src and tgt):
                raise ConfigError(
                    f"this translation model ({type(tok).__name__}) translates between many "
                    f"languages: set both source_lang and target_lang (e.g. its codes "
                    f"'eng_Latn'/'fra_Latn' or 'en'/'fr')"
                )
            tok.src_lang = src
            loaded.extras["generate"] = {"forced_bos_token_id": _lang_token_id(tok, tgt)}
        return loaded

    def _prefix(self, config: Any) -> str:
        opts = self.options
        if opts.prefix is not None or not (opts.source_lang and opts.target_lang):
            return super()._prefix(config)
        src, tgt = opts.source_lang, opts.target_lang
        params = getattr(config, "task_specific_params", None) or {}
        entry = params.get(f"translation_{src}_to_{tgt}")
        if isinstance(entry, Mapping) and entry.get("prefix") is not None:
            return str(entry["prefix"])
        if getattr(config, "model_type", "") in ("t5", "mt5", "umt5", "longt5"):
            return f"translate {_LANGUAGE_NAMES.get(src, src)} to {_LANGUAGE_NAMES.get(tgt, tgt)}: "
        return ""


def _lang_token_id(tok: Any, lang: str) -> int:
    """The token id that starts output in ``lang`` for a multilingual tokenizer."""
    if hasattr(tok, "get_lang_id"):  # M2M100: "fr" -> "__fr__"
        try:
            return int(tok.get_lang_id(lang))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"target_lang {lang!r} is not a language of this model") from e
    token_id = tok.convert_tokens_to_ids(lang)
    if token_id is None or token_id == tok.unk_token_id:
        raise ConfigError(
            f"target_lang {lang!r} is not a language token of this model's tokenizer "
            f"(NLLB uses codes like 'fra_Latn', mBART-50 'fr_XX')"
        )
    return int(token_id)


def _input_limit(config: Any, tok: Any) -> int | None:
    """The longest input the encoder takes: the tokenizer's limit, else the position table."""
    value = getattr(tok, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None
