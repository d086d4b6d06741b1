"""Typed batch-job configuration: the sections of a ``conf/*.yaml`` file.

Every section is a pydantic model that refuses unknown keys; :mod:`hfspark.jobs.loader`
turns those refusals into errors naming the nearest valid key with the file and line.

Example:
    >>> from hfspark.jobs.config import JobConfig
    >>> cfg = JobConfig.model_validate({
    ...     "input": {"format": "parquet", "path": "data/texts.parquet", "id_column": "id"},
    ...     "models": [{"name": "embed", "uri": "/models/minilm", "inputs": "text"}],
    ...     "output": {"path": "output/embeddings"},
    ... })
    >>> cfg.run.resume_enabled(cfg)
    True
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hfspark.udfs.options import UdfOptions

__all__ = [
    "SparkSection",
    "InputSection",
    "StepOptions",
    "ModelStep",
    "OutputSection",
    "MlflowSection",
    "RunSection",
    "JobConfig",
    "PROVENANCE_COLUMNS",
]

#: columns added to every output row.
PROVENANCE_COLUMNS = ("_model_name", "_model_hash", "_run_id", "_inferred_at")

Scalar = str | int | float | bool
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSection(_Section):
    """``spark:`` where the job runs (ignored under spark-submit, which sets the master)."""

    master: str = "local[*]"
    app_name: str = "hfspark-job"
    conf: dict[str, Scalar] = Field(default_factory=dict)


class InputSection(_Section):
    """``input:`` the rows to infer on.

    ``format`` is ``delta``, ``parquet``, ``csv``, ``json`` (JSON lines), ``table`` (a catalog
    table named by ``name``) or ``binaryFile`` (a folder of files: ``path``, ``content``,
    ``length``, ``modificationTime`` columns; ``glob`` filters file names).
    """

    format: Literal["delta", "parquet", "csv", "json", "table", "binaryFile"]
    path: str | None = None
    name: str | None = None
    columns: list[str] | None = None
    filter: str | None = None
    limit: int | None = Field(default=None, ge=0)
    id_column: str | None = None
    glob: str | None = None
    recursive: bool = False
    options: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _where(self) -> InputSection:
        if self.format == "table":
            if not self.name or self.path:
                raise ValueError("format 'table' reads a catalog table: set 'name', not 'path'")
        elif not self.path or self.name:
            raise ValueError(f"format {self.format!r} reads files: set 'path', not 'name'")
        if self.glob and self.format != "binaryFile":
            raise ValueError("'glob' only applies to format 'binaryFile'")
        return self


#: ``options:`` of a model step: the UDF options of :func:`hfspark.udfs.model_udf`, the same
#: ones a SQL functions file and ``model_udf`` take.
StepOptions = UdfOptions


class ModelStep(_Section):
    """One entry of ``models:``: a saved model applied to input (or earlier output) columns.

    ``inputs`` is a column name (``text``; nested fields with dots: ``summary.generated_text``),
    a list of columns (passed in order), or a mapping ``field: column`` that builds one struct.
    ``output`` defaults to ``name``.
    """

    name: str
    uri: str
    task: str | None = None
    inputs: str | list[str] | dict[str, str]
    output: str | None = None
    options: StepOptions = Field(default_factory=StepOptions)

    @field_validator("name", "output")
    @classmethod
    def _identifier(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"{v!r} must be a column-safe name (letters, digits, _)")
        return v

    @field_validator("inputs")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if not v:
            raise ValueError("inputs must name at least one column")
        return v

    @property
    def output_column(self) -> str:
        """The column this step writes."""
        return self.output or self.name


class OutputSection(_Section):
    """``output:`` where results go.

    ``format`` ``table`` writes a catalog (Delta) table named ``table`` (an external one stored
    at ``path`` when given). ``columns`` picks the columns written (default: the input columns,
    except a ``binaryFile``'s ``content``, plus every step output); provenance columns are added.
    """

    format: Literal["delta", "parquet", "json", "csv", "table"] = "delta"
    path: str | None = None
    table: str | None = None
    mode: Literal["append", "overwrite", "error"] = "append"
    partition_by: list[str] = Field(default_factory=list)
    columns: list[str] | None = None
    options: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _where(self) -> OutputSection:
        if self.format == "table":
            if not self.table:
                raise ValueError(
                    "format 'table' writes a catalog table: set 'table' "
                    "(and 'path' for an external table's location)"
                )
        elif not self.path or self.table:
            raise ValueError(f"format {self.format!r} writes files: set 'path', not 'table'")
        return self

    @property
    def target(self) -> str:
        """The path or table name, for messages."""
        return (self.table or "") if self.format == "table" else self.path or ""

    @property
    def is_delta(self) -> bool:
        """Whether the output is a Delta table (idempotent chunk commits)."""
        return self.format in ("delta", "table")


class MlflowSection(_Section):
    """``run.mlflow:`` log the job as an MLflow run (off unless this section is present).

    ``experiment`` is created when missing; ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``.
    Metrics are logged every ``log_every_s`` seconds while the job runs and at the end; the report
    files are logged as artifacts. A tracking server that cannot be reached never fails the job.
    """

    experiment: str = "hfspark-jobs"
    tracking_uri: str | None = None
    run_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_every_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)


class RunSection(_Section):
    """``run:`` resume, chunking, error budget, report and progress settings.

    ``partitions`` is how many Spark partitions (parallel tasks) each chunk is split into
    (default: Spark's default parallelism, i.e. every core). ``report_path`` is the folder of
    run reports (``null``: none); ``models_dir`` where ``pypi://`` models are saved;
    ``mlflow`` logs the job as an MLflow run (see :class:`MlflowSection`).
    """

    resume: bool | None = None
    chunk_rows: int = Field(default=10_000, gt=0)
    partitions: int | None = Field(default=None, gt=0)
    max_errors: int | None = Field(default=None, ge=0)
    max_error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    report_path: str | None = "output/reports"
    models_dir: str | None = None
    verify: bool = True
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    log_every_s: float = Field(default=10.0, gt=0)
    mlflow: MlflowSection | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare ``off`` / ``on`` as a boolean.
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v

    def resume_enabled(self, job: JobConfig) -> bool:
        """Resume is on by default when the input has an ``id_column`` and output appends."""
        if self.resume is None:
            return job.input.id_column is not None and job.output.mode == "append"
        return self.resume


class JobConfig(_Section):
    """A whole batch job: ``spark``, ``input``, ``models``, ``output``, ``run``."""

    spark: SparkSection = Field(default_factory=SparkSection)
    input: InputSection
    models: list[ModelStep] = Field(min_length=1)
    output: OutputSection
    run: RunSection = Field(default_factory=RunSection)

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        names = [s.name for s in self.models]
        outs = [s.output_column for s in self.models]
        for label, values in (("name", names), ("output", outs)):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(f"models: step {label}s must be unique, repeated: {dup}")
        if self.run.resume:
            if not self.input.id_column:
                raise ValueError(
                    "run.resume needs input.id_column (the ids already written are skipped)"
                )
            if self.output.mode != "append":
                raise ValueError(f"run.resume needs output.mode 'append', not {self.output.mode!r}")
        budget = self.run.max_errors is not None or self.run.max_error_rate is not None
        if budget and not any(s.options.errors == "column" for s in self.models):
            raise ValueError(
                "run.max_errors / max_error_rate count rows with errors: set "
                "options.errors: column on a model step (errors: raise stops at the first)"
            )
        return self

    def step(self, name: str) -> ModelStep:
        """The model step called ``name``."""
        for s in self.models:
            if s.name == name:
                return s
        raise KeyError(name)
