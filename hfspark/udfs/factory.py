"""The model UDF factory: a small reference on the driver, a lazy cached model on executors.

Example:
    >>> from hfspark.udfs import model_udf
    >>> sentiment = model_udf("/models/sentiment", errors="column")
    >>> sentiment.returnType.simpleString()
    'struct<label:string,score:double,scores:array<struct<label:string,score:double>>,error:string>'
    >>> df.withColumn("pred", sentiment("text")).select("pred.label")
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hfspark.errors import ConfigError, InputSchemaError
from hfspark.udfs.executor import ModelRef, task_params
from hfspark.udfs.options import UdfOptions, parse_options
from hfspark.udfs.shipping import needs_shipping, ship_model

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

__all__ = ["ModelUDF", "model_udf", "register", "output_type"]

_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def output_type(adapter: Any, options: UdfOptions) -> DataType:
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


def _make_predict(ref: ModelRef, label: str):
    """The executor function: loads the model lazily (once per Python worker) and predicts.

    Errors raised on purpose carry ``label`` (which function, on which columns), and the
    input types are checked on the first batch before any model is loaded.
    """

    def predict(batches: Iterator[Any]) -> Iterator[Any]:
        from hfspark.errors import HfSparkError
        from hfspark.udfs.engine import check_value_types, predict_frame
        from hfspark.udfs.executor import get_runtime, set_torch_threads

        runtime = None
        try:
            for batch in batches:
                columns = list(batch) if isinstance(batch, tuple) else [batch]
                if runtime is None:
                    check_value_types(ref.task, columns)
                    set_torch_threads()
                    runtime = get_runtime(ref)
                yield predict_frame(runtime, columns, ref.options)
        except HfSparkError as e:
            e.add_context(label)
            raise

    return predict


def _column_label(col: Any) -> str:
    if isinstance(col, str):
        return col
    try:  # a Column's own name, e.g. make_valid_utf8(text) -> text
        text = str(col._jc.toString()) if hasattr(col, "_jc") else str(col)
    except Exception:  # noqa: BLE001 - Spark Connect columns print differently
        text = str(col)
    return text.removeprefix("Column<'").removesuffix("'>")


class ModelUDF:
    """A model as a Spark column function (callable with column names or Columns).

    Attributes:
        info: the ModelInfo read on the driver.
        returnType: the Spark type of the result, known before any data moves.
    """

    def __init__(self, ref: ModelRef, info: Any, adapter: Any) -> None:
        self.ref = ref
        self.info = info
        self.adapter = adapter
        self.returnType = output_type(adapter, ref.options)

    def __repr__(self) -> str:
        return f"ModelUDF({self.ref.uri!r}, task={self.ref.task!r}, returnType={self.returnType.simpleString()})"

    @property
    def name(self) -> str:
        """The function's default name: the task with underscores (``text_classification``)."""
        return self.ref.task.replace("-", "_")

    @property
    def pandas_udf(self) -> Any:
        """The underlying pandas UDF (takes any number of columns), e.g. for SQL registration."""
        return self._pandas_udf(2, self.name)

    def sql_function(self, name: str) -> Any:
        """The pandas UDF to register as SQL function ``name`` (errors name the function)."""
        return self._pandas_udf(2, f"SQL function {name!r}")

    def _pandas_udf(self, arity: int, label: str) -> Any:
        from pyspark.sql.functions import pandas_udf

        fn = _make_predict(self.ref, label)
        if arity == 1:
            def one(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
                return fn(batches)
            wrapped: Any = one
        else:
            def many(batches: Iterator[tuple[pd.Series, ...]]) -> Iterator[pd.Series]:
                return fn(batches)
            wrapped = many
        wrapped.__name__ = wrapped.__qualname__ = self.name  # the result column's default name
        return pandas_udf(wrapped, returnType=self.returnType)  # type: ignore[call-overload]

    def __call__(self, *cols: str | Column, label: str | None = None) -> Column:
        """The prediction column for these input columns (one struct column or several).

        Args:
            cols: column names or Columns.
            label: how errors name this call (default ``task(columns)``).
        """
        if not cols:
            raise InputSchemaError(
                f"Pass the input column(s): {', '.join(self.adapter.input_fields)}"
            )
        label = label or f"{self.name}({', '.join(_column_label(c) for c in cols)})"
        return self._pandas_udf(len(cols), label)(*cols)

    def check_input(self, df: DataFrame, *cols: str) -> None:
        """Refuse missing columns or types that do not fit the task, before any data moves."""
        import difflib

        types = []
        for c in cols:
            if c not in df.columns:
                close = difflib.get_close_matches(c, df.columns, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise InputSchemaError(
                    f"Input column {c!r} not found.{hint} Columns: {', '.join(df.columns)}"
                )
            types.append(df.schema[c].dataType)
        self.adapter.check_input(types)

    def transform(self, df: DataFrame, *cols: str, output: str = "prediction") -> DataFrame:
        """``df`` with a prediction column, after checking its input columns on the driver.

        String inputs pass through ``make_valid_utf8`` first: invalid UTF-8 in a string column
        would otherwise fail the whole Arrow batch before any row reaches the model.
        """
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType

        self.check_input(df, *cols)
        args = [
            F.make_valid_utf8(F.col(c)) if isinstance(df.schema[c].dataType, StringType) else F.col(c)
            for c in cols
        ]
        return df.withColumn(output, self(*args, label=f"{self.name}({', '.join(cols)})"))


def model_udf(
    model_uri: str,
    *,
    task: str | None = None,
    batch_size: int | None = None,
    max_tokens_per_batch: int | None = None,
    call_cost: float | None = None,
    max_length: int | None = None,
    device: str = "auto",
    device_map: str | None = None,
    torch_dtype: str = "auto",
    errors: str = "raise",
    params: dict[str, Any] | None = None,
    sort_window: int = 4096,
    ship: str = "auto",
    **unknown: Any,
) -> ModelUDF:
    """A column function that runs a saved model on Spark.

    The driver reads the model's metadata (no weights), validates the task options and
    computes the return type; executors load the model once per Python worker.

    Args:
        model_uri: a folder saved by hfspark or MLflow, a transformers folder (with
            ``task``), a ``file://``/fsspec URL, or ``runs:/``/``models:/`` with mlflow.
        task: the task (or alias); default: the task saved with the model.
        batch_size: most rows per forward pass (default 8 on CPU, 32 on GPU).
        max_tokens_per_batch: most padded tokens per forward pass.
        call_cost: what one forward call costs in padded tokens; batches are cut to
            minimise ``call_cost × calls + padded tokens``. Default: 8 for encoder tasks on
            CPU (small sorted batches, little padding), full batches on GPU and for
            generation. A large value fills every batch.
        max_length: truncate inputs to this many tokens.
        device: ``auto`` (the task's GPU, else CUDA, else CPU), ``cpu`` or ``cuda:N``.
        device_map: ``auto`` spreads a large model over the executor's GPUs (accelerate).
        torch_dtype: ``auto`` (bf16/fp16 on GPU, fp32 on CPU) or a dtype name; ``bfloat16``
            is the fast CPU path on CPUs with native bf16 (2-3.7x here, embedding cosine
            to fp32 >= 0.9999; see bench/README.md).
        errors: ``raise`` fails the task on a bad row; ``column`` adds an ``error`` field.
        params: task options (e.g. ``{"top_k": 3}``, generation settings).
        sort_window: rows sorted together by length (slices of each Arrow batch).
        ship: ``auto`` broadcasts a driver-local model folder to executors on a real
            cluster (classic sessions); ``always`` / ``never`` force it.

    Example:
        >>> embed = model_udf("/models/minilm", task="feature-extraction", batch_size=64)
        >>> df.select(embed("text").alias("vector"))
    """
    from hfspark.flavor import read_info
    from hfspark.flavor.pypi import resolve_uri
    from hfspark.flavor.store import pin_uri
    from hfspark.tasks import canonical_task, get_task

    # pypi://package -> a saved folder; models:/name@alias -> one version for every executor
    model_uri = pin_uri(resolve_uri(str(model_uri), task))

    opts = parse_options(
        **unknown,
        task=task, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch,
        call_cost=call_cost, max_length=max_length, device=device, device_map=device_map, torch_dtype=torch_dtype,
        errors=errors, params=dict(params or {}), sort_window=sort_window,
    )
    info = read_info(model_uri, task=canonical_task(task) if task else None)
    task_name = canonical_task(task or info.task)
    adapter_cls = get_task(task_name)
    adapter = adapter_cls(task_params(info, adapter_cls, opts))
    from pyspark.sql import SparkSession

    from hfspark.session import ensure_worker_python

    active = SparkSession.getActiveSession()
    if active is not None:
        ensure_worker_python(active)  # a local session's workers must import hfspark
    shipped = None
    if needs_shipping(str(model_uri), ship):
        shipped = ship_model(active, info.root)
    ref = ModelRef(uri=str(model_uri), task=task_name, content_hash=_cache_key(info),
                   options=opts, shipped=shipped)
    return ModelUDF(ref, info, adapter)


def _cache_key(info: Any) -> str:
    """Weights hash + config hash: a relabelled model with the same weights is another model."""
    import hashlib

    config = Path(info.model_dir) / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.exists() else "noconfig"
    return f"{info.content_hash}-{digest}"


def register(spark: SparkSession, name: str, model_uri: str, **options: Any) -> ModelUDF:
    """Register a model as a SQL function: ``SELECT name(text) FROM t``.

    Example:
        >>> register(spark, "sentiment", "/models/sentiment", errors="column")
        >>> spark.sql("SELECT sentiment(text).label FROM reviews")
    """
    if not isinstance(name, str) or not _SQL_NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a valid SQL function name: use letters, digits and underscores, "
            f"starting with a letter or underscore"
        )
    from hfspark.session import ensure_worker_python

    ensure_worker_python(spark)
    udf = model_udf(model_uri, **options)
    spark.udf.register(name, udf.sql_function(name))
    return udf
