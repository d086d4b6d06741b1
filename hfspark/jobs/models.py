"""The model steps of a job: resolve each URI, build its UDF, apply it to the DataFrame.

URIs are what :func:`hfspark.udfs.model_udf` takes, ``pypi://PACKAGE`` included
(:mod:`hfspark.flavor.pypi`).

Example:
    >>> steps = build_steps(load_config("conf/embeddings.yaml"))
    >>> apply_steps(df, steps).columns[-1]
    'embedding'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hfspark.errors import InputSchemaError
from hfspark.flavor.pypi import PYPI_SCHEME, models_dir
from hfspark.flavor.resolver import resolve_uri
from hfspark.jobs.config import JobConfig, ModelStep

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from hfspark.flavor.info import ModelInfo
    from hfspark.udfs.factory import ModelUDF

__all__ = [
    "PYPI_SCHEME",
    "Step",
    "models_dir",
    "resolve_uri",
    "build_steps",
    "apply_steps",
    "error_condition",
    "error_columns",
    "token_columns",
]


@dataclass
class Step:
    """A resolved model step: its config, the URI actually read, and its ModelUDF."""

    config: ModelStep
    uri: str
    udf: ModelUDF

    @property
    def info(self) -> ModelInfo:
        """The step model's ModelInfo."""
        return self.udf.info

    @property
    def has_error_field(self) -> bool:
        """Whether the step's output struct carries an ``error`` field."""
        return self.config.options.errors == "column"


def build_steps(job: JobConfig) -> list[Step]:
    """Resolve every model step and build its UDF (reads model metadata, no weights).

    Raises:
        ConfigError / ModelValidationError: a bad URI, task or option, naming the step.
    """
    from hfspark.errors import HfSparkError
    from hfspark.udfs import model_udf

    steps = []
    for i, cfg in enumerate(job.models):
        try:
            uri = resolve_uri(cfg.uri, cfg.task, job.run.models_dir)
            udf = model_udf(uri, task=cfg.task, **cfg.options.udf_kwargs())
        except HfSparkError as e:
            e.add_context(f"models[{i}] ({cfg.name})")
            raise
        steps.append(Step(cfg, uri, udf))
    return steps


def _input_exprs(step: ModelStep, by_name: bool = False) -> list[tuple[str, Column]]:
    """(label, column expression) per UDF argument of a step.

    With ``by_name`` (prompt templates over columns) a list of columns becomes one struct
    whose fields keep the columns' names (``summary.text`` -> ``text``).
    """
    from pyspark.sql import functions as F

    inputs = step.inputs
    if by_name and isinstance(inputs, (str, list)):
        inputs = {
            c.rsplit(".", 1)[-1]: c for c in ([inputs] if isinstance(inputs, str) else inputs)
        }
    if isinstance(inputs, str):
        return [(inputs, F.col(inputs))]
    if isinstance(inputs, list):
        return [(c, F.col(c)) for c in inputs]
    label = "{" + ", ".join(f"{k}: {v}" for k, v in inputs.items()) + "}"
    return [(label, F.struct(*[F.col(c).alias(f) for f, c in inputs.items()]))]


def _check_refs(df: DataFrame, step: ModelStep, index: int) -> None:
    refs = (
        [step.inputs]
        if isinstance(step.inputs, str)
        else list(step.inputs if isinstance(step.inputs, list) else step.inputs.values())
    )
    for ref in refs:
        try:
            df.select(ref).schema  # noqa: B018 - resolves nested refs like summary.generated_text
        except Exception as e:  # AnalysisException
            close = difflib.get_close_matches(ref, _all_paths(df.schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputSchemaError(
                f"models[{index}] ({step.name}): input column {ref!r} not found{hint}; "
                f"columns: {', '.join(df.columns)}"
            ) from e


def _all_paths(schema: Any, prefix: str = "") -> list[str]:
    from pyspark.sql.types import StructType

    out = []
    for f in schema.fields:
        out.append(prefix + f.name)
        if isinstance(f.dataType, StructType):
            out.extend(_all_paths(f.dataType, prefix + f.name + "."))
    return out


def apply_steps(df: DataFrame, steps: list[Step], check: bool = True) -> DataFrame:
    """``df`` with one output column per step, in order (later steps may read earlier outputs).

    With ``check`` every step's inputs are checked on the driver first (schema only).
    """
    for index, step in enumerate(steps):
        cfg = step.config
        if check:
            _check_refs(df, cfg, index)
        names = []
        for j, (_label, expr) in enumerate(_input_exprs(cfg, step.udf.adapter.binds_by_name)):
            name = f"__hfspark_{cfg.name}_{j}"
            df = df.withColumn(name, expr)
            names.append(name)
        if check:
            try:
                step.udf.check_input(df, *names)
            except InputSchemaError as e:
                raise InputSchemaError(
                    f"models[{index}] ({cfg.name}): inputs {cfg.inputs!r}: {e}"
                ) from e
        label = f"models[{index}] ({cfg.name}) on {cfg.inputs!r}"
        df = df.withColumn(cfg.output_column, step.udf(*names, label=label)).drop(*names)
    return df


def error_columns(steps: list[Step]) -> list[str]:
    """``output.error`` paths of the steps that record row errors in a column."""
    return [f"{s.config.output_column}.error" for s in steps if s.has_error_field]


def token_columns(steps: list[Step]) -> list[str]:
    """Token count fields of the step outputs (generation tasks report prompt/completion tokens)."""
    from pyspark.sql.types import StructType

    out = []
    for s in steps:
        rtype = s.udf.returnType
        if isinstance(rtype, StructType):
            out += [
                f"{s.config.output_column}.{f}"
                for f in ("prompt_tokens", "completion_tokens")
                if f in rtype.fieldNames()
            ]
    return out


def error_condition(steps: list[Step]) -> Column | None:
    """A condition true for rows where any step recorded an error (None: no error columns)."""
    from functools import reduce

    from pyspark.sql import functions as F

    conds = [F.col(c).isNotNull() for c in error_columns(steps)]
    return reduce(lambda a, b: a | b, conds) if conds else None
