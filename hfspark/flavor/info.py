"""ModelInfo: what the rest of hfspark needs to know about a saved model (no weights loaded).

Example:
    >>> from hfspark.flavor import read_info
    >>> info = read_info("/models/sentiment")
    >>> info.task, info.content_hash[:12]
    ('text-classification', '3f2a9c0d1e4b')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """A saved model, resolved to a local folder.

    Attributes:
        uri: the URI the user gave (``/path``, ``file://``, ``s3://``, ``models:/``...).
        root: local folder of the saved model (a cache copy for remote stores).
        task: canonical task name.
        model_dir: folder with ``config.json`` and the safetensors weights.
        components: processor name -> folder (``tokenizer``, ``feature_extractor``...).
        content_hash: sha256 over the weight files (identifies the model in caches).
        inference_config: default task options saved with the model.
        torch_dtype: dtype saved with the model, or None.
        flavor: ``hfspark``, ``mlflow`` or ``pretrained`` (a bare transformers folder).
        metadata: everything else read from ``MLmodel``.
    """

    uri: str
    root: Path
    task: str
    model_dir: Path
    components: dict[str, Path] = field(default_factory=dict)
    content_hash: str = ""
    inference_config: dict[str, Any] = field(default_factory=dict)
    torch_dtype: str | None = None
    flavor: str = "hfspark"
    metadata: dict[str, Any] = field(default_factory=dict)
