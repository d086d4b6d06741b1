"""The model call of an encoder task as a graph: run by torch, or by ONNX Runtime without torch.

An encoder adapter (text and token classification, fill-mask, question answering, zero-shot,
feature extraction) describes its model call as a :class:`Graph`: named int64 inputs (the
padded token ids, masks, and e.g. fill-mask's ``mask_index``) to named float outputs (logits,
or pooled vectors). Its ``forward`` pads a batch with :func:`collate_arrays`, calls
:meth:`~hfspark.tasks.base.TaskAdapter.run` and post-processes numpy arrays, whatever runs
the graph:

- :class:`TorchRunner` calls the graph's torch function on the loaded model;
- :class:`OrtRunner` runs the same function exported to ONNX (:mod:`hfspark.tasks._export`)
  in an ONNX Runtime session. This module imports neither torch nor transformers' models: a
  worker on that path loads ``config.json`` as :class:`LightConfig` and the fast tokenizer with
  :func:`light_tokenizer`.

Example:
    >>> runner = OrtRunner("model.onnx", threads=1)
    >>> runner({"input_ids": ids, "attention_mask": mask})["logits"].shape
    (8, 3)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Graph",
    "TorchRunner",
    "OrtRunner",
    "LightConfig",
    "LightModel",
    "light_tokenizer",
    "collate_arrays",
    "file_sha256",
    "read_record",
    "ONNX_MODEL_TYPES",
    "ONNX_TASKS",
    "TOLERANCE",
]

#: model types (``config.model_type``) whose encoder graphs export and match torch within
#: :data:`TOLERANCE` in hfspark's parity tests; ``engine="auto"`` uses ONNX Runtime for these.
ONNX_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "deberta-v2"}
)
#: the tasks whose model call is a graph (feature-extraction: not for dual encoders).
ONNX_TASKS = (
    "text-classification",
    "token-classification",
    "fill-mask",
    "question-answering",
    "zero-shot-classification",
    "feature-extraction",
)
#: an exported graph is used when every output is within ``TOLERANCE`` x max(1, max |torch|)
#: of the torch forward on the probe batch (and pooled vectors keep cosine >= 1 - 1e-5).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Graph:
    """A model call: ``fn(**inputs) -> {output: tensor}`` over named int64 inputs.

    Attributes:
        inputs: input names, in the order the exported graph takes them; 2-D
            ``(batch, tokens)`` except names in ``per_row`` (1-D, ``(batch,)``).
        outputs: output names.
        fn: the torch function (the loaded model bound in).
        key: what makes this graph differ from the task's other graphs of the same weights
            (e.g. the pooling), part of the exported file's name.
        per_row: inputs with one value per row (fill-mask's ``mask_index``).
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fn: Callable[..., Mapping[str, Any]]
    key: str
    per_row: tuple[str, ...] = ()


class TorchRunner:
    """Run a :class:`Graph` with torch: numpy in, float32 numpy out (inference mode)."""

    engine = "torch"

    def __init__(self, graph: Graph, device: Any) -> None:
        self.graph, self.device = graph, device

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            tensors = {k: torch.from_numpy(inputs[k]).to(self.device) for k in self.graph.inputs}
            out = self.graph.fn(**tensors)
            return {k: out[k].float().cpu().numpy() for k in self.graph.outputs}


class OrtRunner:
    """Run an exported graph in an ONNX Runtime session (CPU, ``threads`` intra-op threads)."""

    engine = "onnx"

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = str(path)
        self.session = ort.InferenceSession(
            self.path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.int64) for k in self.inputs}
        values = self.session.run(list(self.outputs), feed)
        return {
            k: np.asarray(v, dtype=np.float32) for k, v in zip(self.outputs, values, strict=True)
        }


class LightConfig:
    """``config.json`` read as attributes, without transformers (which imports torch).

    Example:
        >>> LightConfig({"model_type": "bert", "id2label": {"0": "NEG"}}).num_labels
        1
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.__dict__.update(data)
        id2label = data.get("id2label") or {}
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.label2id = dict(data.get("label2id") or {v: k for k, v in self.id2label.items()})
        self.num_labels = len(self.id2label) or int(data.get("num_labels", 2))

    def __getattr__(self, name: str) -> Any:  # a missing key reads as None, as on PretrainedConfig
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    @classmethod
    def from_folder(cls, folder: str | Path) -> LightConfig:
        return cls(json.loads((Path(folder) / "config.json").read_text()))


class LightModel:
    """What ``loaded.model`` is on the ONNX path: the config, and the graph that runs."""

    def __init__(self, config: LightConfig, path: str | Path) -> None:
        self.config, self.path = config, str(path)

    @property
    def dtype(self) -> str:
        return "float32"


def light_tokenizer(folder: str | Path, model_input_names: Sequence[str]) -> Any:
    """The fast tokenizer of ``folder`` through ``tokenizers`` (no torch import).

    ``model_input_names`` are the exported graph's token inputs, recorded at export (the
    model-specific tokenizer class would have said which ones it gives).
    """
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(folder), trust_remote_code=False)
    tok.model_input_names = list(model_input_names)
    return tok


def collate_arrays(
    tokenizer: Any, features: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Pad a batch's token inputs on the right into int64 arrays (``attention_mask`` built).

    The same values as ``tokenizer.pad(..., padding_side="right")``, built with numpy: the
    tokenizer's pad is ~0.3 ms of Python per call, as much as a small model's forward.
    """
    wanted = list(names if names is not None else tokenizer.model_input_names)
    present = [k for k in wanted if k in features[0]]
    lengths = [len(f["input_ids"]) for f in features]
    width = max(lengths)
    pad_values = {
        "input_ids": tokenizer.pad_token_id or 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0) or 0,
    }
    out: dict[str, np.ndarray] = {}
    for key in present:
        arr = np.full((len(features), width), pad_values.get(key, 0), dtype=np.int64)
        for i, f in enumerate(features):
            arr[i, : lengths[i]] = f[key]
        out[key] = arr
    if "attention_mask" in wanted and "attention_mask" not in out:
        out["attention_mask"] = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(
            np.int64
        )
    return out


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (a graph is used only when it is the one that was verified)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(graph_path: str | Path, records: Path | None = None) -> dict[str, Any] | None:
    """The check record of this very graph file: the one beside it (``<name>.json``) when its
    sha256 matches, else ``records/<sha256>.json`` (the file is hashed once); for a graph that
    is not there, the record of an export that failed."""
    path = Path(graph_path)
    if not path.is_file():  # an export that failed leaves its record, without a graph
        try:
            failed = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        return dict(failed) if failed.get("sha256") is None and not failed.get("passed") else None
    sha = file_sha256(path)
    candidates = [path.with_suffix(".json")]
    if records is not None:
        candidates.append(records / f"{sha}.json")
    for record_path in candidates:
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("sha256") == sha:
            return dict(record)
    return None
