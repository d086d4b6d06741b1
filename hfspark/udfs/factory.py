"""The model UDF factory: a resolved reference on the driver, a lazy cached model on executors.

Example:
    >>> from hfspark.udfs import model_udf
    >>> sentiment = model_udf("/models/sentiment", errors="column")
    >>> sentiment.returnType.simpleString()
    'struct<label:string,score:double,scores:array<struct<label:string,score:double>>,error:string>'
    >>> df.withColumn("pred", sentiment("text")).select("pred.label")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, InputSchemaError
from hfspark.udfs.options import parse_options
from hfspark.udfs.reference import ModelRef, resolve_model

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

    from hfspark.flavor.info import ModelInfo
    from hfspark.tasks.base import TaskAdapter

__all__ = ["ModelUDF", "model_udf", "register"]

_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _make_predict(ref: ModelRef, label: str) -> Callable[[Iterator[Any]], Iterator[pa.Array]]:
    """The executor function: Arrow batches in, one Arrow array out per batch.

    The model loads lazily (once per Python worker, cached); the first batch's column types
    are checked before that. Errors raised on purpose carry ``label`` (which function, on
    which columns).
    """

    def predict(batches: Iterator[Any]) -> Iterator[pa.Array]:
        from hfspark.errors import HfSparkError
        from hfspark.udfs.arrow import arrow_type
        from hfspark.udfs.engine import check_arrow_types, predict_batch
        from hfspark.udfs.executor import get_runtime
        from hfspark.udfs.startup import mark_first_use

        runtime, target = None, arrow_type(ref.return_type)
        try:
            for batch in batches:
                arrays = list(batch) if isinstance(batch, (tuple, list)) else [batch]
                if runtime is None:
                    mark_first_use()  # this worker's startup record (a no-op after the first)
                    if not ref.adapter().binds_by_name:  # template fields: bound by name
                        check_arrow_types(ref.task, arrays)
                    runtime = get_runtime(ref)  # torch threads = the task's cpus
                yield predict_batch(runtime, arrays, ref.options, target)
        except HfSparkError as e:
            e.add_context(label)
            raise

    return predict


_NODE = "columnnodeexpression("
_ATTRIBUTE = re.compile(r"UnresolvedAttribute\(List\(([^)]*)\)")


def _column_label(col: Any) -> str:
    """A column as a user wrote it: ``text``, ``struct(a, b)``, ``pace(text)``.

    ``Column<'...'>`` is unwrapped, and the JVM's ``columnnodeexpression(UnresolvedAttribute(
    List(text), ...))`` that a UDF call over a column name prints is cut back to ``text``.

    Example:
        >>> _column_label("text")
        'text'
    """
    text = col if isinstance(col, str) else str(col)
    text = text.removeprefix("Column<'").removesuffix("'>")
    while (start := text.find(_NODE)) >= 0:
        depth, end = 0, len(text)
        for i in range(start + len(_NODE) - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                end = i + 1
                break
        names = _ATTRIBUTE.search(text, start, end)
        name = ".".join(p.strip() for p in names.group(1).split(",")) if names else "column"
        text = text[:start] + name + text[end:]
    return text


class ModelUDF:
    """A model as a Spark column function (callable with column names or Columns).

    Attributes:
        ref: the resolved model reference (what executors receive).
        info: the ModelInfo read on the driver.
        adapter: the task adapter, with its validated options.
        returnType: the Spark type of the result, known before any data moves.
    """

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.info: ModelInfo = ref.info
        self.adapter: TaskAdapter = ref.adapter()
        self.returnType = ref.return_type

    def __repr__(self) -> str:
        return (
            f"ModelUDF({self.ref.uri!r}, task={self.ref.task!r}, "
            f"returnType={self.returnType.simpleString()})"
        )

    @property
    def name(self) -> str:
        """The function's default name: the task with underscores (``text_classification``)."""
        return str(self.ref.task).replace("-", "_").replace(".", "_").replace(":", "_")

    def spark_udf(self, label: str | None = None) -> Any:
        """The underlying Arrow UDF (any number of columns); errors name it ``label``."""
        from pyspark.sql.functions import ArrowUDFType, arrow_udf

        fn = _make_predict(self.ref, label or self.name)
        fn.__name__ = fn.__qualname__ = self.name  # the result column's default name
        # pyspark's stubs lack the (function, type, functionType) form it accepts
        return arrow_udf(fn, self.returnType, ArrowUDFType.SCALAR_ITER)  # type: ignore[call-overload]

    def sql_function(self, name: str) -> Any:
        """The Arrow UDF to register as SQL function ``name`` (errors name the function)."""
        return self.spark_udf(f"SQL function {name!r}")

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
        if self.adapter.binds_by_name and len(cols) > 1:  # template fields bind by column name
            from pyspark.sql import functions as F

            cols = (F.struct(*cols),)
        return self.spark_udf(label)(*cols)

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
        if self.adapter.binds_by_name and len(cols) > 1:  # checked by name, as __call__ binds
            from pyspark.sql.types import StructField, StructType

            types = [StructType([StructField(c, t) for c, t in zip(cols, types, strict=True)])]
        self.adapter.check_input(types)

    def transform(self, df: DataFrame, *cols: str, output: str = "prediction") -> DataFrame:
        """``df`` with a prediction column, after checking its input columns on the driver.

        Example:
            >>> sentiment.transform(reviews, "text", output="pred").select("pred.label")
        """
        self.check_input(df, *cols)
        return df.withColumn(output, self(*cols, label=f"{self.name}({', '.join(cols)})"))


def model_udf(model_uri: str, *, task: str | None = None, **options: Any) -> ModelUDF:
    """A column function that runs a saved model on Spark.

    The driver resolves the model once (URI pinned, metadata read without weights, task
    options validated, return type computed); executors load it once per Python worker.

    Args:
        model_uri: a folder saved by hfspark or MLflow, a transformers folder (with
            ``task``), ``file://``, an fsspec URL, ``pypi://PACKAGE``, ``runs:/`` or
            ``models:/name@alias`` (see :mod:`hfspark.flavor.resolver`).
        task: the task (or alias); default: the task saved with the model.
        options: :class:`~hfspark.udfs.options.UdfOptions`: ``batch_size``,
            ``max_tokens_per_batch``, ``call_cost``, ``max_length``, ``device``,
            ``device_map``, ``torch_dtype``, ``cpu_kernels``, ``errors`` (``raise`` / ``column``),
            ``sort_window``, ``ship``, and ``params`` (task options, e.g. ``{"top_k": 3}``).
            Unknown names are refused with the nearest one.

    Example:
        >>> embed = model_udf("/models/minilm", task="feature-extraction", batch_size=64)
        >>> df.select(embed("text").alias("vector"))
    """
    from pyspark.sql import SparkSession

    from hfspark.session import ensure_worker_python

    opts = parse_options(**options)
    spark = SparkSession.getActiveSession()
    if spark is not None:
        ensure_worker_python(spark)  # a local session's workers must import hfspark
    return ModelUDF(resolve_model(str(model_uri), task=task, options=opts, spark=spark))


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
