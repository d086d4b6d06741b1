"""The MLflow model signature of a task, derived from its input and output types.

MLflow's pyfunc wrapper of a transformers pipeline has a fixed contract per task (the inputs it
parses and the columns it returns): where MLflow defines one, that is the signature, so that
``mlflow.pyfunc`` serving and ``spark_udf`` see what the pyfunc really returns. For a task MLflow
has no default for, the signature is derived from hfspark's Spark schema of the task (its
input fields and output type). hfspark's own Spark schema stays in ``metadata.hfspark.schema``.

Example:
    >>> from hfspark.flavor.signature import task_signature
    >>> task_signature("text-classification").to_dict()["outputs"]
    '[{"type": "string", "name": "label", "required": true}, {"type": "double", "name": "score", "required": true}]'
"""

from __future__ import annotations

from typing import Any

from hfspark.errors import MissingDependencyError

__all__ = ["task_signature", "spark_to_mlflow"]

_SCALARS = {
    "string": "string",
    "binary": "binary",
    "boolean": "boolean",
    "int": "integer",
    "integer": "integer",
    "bigint": "long",
    "long": "long",
    "float": "float",
    "double": "double",
    "timestamp": "datetime",
    "date": "datetime",
}


def _mlflow_types() -> Any:
    try:
        import mlflow.types.schema as schema
    except ImportError as e:
        raise MissingDependencyError(
            "An MLflow signature needs mlflow: pip install 'hfspark[mlflow]'."
        ) from e
    return schema


def spark_to_mlflow(dtype: Any) -> Any:
    """A Spark ``DataType`` as an MLflow type (``DataType``, ``Array`` or ``Object``).

    Example:
        >>> from pyspark.sql.types import ArrayType, FloatType
        >>> spark_to_mlflow(ArrayType(FloatType())).to_dict()
        {'type': 'array', 'items': {'type': 'float'}}
    """
    from pyspark.sql import types as T

    s = _mlflow_types()
    if isinstance(dtype, T.ArrayType):
        return s.Array(spark_to_mlflow(dtype.elementType))
    if isinstance(dtype, T.StructType):
        return s.Object([s.Property(f.name, spark_to_mlflow(f.dataType)) for f in dtype.fields])
    name = _SCALARS.get(dtype.typeName(), "string")
    return getattr(s.DataType, name)


def _derived(task: str, inference_config: dict[str, Any]) -> Any:
    """A signature from hfspark's adapter: required input fields in, Spark output type out."""
    from pyspark.sql import types as T

    from hfspark.flavor.taskinfo import adapter_class

    s = _mlflow_types()
    cls = adapter_class(task)
    if cls is None:
        return None
    optional = set(getattr(cls, "optional_fields", ()))
    fields = [f for f in cls.input_fields if f not in optional] or list(cls.input_fields)
    types = dict(cls.input_types)

    def in_type(field: str) -> Any:
        first = (types.get(field) or ["string"])[0]
        return getattr(s.DataType, _SCALARS.get(first, "string"))

    if len(fields) == 1:
        inputs = s.Schema([s.ColSpec(in_type(fields[0]))])
    else:
        inputs = s.Schema([s.ColSpec(in_type(f), name=f) for f in fields])
    out = cls(dict(inference_config)).output_type()
    if isinstance(out, T.StructType):
        outputs = s.Schema(
            [s.ColSpec(spark_to_mlflow(f.dataType), name=f.name) for f in out.fields]
        )
    else:
        outputs = s.Schema([s.ColSpec(spark_to_mlflow(out))])
    from mlflow.models.signature import ModelSignature

    return ModelSignature(inputs=inputs, outputs=outputs)


def task_signature(
    task: str, mlflow_task: str | None = None, inference_config: dict[str, Any] | None = None
) -> Any:
    """The ``mlflow.models.ModelSignature`` for a task (None when nothing can be derived).

    Args:
        task: hfspark's canonical task name.
        mlflow_task: the task name MLflow sees (``translation_en_to_fr``...), default ``task``.
        inference_config: the saved task options (they may change the output type).

    Raises:
        MissingDependencyError: mlflow is not installed.

    Example:
        >>> task_signature("question-answering").inputs.input_names()
        ['question', 'context']
    """
    _mlflow_types()
    from mlflow.transformers.signature import _DEFAULT_SIGNATURE_FOR_TASK

    name = mlflow_task or task
    if name.startswith("translation_"):
        name = "translation"
    if name in _DEFAULT_SIGNATURE_FOR_TASK:
        return _DEFAULT_SIGNATURE_FOR_TASK[name]
    return _derived(task, dict(inference_config or {}))
