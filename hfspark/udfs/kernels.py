"""CPU matrix kernels: a model's float32 ``nn.Linear`` layers on oneDNN with prepacked weights.

On a CPU, almost all of an encoder's time is in its Linear layers. torch runs them with the
BLAS it was built with (MKL on x86); the same build also carries oneDNN, whose fp32 GEMM on
a weight reordered once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``,
what inductor's freezing uses) ran 2.1-2.4x MKL's single-thread rate on this project's AMD
EPYC machine, and all-MiniLM-L6-v2 end to end 1.65x (52 vs 31 rows/s per core, embeddings
within 2e-7 of torch's).

:func:`use_onednn` swaps every plain float32 CPU ``nn.Linear`` of a model for a
:class:`PackedLinear` that keeps the original parameters (tied weights, ``.weight.dtype``
checks and ``state_dict`` are unchanged) and adds the packed copy. With ``mode="auto"`` it
first times both kernels on the model's own widest layer and keeps torch's when oneDNN is not
at least :data:`MIN_GAIN` faster (other CPUs, other BLAS builds) or when the two disagree.

Example:
    >>> report = use_onednn(model, mode="auto")
    >>> report["kernels"], report["layers"]
    ('onednn', 37)
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["PackedLinear", "use_onednn", "MIN_GAIN"]

#: oneDNN must be at least this much faster than torch's BLAS for ``auto`` to use it.
MIN_GAIN = 1.1

Mode = Literal["auto", "onednn", "aten"]


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` whose CPU float32 inference calls oneDNN with a prepacked weight.

    It shares ``weight`` and ``bias`` with the layer it replaces; anything else (training, a
    GPU tensor, another dtype) takes ``nn.Linear``'s own path.
    """

    def __init__(self, layer: nn.Linear) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: no fresh parameters
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.weight, self.bias = layer.weight, layer.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype is torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled():
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return super().forward(x)


def _eligible(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, name, layer) of every plain float32 CPU ``nn.Linear`` in ``model``."""
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if (
                type(child) is nn.Linear
                and child.weight.dtype is torch.float32
                and child.weight.device.type == "cpu"
            ):
                found.append((parent, name, child))
    return found


def _rate(fn: Any, reps: int = 5) -> float:
    """Calls per second of ``fn``, best of ``reps`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return 1.0 / max(best, 1e-9)


def _probe(packed: PackedLinear, rows: int = 256) -> tuple[float, float]:
    """(oneDNN rate / torch rate, largest difference) of ``packed`` on ``rows`` inputs."""
    x = torch.randn(rows, packed.in_features, generator=torch.Generator().manual_seed(0))

    def blas() -> torch.Tensor:  # torch's own kernel on the same parameters
        return nn.functional.linear(x, packed.weight, packed.bias)

    with torch.inference_mode():
        ours, theirs = packed(x), blas()
        scale = float(theirs.abs().max()) or 1.0
        diff = float((ours - theirs).abs().max()) / scale
        gain = _rate(lambda: packed(x)) / _rate(blas)
    return gain, diff


def _available() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


def use_onednn(model: nn.Module, mode: Mode = "auto") -> dict[str, Any]:
    """Swap ``model``'s float32 CPU Linear layers for :class:`PackedLinear` (in place).

    Args:
        model: a torch module in eval mode.
        mode: ``auto`` (oneDNN when this torch has it and it is faster here), ``onednn``
            (whenever this torch has it), ``aten`` (leave the model as it is).

    Returns:
        ``{"kernels": "onednn" | "aten", "layers": N, "gain": x, "why": ...}``: what runs the
        Linear layers now; ``gain`` is oneDNN's measured speed over torch's on the widest layer.

    Example:
        >>> use_onednn(model, mode="aten")
        {'kernels': 'aten', 'layers': 0, 'why': 'cpu_kernels=aten'}
    """
    if mode == "aten":
        return {"kernels": "aten", "layers": 0, "why": "cpu_kernels=aten"}
    layers = _eligible(model)
    if not layers:
        return {"kernels": "aten", "layers": 0, "why": "no float32 CPU Linear layers"}
    if not _available():
        return {"kernels": "aten", "layers": 0, "why": "this torch build has no oneDNN linear"}
    report: dict[str, Any] = {}
    packed: dict[int, PackedLinear] = {}
    if mode == "auto":
        widest = max(layers, key=lambda t: t[2].in_features * t[2].out_features)[2]
        packed[id(widest)] = PackedLinear(widest)  # packed once: probed, then kept
        gain, diff = _probe(packed[id(widest)])
        report = {"gain": round(gain, 2), "diff": diff}
        if diff > 1e-4:
            return {**report, "kernels": "aten", "layers": 0, "why": "oneDNN disagrees"}
        if gain < MIN_GAIN:
            return {**report, "kernels": "aten", "layers": 0, "why": "oneDNN not faster here"}
    for parent, name, layer in layers:
        setattr(parent, name, packed.get(id(layer)) or PackedLinear(layer))
    return {**report, "kernels": "onednn", "layers": len(layers), "why": f"cpu_kernels={mode}"}
