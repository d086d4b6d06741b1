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

from typing import Any

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
    "ModelNotFoundError",
    "JobInterrupted",
    "JobFailed",
    "ClusterError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_CONFIG",
    "EXIT_BUDGET",
    "exit_code",
]

#: process exit codes of the ``hfspark`` command and the spark-submit entry points.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_BUDGET = 0, 1, 2, 3


class HfSparkError(Exception):
    """Base class of every error hfspark raises on purpose."""

    def add_context(self, where: str) -> None:
        """Prefix the message with where it happened (``models[0] (embed): ...``), in place.

        Example:
            >>> e = ConfigError("unknown key 'x'")
            >>> e.add_context("models[0] (embed)")
            >>> str(e)
            "models[0] (embed): unknown key 'x'"
        """
        text = f"{where}: {self}"
        self.args = (text, *self.args[1:])
        if isinstance(self, ImportError):  # ImportError prints its .msg, not its args
            setattr(self, "msg", text)  # noqa: B010 - ImportError.msg, untyped in its base


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


class ModelNotFoundError(ModelStoreError, ModelValidationError):
    """No model at the given path or URI (a configuration error: exit code 2)."""


class ErrorBudgetExceeded(HfSparkError, RuntimeError):
    """A job saw more row errors than its error budget allows."""


class MissingDependencyError(HfSparkError, ImportError):
    """An optional package is needed (e.g. mlflow for models:/ URIs)."""


class JobInterrupted(HfSparkError, RuntimeError):
    """A job was stopped by a signal (Ctrl-C or SIGTERM); ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class JobFailed(HfSparkError, RuntimeError):
    """A job did not finish; ``report`` (its RunReport) holds what it did, ``reason`` why."""

    def __init__(self, reason: str, report: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.report = report


class ClusterError(HfSparkError, RuntimeError):
    """A Spark server or a spark-submit run failed; the message names it and shows its log tail."""


#: errors a user fixes in the configuration, the input or the model: exit code 2.
_CONFIG_ERRORS = (
    ConfigError,
    InputSchemaError,
    UnknownTaskError,
    ModelValidationError,
    MissingDependencyError,
)


def exit_code(exc: BaseException | None) -> int:
    """The documented exit code for a failure (0 when ``exc`` is None).

    2: configuration, input or model errors; 3: error budget exceeded; 128 + N: stopped by
    signal N (130 Ctrl-C, 143 SIGTERM); 1: anything else.

    Example:
        >>> exit_code(ConfigError("unknown key"))
        2
    """
    if exc is None:
        return EXIT_OK
    if isinstance(exc, JobInterrupted):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, ErrorBudgetExceeded):
        return EXIT_BUDGET
    if isinstance(exc, _CONFIG_ERRORS):
        return EXIT_CONFIG
    return EXIT_FAILED
