"""Dual encoders (CLIP, SigLIP and their kin): the text and image towers and their shared space.

A dual encoder has ``get_text_features`` and ``get_image_features``; both return projected
vectors of the same size, so after L2 normalisation a dot product compares a text with an
image. ``feature-extraction`` uses the text tower, ``image-feature-extraction`` the image
tower, ``zero-shot-image-classification`` both and the model's logit scale (and bias).

SigLIP's text tower pools its *last* token, so its texts are always padded to the 64 tokens
it was trained with (as transformers' zero-shot-image-classification pipeline does); CLIP
pools its end-of-text token, so right padding to the batch's longest text changes nothing.

Example:
    >>> is_dual_encoder(clip_model)
    True
    >>> text_embeddings(loaded, encode(loaded.tokenizer, ["a cat"], max_length=77)).shape
    torch.Size([1, 512])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hfspark.tasks.base import LoadedModel

__all__ = [
    "SIGLIP_TEXT_LENGTH",
    "fixed_text_length",
    "image_embeddings",
    "is_dual_encoder",
    "similarity_logits",
    "text_embeddings",
    "uses_sigmoid",
]

#: the text length SigLIP models are trained and used with.
SIGLIP_TEXT_LENGTH = 64


def is_dual_encoder(model: Any) -> bool:
    """Whether ``model`` has a text and an image tower (``get_text_features``/``get_image_features``)."""
    return callable(getattr(model, "get_text_features", None)) and callable(
        getattr(model, "get_image_features", None)
    )


def fixed_text_length(model: Any) -> int | None:
    """The padded text length the model needs (SigLIP: 64), or None (pad to the longest)."""
    return SIGLIP_TEXT_LENGTH if "siglip" in str(getattr(model.config, "model_type", "")) else None


def uses_sigmoid(model: Any) -> bool:
    """SigLIP-style models score each (image, text) pair on its own: a sigmoid, not a softmax."""
    return getattr(model, "logit_bias", None) is not None


def _vectors(out: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is the projection."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def text_embeddings(loaded: LoadedModel, features: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """Projected text vectors ``(batch, dim)`` (float32, not normalised) of tokenized texts."""
    tok, model = loaded.tokenizer, loaded.model
    names = [k for k in ("input_ids", "attention_mask") if k in features[0]]
    rows = [{k: f[k] for k in names} for f in features]
    fixed = fixed_text_length(model)
    if fixed is not None:
        batch = tok.pad(
            rows, padding="max_length", max_length=fixed, padding_side="right", return_tensors="pt"
        )
    else:
        batch = tok.pad(rows, padding=True, padding_side="right", return_tensors="pt")
    batch = {k: v.to(loaded.device) for k, v in batch.items()}
    return _vectors(model.get_text_features(**batch)).float()


def image_embeddings(loaded: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    """Projected image vectors ``(batch, dim)`` (float32, not normalised)."""
    return _vectors(loaded.model.get_image_features(pixel_values=pixels)).float()


def similarity_logits(model: Any, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``(images, texts)`` logits as the model's own forward computes them: scaled cosine (+ bias)."""
    import torch

    images = torch.nn.functional.normalize(images, dim=-1)
    texts = torch.nn.functional.normalize(texts, dim=-1)
    logits = images @ texts.t() * model.logit_scale.float().exp()
    if uses_sigmoid(model):
        logits = logits + model.logit_bias.float()
    return logits
