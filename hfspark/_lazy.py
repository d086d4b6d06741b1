"""Lazy package exports: ``hfspark.model_udf`` imports its module on first use.

A Python worker on an executor imports ``hfspark.udfs.engine`` and what the model reference
needs, not the driver's machinery (MLflow, YAML jobs, the CLI). Packages list their public
names in a mapping ``name -> module`` and get a module ``__getattr__`` from here.

Example:
    >>> __getattr__, __dir__ = lazy_exports(__name__, {"model_udf": "hfspark.udfs.factory"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import ``exports[name]`` on first access."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
