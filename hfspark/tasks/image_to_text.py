"""image-to-text: caption images with an encoder-decoder captioner (VisionEncoderDecoder, BLIP).

Input: an image (file bytes, a path/URI read on the executor, or a binaryFile struct; see
:mod:`hfspark.tasks._image`), plus an optional text ``prompt`` the caption starts with (a
second input field, else the ``prompt`` option; BLIP-style conditional captioning). Output:
the generative struct of the text tasks, ``struct<generated_text, finish_reason,
prompt_tokens, completion_tokens>`` (``generated_text`` without the prompt;
``prompt_tokens`` counts prompt tokens, not image patches).

Generation options are those of text-generation (greedy by default; ``do_sample`` with a
``seed`` samples each row reproducibly, seeded by its prompt and pixels). Rows with the same
image size and prompt are generated together, so a caption never depends on its batch.
transformers 5 has no image-to-text pipeline; the result is ``model.generate``'s.

Example:
    >>> adapter = ImageToText({"max_new_tokens": 20})
    >>> adapter.output_type().simpleString()
    'struct<generated_text:string,finish_reason:string,prompt_tokens:int,completion_tokens:int>'
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hfspark.errors import ModelValidationError, RowError
from hfspark.tasks._generation import (
    DEFAULT_MAX_NEW_TOKENS,
    GenerationOptions,
    eos_token_ids,
    finish_row,
    generate_kwargs,
    generation_output_type,
    pad_token_id,
)
from hfspark.tasks._image import (
    IMAGE_TYPES,
    ImageOptions,
    ImageTask,
    load_image,
    pixel_batch,
    preprocess,
)
from hfspark.tasks.base import LoadedModel

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["ImageToText", "ImageToTextOptions"]


class ImageToTextOptions(ImageOptions, GenerationOptions):
    """Options of ``image-to-text``: those of text-generation, the image limits, and a prompt.

    Attributes:
        prompt: the text every caption starts with (a row's own ``prompt`` input wins).
        max_new_tokens, num_beams, do_sample, temperature, top_p, top_k, seed, stop,
            repetition_penalty, prompt_template: see
            :class:`~hfspark.tasks._generation.GenerationOptions`.
        max_pixels, max_file_bytes: see :class:`~hfspark.tasks._image.ImageOptions`.
    """

    prompt: str | None = None


class ImageToText(ImageTask):
    """Adapter of ``image-to-text`` (alias ``image-captioning``)."""

    name: ClassVar[str] = "image-to-text"
    auto_model: ClassVar[str] = "AutoModelForImageTextToText"
    architectures: ClassVar[tuple[str, ...]] = (
        "VisionEncoderDecoderModel",
        "BlipForConditionalGeneration",
    )
    components: ClassVar[tuple[str, ...]] = ("tokenizer", "image_processor")
    input_fields: ClassVar[tuple[str, ...]] = ("image", "prompt")
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "image": IMAGE_TYPES,
        "prompt": ("string",),
    }
    optional_fields: ClassVar[tuple[str, ...]] = ("prompt",)
    Options: ClassVar[type[ImageToTextOptions]] = ImageToTextOptions
    options: ImageToTextOptions

    def output_type(self) -> DataType:
        return generation_output_type()

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        model, tok = loaded.model, loaded.tokenizer
        kind = str(getattr(model.config, "model_type", ""))
        if kind not in ("vision-encoder-decoder", "blip"):
            raise ModelValidationError(
                f"image-to-text runs encoder-decoder captioners (VisionEncoderDecoder, BLIP); "
                f"{type(model).__name__} in {model_dir} is not one."
            )
        text = (
            model.config.decoder if kind == "vision-encoder-decoder" else model.config.text_config
        )
        eos = eos_token_ids(model, tok)
        if kind == "blip":
            eos.add(int(text.sep_token_id))  # BLIP's decoder stops at [SEP]
        limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
        loaded.extras.update(
            blip=kind == "blip",
            eos_ids=eos,
            pad_id=pad_token_id(model, tok),
            limit=int(limit) if limit else None,
        )
        return loaded

    def convert(self, value: Any) -> tuple[Any, str | None]:
        """A row (an image, or ``{image, prompt}``) -> (RGB image, its prompt or None)."""
        row = value.asDict() if hasattr(value, "asDict") else value
        if isinstance(row, Mapping) and "image" in row:
            image, prompt = row["image"], row.get("prompt")
        else:
            image, prompt = value, None
        if prompt is not None and not isinstance(prompt, str):
            raise RowError(f"'prompt' must be a string, got {type(prompt).__name__}")
        prompt = prompt if prompt is not None else self.options.prompt
        if prompt is not None:
            prompt = self.options.render(prompt)
        return load_image(image, self.options.max_pixels, self.options.max_file_bytes), prompt

    def prepare(self, loaded: LoadedModel, items: list[tuple[Any, str | None]]) -> list[dict]:
        pixels = preprocess(loaded, [image for image, _ in items])
        features = []
        for p, (_, prompt) in zip(pixels, items, strict=True):
            inputs, prefix = self._prompt_ids(loaded, prompt)
            limit = loaded.extras["limit"]
            if limit is not None and len(prefix) >= limit:
                raise RowError(
                    f"the prompt has {len(prefix)} tokens; at most {limit - 1} fit this "
                    f"captioner's decoder. Shorten it"
                )
            key = [*prefix, zlib.crc32(p.numpy().tobytes())]  # per-row sampling seed
            features.append({"pixel_values": p, "inputs": inputs, "prefix": prefix, "key": key})
        return features

    def _prompt_ids(
        self, loaded: LoadedModel, prompt: str | None
    ) -> tuple[list[int] | None, list[int]]:
        """(what generate gets as its prompt, the token ids its output starts with)."""
        tok, model = loaded.tokenizer, loaded.model
        if loaded.extras["blip"]:  # BLIP swaps [CLS] for its bos token and drops the last [SEP]
            bos = int(model.config.text_config.bos_token_id)
            if prompt is None:
                return None, [bos]
            ids = [int(i) for i in tok(prompt)["input_ids"]]
            return ids, [bos, *ids[1:-1]]
        start = int(model.generation_config.decoder_start_token_id)
        if prompt is None:
            return None, [start]
        ids = [start, *(int(i) for i in tok(prompt, add_special_tokens=False)["input_ids"])]
        return ids, ids

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[dict[str, Any]]:
        import torch

        model, tok, ex = loaded.model, loaded.tokenizer, loaded.extras
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(features):  # same image size and prompt: one generate call
            groups.setdefault((tuple(f["pixel_values"].shape), tuple(f["prefix"])), []).append(i)
        results: list[Any] = [None] * len(features)
        for rows in groups.values():
            first = features[rows[0]]
            kwargs = generate_kwargs(
                self.options, model, ex["pad_id"], [features[i]["key"] for i in rows], tok
            )
            pixels = pixel_batch(loaded, [features[i]["pixel_values"] for i in rows])
            if first["inputs"] is not None:
                ids = torch.tensor([first["inputs"]] * len(rows), device=loaded.device)
                kwargs["input_ids" if ex["blip"] else "decoder_input_ids"] = ids
            if ex[
                "blip"
            ]:  # BLIP's generate sets its own pad/eos ids; its decoder has its own config
                kwargs.pop("pad_token_id")
                kwargs.setdefault(
                    "max_new_tokens",
                    model.generation_config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                )
            out = model.generate(pixel_values=pixels, **kwargs)
            n_prefix = len(first["prefix"])
            for i, seq in zip(rows, out[:, n_prefix:].tolist(), strict=True):
                results[i] = finish_row(
                    seq,
                    eos_ids=ex["eos_ids"],
                    tokenizer=tok,
                    stop=self.options.stop,
                    prompt_tokens=n_prefix - 1,
                    pad_id=ex["pad_id"],
                )
        return results
