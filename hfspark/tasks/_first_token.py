"""Last-layer pruning: compute an encoder's last layer for the first token only.

A sequence classifier of the BERT family (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT, ELECTRA)
reads one vector of its last hidden state: the first token's (through the pooler or the
classification head). Every other position of the last layer is computed and thrown away.
:func:`prune_last_layer` swaps the last encoder layer for a :class:`FirstTokenLayer` that
projects keys and values for every token (the first token still attends to all of them) but
queries, attention output and feed-forward for the first token only. The math of the kept
position is unchanged: logits equal the full forward to float rounding (max |Δ| ~1e-7 on the
bench model), and a 6-layer model does ~14 % fewer FLOPs (bench/README.md has the speed).

Anything the module does not recognise keeps its full forward: other architectures, decoders,
cross-attention, attention kernels other than ``sdpa``/``eager``, models split over devices.

Example:
    >>> model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    >>> prune_last_layer(model)
    True
    >>> model(**batch).logits          # same logits, last layer run for position 0 only
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

__all__ = ["FirstTokenLayer", "prune_last_layer", "FIRST_TOKEN_HEADS"]

#: model types whose encoder layers follow BERT's layout (``attention.self.query`` ...).
_BERT_LAYOUT = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
#: classes whose output reads only the first position of the last hidden state.
FIRST_TOKEN_HEADS = frozenset(
    {
        "BertForSequenceClassification",
        "RobertaForSequenceClassification",
        "XLMRobertaForSequenceClassification",
        "CamembertForSequenceClassification",
        "ElectraForSequenceClassification",
    }
)
_KERNELS = frozenset({"sdpa", "eager"})


class FirstTokenLayer(nn.Module):
    """A BERT-layout encoder layer that returns the first position only: ``(batch, 1, hidden)``.

    It holds the original layer (same weights, same submodules) and calls its projections,
    attention kernel, attention output and feed-forward in the original order.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer: Any = layer  # a BERT-layout layer: its submodules are read by name

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        attn: Any = self.layer.attention.self
        batch, tokens, _ = hidden_states.shape
        first = hidden_states[:, :1]

        def heads(x: torch.Tensor, length: int) -> torch.Tensor:
            return x.view(batch, length, -1, attn.attention_head_size).transpose(1, 2)

        query = heads(attn.query(first), 1)
        key = heads(attn.key(hidden_states), tokens)
        value = heads(attn.value(hidden_states), tokens)
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[2] > 1:
            attention_mask = attention_mask[:, :, :1]  # the first query's row of the mask
        context, _ = _kernel(attn)(
            attn, query, key, value, attention_mask, dropout=0.0, scaling=attn.scaling
        )
        context = context.reshape(batch, 1, -1).contiguous()
        attention_output = self.layer.attention.output(context, first)
        return self.layer.feed_forward_chunk(attention_output)


def _kernel(attn: Any) -> Any:
    """The attention function the model itself calls: its registry's choice, eager by default."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = sys.modules[type(attn).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager)


def _bert_layout(layer: nn.Module) -> bool:
    attention = getattr(layer, "attention", None)
    attn = getattr(attention, "self", None)
    return (
        attn is not None
        and all(isinstance(getattr(attn, p, None), nn.Linear) for p in ("query", "key", "value"))
        and isinstance(getattr(attn, "attention_head_size", None), int)
        and hasattr(attn, "scaling")
        and not getattr(attn, "is_causal", False)
        and hasattr(attention, "output")
        and hasattr(layer, "feed_forward_chunk")
        and not hasattr(layer, "crossattention")
        and hasattr(sys.modules[type(attn).__module__], "eager_attention_forward")
    )


def prune_last_layer(model: nn.Module, *, head_reads_first_token: bool | None = None) -> bool:
    """Run ``model``'s last encoder layer for the first token only, when that is exact.

    Args:
        model: a loaded transformers model in eval mode.
        head_reads_first_token: whether the caller only reads position 0 of the last hidden
            state (e.g. CLS pooling of a bare encoder); None: true for the sequence
            classifiers in :data:`FIRST_TOKEN_HEADS`.

    Returns:
        True if the last layer was swapped, False if the model keeps its full forward.
    """
    if head_reads_first_token is None:
        head_reads_first_token = type(model).__name__ in FIRST_TOKEN_HEADS
    config = getattr(model, "config", None)
    if (
        not head_reads_first_token
        or config is None
        or config.model_type not in _BERT_LAYOUT
        or getattr(config, "is_decoder", False)
        or getattr(config, "_attn_implementation", None) not in _KERNELS
        or len({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()}) > 1
        or model.training
    ):
        return False
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return False
    if isinstance(layers[-1], FirstTokenLayer):
        return True
    if not _bert_layout(layers[-1]):
        return False
    layers[-1] = FirstTokenLayer(layers[-1])
    return True
