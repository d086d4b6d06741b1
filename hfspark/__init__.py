"""hfspark: Hugging Face transformers models as batch inference on Apache Spark.

Example:
    >>> import hfspark
    >>> hfspark.save_model(pipe, "/models/sentiment")
    >>> df.withColumn("pred", hfspark.model_udf("/models/sentiment")("text"))
"""

from hfspark.errors import HfSparkError
from hfspark.flavor import ModelInfo, load_model, log_model, read_info, save_model
from hfspark.session import local_spark, with_hfspark
from hfspark.udfs import ModelUDF, model_udf, register

__version__ = "0.1.0"

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
    "save_model",
    "with_hfspark",
]
