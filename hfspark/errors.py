"""One exception hierarchy for hfspark.

Every error a user can cause derives from :class:`HfSparkError` and says what to do.
Errors a user fixes (bad input, bad config, bad model folder) are kept apart from
library bugs, which surface as ordinary Python exceptions.

Example:
    >>> from hfspark.errors import ModelValidationError
    >>> try:
    ...     raise ModelValidationError("model/ has no weights: save the model again")
    ... except HfSparkError as e:
    ...     print(type(e).__name__)
    ModelValidationError
"""

from __future__ import annotations

__all__ = [
    "HfSparkError",
    "ConfigError",
    "ModelValidationError",
    "UnsafeModelError",
    "UnknownTaskError",
    "InputSchemaError",
    "RowError",
    "RowCountMismatchError",
    "ModelStoreError",
    "ErrorBudgetExceeded",
    "MissingDependencyError",
]


class HfSparkError(Exception):
    """Base class of every error hfspark raises on purpose."""


class ConfigError(HfSparkError, ValueError):
    """A job, model or UDF configuration is invalid (unknown key, bad value)."""


class ModelValidationError(HfSparkError, ValueError):
    """A saved model is incomplete or does not match its declared task."""


class UnsafeModelError(ModelValidationError):
    """A model asks for something unsafe: pickle weights, remote code, paths outside its folder."""


class UnknownTaskError(HfSparkError, ValueError):
    """A task name is not in the registry."""


class InputSchemaError(HfSparkError, TypeError):
    """The Spark input columns do not fit the task (missing column or wrong type)."""


class RowError(HfSparkError, ValueError):
    """One row's input cannot be converted or predicted (with errors="column" it becomes a value)."""


class RowCountMismatchError(HfSparkError, RuntimeError):
    """An output batch does not have as many rows as its input batch."""


class ModelStoreError(HfSparkError, OSError):
    """The model store cannot be read (after retries)."""


class ErrorBudgetExceeded(HfSparkError, RuntimeError):
    """A job saw more row errors than its error budget allows."""


class MissingDependencyError(HfSparkError, ImportError):
    """An optional package is needed (e.g. mlflow for models:/ URIs)."""
