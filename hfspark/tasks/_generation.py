"""Shared helpers of the generative tasks (text-generation and the seq2seq tasks).

One options model, the ``generate()`` keyword arguments built from it, padding, per-row
seeded sampling and the output struct (text, finish reason, token counts).

Sampling is reproducible *per row*: every row gets its own ``torch.Generator`` seeded from
``seed`` and the row's input token ids, so a row's output depends neither on the other rows
of its batch nor on the batch size (a Spark task retry gives the same text).

Example:
    >>> opts = GenerationOptions(max_new_tokens=16, do_sample=True, temperature=0.8, seed=7)
    >>> finish_row([5, 6, 2], eos_ids={2}, tokenizer=tok, stop=())["finish_reason"]
    'stop'
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from hfspark.tasks.base import TaskOptions

if TYPE_CHECKING:
    import torch
    from pyspark.sql.types import StructType

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "GenerationOptions",
    "RowSampler",
    "eos_token_ids",
    "finish_row",
    "forced_eos_budget",
    "generate_kwargs",
    "generation_output_type",
    "pad_batch",
    "pad_token_id",
    "row_seeds",
]

#: what ``generate()`` gets when neither the options nor the model's generation config set a length.
DEFAULT_MAX_NEW_TOKENS = 256


class GenerationOptions(TaskOptions):
    """Options shared by the generative tasks (``None``: the model's generation config decides).

    Attributes:
        max_new_tokens: most tokens generated per row (default: the model's generation
            config, else 256).
        num_beams: beam search width (default: the model's generation config, usually 1).
        do_sample: sample instead of greedy/beam decoding (default False: deterministic).
        temperature, top_p, top_k: sampling parameters (need ``do_sample=True``).
        seed: makes sampling reproducible; each row is seeded from it and its own input.
        stop: strings that end generation; the text is cut before the first one.
        repetition_penalty: >1 discourages repeats (1.0: none).
        truncate_prompt: cut an over-long input instead of failing the row.
        max_length: most input (prompt) tokens (default: what the model can take).
        prompt_template: wraps string inputs, MLflow-style: a format string with exactly one
            ``{prompt}`` field (literal braces written ``{{`` and ``}}``).
    """

    max_new_tokens: int | None = Field(default=None, ge=1)
    num_beams: int | None = Field(default=None, ge=1)
    do_sample: bool = False
    temperature: float | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float | None = Field(default=None, gt=0)
    truncate_prompt: bool = False
    max_length: int | None = Field(default=None, ge=1)
    prompt_template: str | None = None

    @field_validator("prompt_template")
    @classmethod
    def _one_prompt_field(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as e:
            raise ValueError(f"prompt_template is not a valid format string ({e})") from e
        if fields != ["prompt"]:
            raise ValueError(
                f"prompt_template must hold '{{prompt}}' exactly once and no other field, got "
                f"{fields or 'none'}; write literal braces as '{{{{' and '}}}}'"
            )
        return value

    def render(self, text: str) -> str:
        """``text`` put into ``prompt_template`` (unchanged without a template).

        Example:
            >>> GenerationOptions(prompt_template="Q: {prompt} {{A}}:").render("hi")
            'Q: hi {A}:'
        """
        return self.prompt_template.format(prompt=text) if self.prompt_template else text

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @model_validator(mode="after")
    def _sampling_consistent(self) -> GenerationOptions:
        set_sampling = [
            k for k in ("temperature", "top_p", "top_k") if getattr(self, k) is not None
        ]
        if set_sampling and not self.do_sample:
            raise ValueError(
                f"{', '.join(set_sampling)} only apply when sampling: set do_sample=True"
            )
        if self.do_sample and (self.num_beams or 1) > 1:
            raise ValueError("do_sample=True with num_beams > 1 is not supported: pick one")
        return self


def generation_output_type() -> StructType:
    """``struct<generated_text, finish_reason, prompt_tokens, completion_tokens>``."""
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    return StructType(
        [
            StructField("generated_text", StringType()),
            StructField("finish_reason", StringType()),
            StructField("prompt_tokens", IntegerType()),
            StructField("completion_tokens", IntegerType()),
        ]
    )


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every end-of-sequence id of the model's generation config and of the tokenizer."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def pad_token_id(model: Any, tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's, the generation config's, else an eos id."""
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(getattr(model, "generation_config", None), "pad_token_id", None),
        model.config.pad_token_id if hasattr(model.config, "pad_token_id") else None,
    ):
        if isinstance(value, int):
            return value
    eos = sorted(eos_token_ids(model, tokenizer))
    return eos[0] if eos else 0


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to one ``(input_ids, attention_mask)`` pair of tensors.

    Example:
        >>> ids, mask = pad_batch([[5, 6], [7]], pad_id=0, side="left", device="cpu")
        >>> ids.tolist(), mask.tolist()
        ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    import torch

    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        cols = slice(longest - n, longest) if side == "left" else slice(0, n)
        ids[i, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def row_seeds(seed: int | None, keys: Sequence[Sequence[int]]) -> list[int]:
    """One 63-bit seed per row from ``seed`` and the row's token ids (random when no seed).

    Stable across processes and machines (sha256, not Python's salted ``hash``).
    """
    if seed is None:
        return [secrets.randbits(63) for _ in keys]
    out = []
    for key in keys:
        h = hashlib.sha256(f"{seed}:{','.join(map(str, key))}".encode())
        out.append(int.from_bytes(h.digest()[:8], "little") >> 1)
    return out


class RowSampler:
    """A logits processor that samples each row with its own generator.

    ``generate()`` runs greedy (``do_sample=False``); this processor, placed after the
    model's own processors (repetition penalty, suppressed tokens...), applies temperature,
    top-k and top-p, samples one token per row and leaves only that token finite, so greedy
    picks it.

    Args:
        seeds: one seed per batch row, in batch order.
        temperature, top_k, top_p: sampling parameters (``None``: not applied).
    """

    def __init__(
        self,
        seeds: Sequence[int],
        temperature: float | None,
        top_k: int | None,
        top_p: float | None,
    ) -> None:
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self._generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        if self._generators is None:
            self._generators = [
                torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds
            ]
        logits = scores.float()
        if self.temperature is not None and self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            drop_sorted = cum - sorted_logits.softmax(dim=-1) >= self.top_p  # keep the first over p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(dim=-1)
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self._generators):
            token = torch.multinomial(probs[row], 1, generator=gen)
            out[row, token] = 0.0
        return out


def generate_kwargs(
    options: GenerationOptions,
    model: Any,
    pad_id: int,
    keys: Sequence[Sequence[int]],
    tokenizer: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` (besides the inputs) from the task options.

    Args:
        options: the task's generation options.
        model: the loaded model (its generation config gives the defaults).
        pad_id: the padding id.
        keys: per row, the token ids that seed its sampler (its input ids).
        tokenizer: needed by ``generate`` for stop strings.
    """
    from transformers import LogitsProcessorList

    config = model.generation_config
    set_by_model = config.to_diff_dict()
    kwargs: dict[str, Any] = {"pad_token_id": pad_id, "do_sample": False}
    if options.max_new_tokens is not None:
        kwargs["max_new_tokens"] = options.max_new_tokens
    elif "max_new_tokens" not in set_by_model and "max_length" not in set_by_model:
        kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    if options.num_beams is not None:
        kwargs["num_beams"] = options.num_beams
    elif options.do_sample:
        kwargs["num_beams"] = 1
    if options.repetition_penalty is not None:
        kwargs["repetition_penalty"] = options.repetition_penalty
    if options.stop:
        kwargs["stop_strings"] = list(options.stop)
        kwargs["tokenizer"] = tokenizer
    # the model's own sampling defaults (e.g. temperature 0.6) only matter when sampling
    for name in ("temperature", "top_p", "top_k"):
        kwargs[name] = None
    if options.do_sample:
        sampler = RowSampler(
            row_seeds(options.seed, keys),
            options.temperature if options.temperature is not None else config.temperature,
            options.top_k if options.top_k is not None else config.top_k,
            options.top_p if options.top_p is not None else config.top_p,
        )
        kwargs["logits_processor"] = LogitsProcessorList([sampler])
    return kwargs


def forced_eos_budget(kwargs: dict[str, Any], model: Any, start_len: int) -> int | None:
    """How many new tokens ``generate`` may make when the model forces a final eos, else None.

    Args:
        kwargs: the ``generate`` keyword arguments.
        model: the model (its generation config).
        start_len: the length of the sequences generation starts from (padded prompt, or 1
            for an encoder-decoder's decoder start token).
    """
    config = model.generation_config
    if getattr(config, "forced_eos_token_id", None) is None:
        return None
    if kwargs.get("max_new_tokens") is not None:
        return int(kwargs["max_new_tokens"])
    if config.max_new_tokens is not None:
        return int(config.max_new_tokens)
    return int(config.max_length) - start_len if config.max_length else None


def finish_row(
    generated: Sequence[int],
    *,
    eos_ids: set[int],
    tokenizer: Any,
    stop: Sequence[str],
    prompt_tokens: int = 0,
    pad_id: int | None = None,
    forced_eos_at: int | None = None,
) -> dict[str, Any]:
    """Turn one row's generated token ids into the output struct.

    The ids are cut after the first eos (``finish_reason`` "stop"); without one the row
    ran out of tokens ("length"). The text is then cut before the first stop string
    ("stop"), and ``completion_tokens`` counts the tokens needed to produce it.

    Args:
        generated: the new token ids of the row (no prompt).
        eos_ids: end-of-sequence ids.
        tokenizer: decodes the ids.
        stop: stop strings.
        prompt_tokens: the row's input token count (copied to the output).
        pad_id: trailing pad ids (a row stopped early by a stop string) are dropped.
        forced_eos_at: the token budget when the model forces an eos as the last token
            (BART's ``forced_eos_token_id``): an eos there means the row ran out ("length").
    """
    tokens = [int(t) for t in generated]
    finish = "length"
    for i, t in enumerate(tokens):
        if t in eos_ids:
            tokens, finish = tokens[: i + 1], "stop"
            if forced_eos_at is not None and i + 1 >= forced_eos_at:
                finish = "length"
            break
    else:
        while tokens and pad_id is not None and tokens[-1] == pad_id:
            tokens.pop()
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = _first_stop(text, stop)
    if cut is not None:
        text, finish = text[:cut], "stop"
        tokens = tokens[: _tokens_to_stop(tokens, tokenizer, stop)]
    return {
        "generated_text": text,
        "finish_reason": finish,
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": len(tokens),
    }


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _tokens_to_stop(tokens: list[int], tokenizer: Any, stop: Sequence[str]) -> int:
    """The fewest leading tokens whose text holds a stop string (binary search)."""
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if _first_stop(tokenizer.decode(tokens[:mid], skip_special_tokens=True), stop) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo
