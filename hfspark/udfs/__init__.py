"""Model UDFs: run saved transformers models as Spark column functions (Python and SQL).

Example:
    >>> from hfspark.udfs import model_udf, register
    >>> df.withColumn("sentiment", model_udf("/models/sst2")("text"))
    >>> register(spark, "sentiment", "/models/sst2")     # SELECT sentiment(text) FROM t
"""

from typing import TYPE_CHECKING

from hfspark._lazy import lazy_exports

_EXPORTS = {
    "ModelRef": "hfspark.udfs.reference",
    "output_type": "hfspark.udfs.reference",
    "resolve_model": "hfspark.udfs.reference",
    "ModelUDF": "hfspark.udfs.factory",
    "model_udf": "hfspark.udfs.factory",
    "register": "hfspark.udfs.factory",
    "UdfOptions": "hfspark.udfs.options",
    "load_count": "hfspark.udfs.executor",
}
__all__ = [
    "ModelRef",
    "ModelUDF",
    "UdfOptions",
    "load_count",
    "model_udf",
    "output_type",
    "register",
    "resolve_model",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from hfspark.udfs.executor import load_count
    from hfspark.udfs.factory import ModelUDF, model_udf, register
    from hfspark.udfs.options import UdfOptions
    from hfspark.udfs.reference import ModelRef, output_type, resolve_model
