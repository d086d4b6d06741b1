"""Task adapters: one module per task behind a registry with aliases.

Example:
    >>> from hfspark.tasks import get_task, canonical_task
    >>> canonical_task("sentiment-analysis")
    'text-classification'
    >>> adapter_cls = get_task("ner")           # TokenClassification
"""

from __future__ import annotations

from hfspark.tasks.base import LoadedModel, TaskAdapter
from hfspark.tasks.registry import ALIASES, TASKS, canonical_task, get_task, task_names

__all__ = [
    "ALIASES",
    "TASKS",
    "LoadedModel",
    "TaskAdapter",
    "canonical_task",
    "get_task",
    "task_names",
]
