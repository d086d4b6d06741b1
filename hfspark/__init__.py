"""hfspark: Hugging Face transformers models as batch inference on Apache Spark.

Example:
    >>> import hfspark
    >>> hfspark.save_model(pipe, "/models/sentiment")
    >>> df.withColumn("pred", hfspark.model_udf("/models/sentiment")("text"))
"""

from typing import TYPE_CHECKING

from hfspark._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "HfSparkError": "hfspark.errors",
    "ModelInfo": "hfspark.flavor.info",
    "read_info": "hfspark.flavor.info",
    "load_model": "hfspark.flavor.load",
    "log_model": "hfspark.flavor.log",
    "save_model": "hfspark.flavor.save",
    "local_spark": "hfspark.session",
    "with_hfspark": "hfspark.session",
    "ModelUDF": "hfspark.udfs.factory",
    "model_udf": "hfspark.udfs.factory",
    "register": "hfspark.udfs.factory",
    "register_all": "hfspark.sql",
}
__all__ = [
    "HfSparkError",
    "ModelInfo",
    "ModelUDF",
    "load_model",
    "local_spark",
    "log_model",
    "model_udf",
    "read_info",
    "register",
    "register_all",
    "save_model",
    "with_hfspark",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from hfspark.errors import HfSparkError
    from hfspark.flavor.info import ModelInfo, read_info
    from hfspark.flavor.load import load_model
    from hfspark.flavor.log import log_model
    from hfspark.flavor.save import save_model
    from hfspark.session import local_spark, with_hfspark
    from hfspark.sql import register_all
    from hfspark.udfs.factory import ModelUDF, model_udf, register
