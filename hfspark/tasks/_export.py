"""Export an encoder task's :class:`~hfspark.tasks._graph.Graph` to ONNX, checked against torch.

:func:`export_verified` traces the graph's torch function (the task's real model call: the
pruned last layer, the pooling) with ``torch.onnx.export`` (opset 17, dynamic batch and
token axes), runs the file in ONNX Runtime on a probe batch of real text (rows of different
lengths, padding, a text pair) and compares every output with torch's. It also checks that the
light tokenizer an ONNX worker uses (``tokenizers`` only) gives the same ids and offsets as the
model's own tokenizer class. The result is written beside the graph as ``<name>.json``
(:func:`~hfspark.tasks._graph.read_record` reads it back, and only for that very file).

optimum's exporter covers whole models, not a task's own call (a pruned last layer, pooling
inside the graph), so torch's exporter is used; the check is what makes a graph safe to use.
The model is traced with transformers' eager attention (:func:`eager_attention`), whatever
kernel its torch forward uses: the SDPA kernel traces into a longer graph (NaN guards, shape
arithmetic) that ONNX Runtime runs ~8 % slower on CPU for the same numbers.

Example:
    >>> record = export_verified(adapter, loaded, Path("cache/onnx/text-classification-pruned.onnx"))
    >>> record["passed"], record["max_diff"] < 1e-4
    (True, True)
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hfspark.tasks._graph import TOLERANCE, Graph, OrtRunner, collate_arrays, file_sha256

if TYPE_CHECKING:
    from hfspark.tasks.base import LoadedModel, TaskAdapter

__all__ = [
    "export_graph",
    "eager_attention",
    "compare",
    "export_verified",
    "verify_graph",
    "PROBE_TEXTS",
]

log = logging.getLogger("hfspark.onnx")

#: the probe batch: rows of different lengths (padding), one with a text pair.
PROBE_TEXTS = (
    "Spark runs the model once per worker and keeps it.",
    "Short one.",
    "A longer row, so that the batch is padded: the quick brown fox jumps over the lazy dog, "
    "then naps in the afternoon sun while the data engineers wait for their embeddings.",
)
PROBE_PAIRS = (None, "This text is about sleeping.", None)
_OPSET = 17


def _wrapper(graph: Graph, module: Any) -> Any:
    import torch

    class GraphModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = module  # registered, so its weights are the graph's initializers

        def forward(self, *args: Any) -> tuple[Any, ...]:
            out = graph.fn(**dict(zip(graph.inputs, args, strict=True)))
            return tuple(out[k] for k in graph.outputs)

    return GraphModule().eval()


@contextmanager
def eager_attention(module: Any) -> Iterator[None]:
    """Run ``module`` with transformers' eager attention inside the block, then restore its own.

    A model that does not choose a kernel, or cannot switch, is left as it is. The graph's
    check compares the export with the model's own kernel, so a difference is caught there.

    Example:
        >>> with eager_attention(model):
        ...     model.config._attn_implementation
        'eager'
    """
    before = getattr(getattr(module, "config", None), "_attn_implementation", None)
    switch = getattr(module, "set_attn_implementation", None)
    if before in (None, "eager") or switch is None:
        yield
        return
    try:
        switch("eager")
    except (ValueError, ImportError, AttributeError) as e:  # a model without an eager kernel
        log.info("hfspark: exporting with the model's %s attention (%s)", before, e)
        yield
        return
    try:
        yield
    finally:
        switch(before)


def export_graph(graph: Graph, module: Any, inputs: dict[str, np.ndarray], path: Path) -> None:
    """Trace ``graph`` (its model ``module``) on ``inputs`` into the ONNX file ``path``."""
    import torch

    axes: dict[str, dict[int, str]] = {
        name: ({0: "batch"} if name in graph.per_row else {0: "batch", 1: "tokens"})
        for name in graph.inputs
    }
    for name in graph.outputs:
        axes[name] = {0: "batch"}
    args = tuple(torch.from_numpy(inputs[k]) for k in graph.inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with (
        torch.inference_mode(False),
        torch.no_grad(),
        warnings.catch_warnings(),
        eager_attention(module),
    ):
        warnings.simplefilter("ignore")  # tracer notes on shapes: the check runs two shapes
        torch.onnx.export(
            _wrapper(graph, module),
            args,
            str(tmp),
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes=axes,
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    os.replace(tmp, path)


def compare(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[float, str]:
    """The worst output difference, relative to the output's scale, and where it is."""
    worst, where = 0.0, ""
    for name, ref in expected.items():
        out = got.get(name)
        if out is None or out.shape != ref.shape:
            return float(
                "inf"
            ), f"{name}: shape {None if out is None else out.shape} != {ref.shape}"
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        diff = float(np.abs(out - ref).max(initial=0.0)) / scale
        if ref.ndim == 2 and name == "embedding":  # pooled vectors: the direction matters
            cos = (out * ref).sum(1) / (
                np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12
            )
            diff = max(diff, float(1.0 - cos.min()) * TOLERANCE / 1e-5)
        if not np.isfinite(diff) or diff > worst:
            worst, where = diff, name
    return worst, where


def _probe(
    adapter: TaskAdapter, loaded: LoadedModel, graph: Graph, rows: int = 3, max_length: int = 64
) -> dict[str, np.ndarray]:
    """A padded probe batch of real text; a second, smaller shape checks the dynamic axes."""
    from hfspark.tasks._text import encode

    tok = loaded.tokenizer
    texts, pairs = list(PROBE_TEXTS[-rows:]), list(PROBE_PAIRS[-rows:])
    feats = encode(tok, texts, pairs, max_length=max_length)
    inputs = collate_arrays(tok, feats, [k for k in graph.inputs if k not in graph.per_row])
    lengths = np.array([len(f["input_ids"]) for f in feats], dtype=np.int64)
    for name in graph.per_row:  # e.g. fill-mask's mask position: any real token will do
        inputs[name] = lengths // 2
    return inputs


def _same_tokens(loaded: LoadedModel, light: Any) -> str | None:
    """None when the light tokenizer encodes and decodes the probe as the model's own does."""
    texts, pairs = list(PROBE_TEXTS), ["x" if p is None else p for p in PROBE_PAIRS]
    for args in ((texts,), (texts, pairs)):
        kw: dict[str, Any] = {"truncation": True, "max_length": 32, "return_offsets_mapping": True}
        a, b = loaded.tokenizer(*args, **kw), light(*args, **kw)
        for key in ("input_ids", "offset_mapping", *light.model_input_names):
            if key in a and list(a[key]) != list(b.get(key, [])):
                return f"the light tokenizer's {key} differ"
        if a.word_ids(0) != b.word_ids(0) or a.sequence_ids(0) != b.sequence_ids(0):
            return "the light tokenizer's word ids differ"
        ids = a["input_ids"][0]
        if loaded.tokenizer.decode(ids) != light.decode(ids):
            return "the light tokenizer decodes differently"
    return None


def export_verified(
    adapter: TaskAdapter, loaded: LoadedModel, path: Path, tokenizer_folder: Path
) -> dict[str, Any]:
    """Export the adapter's graph of a torch-loaded model to ``path`` and check it.

    Returns the record written to ``path.with_suffix('.json')`` (see :func:`verify_graph`).
    A graph that fails is kept on disk with ``passed: false`` so the next worker does not
    export it again.
    """
    start = time.perf_counter()
    try:
        graph = adapter.graph(loaded)
        export_graph(graph, loaded.model, _probe(adapter, loaded, graph), path)
    except Exception as e:  # noqa: BLE001 - an export that fails means: run torch
        record = {"task": adapter.name, "tolerance": TOLERANCE, "passed": False, "max_diff": None}
        record.update(error=f"{type(e).__name__}: {e}"[:500], sha256=None, light_tokenizer=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".json").write_text(json.dumps(record, indent=1))
        return record
    record = verify_graph(adapter, loaded, path, tokenizer_folder)
    record["export_seconds"] = round(time.perf_counter() - start, 3)
    path.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return record


def verify_graph(
    adapter: TaskAdapter, loaded: LoadedModel, path: Path, tokenizer_folder: Path
) -> dict[str, Any]:
    """Check the graph file ``path`` against the torch forward of ``loaded`` on a probe batch.

    Returns the record: ``passed``, ``max_diff`` (relative to each output's scale),
    ``tolerance``, ``sha256`` of the graph, its token inputs, and whether the light tokenizer
    (``tokenizers`` only) encodes as the model's own class does.
    """
    from hfspark.tasks._graph import light_tokenizer

    record: dict[str, Any] = {"task": adapter.name, "tolerance": TOLERANCE}
    token_inputs: list[str] = []
    try:
        graph = adapter.graph(loaded)
        token_inputs = [k for k in graph.inputs if k not in graph.per_row]
        runner, worst, where = OrtRunner(path, threads=1), 0.0, ""
        for inputs in (_probe(adapter, loaded, graph), _probe(adapter, loaded, graph, 2, 12)):
            expected = {k: v for k, v in adapter.run(loaded, inputs).items() if k in graph.outputs}
            diff, name = compare(expected, runner(inputs))
            if not diff <= worst:
                worst, where = diff, name
        record.update(key=graph.key, passed=worst <= TOLERANCE, max_diff=worst, worst_output=where)
    except Exception as e:  # noqa: BLE001 - a graph that does not run is refused
        record.update(passed=False, max_diff=None, error=f"{type(e).__name__}: {e}"[:500])
    try:
        mismatch = _same_tokens(loaded, light_tokenizer(tokenizer_folder, token_inputs))
    except Exception as e:  # noqa: BLE001 - no light tokenizer: the model's own class is used
        mismatch = f"{type(e).__name__}: {e}"
    record.update(
        token_inputs=token_inputs,
        light_tokenizer=mismatch is None,
        light_tokenizer_note=mismatch,
        sha256=file_sha256(path) if path.is_file() else None,
    )
    return record
