"""Task adapters: one module per task behind a registry with aliases, plus your own tasks.

Example:
    >>> from hfspark.tasks import get_task, canonical_task, register_task
    >>> canonical_task("sentiment-analysis")
    'text-classification'
    >>> adapter_cls = get_task("ner")           # TokenClassification
    >>> register_task("rerank", "examples.reranker:CrossEncoderReranker")
"""

from __future__ import annotations

from hfspark.tasks.base import LoadedModel, TaskAdapter, TaskOptions
from hfspark.tasks.registry import (
    ALIASES,
    ENTRY_POINT_GROUP,
    TASKS,
    canonical_task,
    get_task,
    register_task,
    task_names,
)

__all__ = [
    "ALIASES",
    "ENTRY_POINT_GROUP",
    "TASKS",
    "LoadedModel",
    "TaskAdapter",
    "TaskOptions",
    "canonical_task",
    "get_task",
    "register_task",
    "task_names",
]
