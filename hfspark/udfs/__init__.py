"""Model UDFs: run saved transformers models as Spark column functions (Python and SQL).

Example:
    >>> from hfspark.udfs import model_udf, register
    >>> df.withColumn("sentiment", model_udf("/models/sst2")("text"))
"""

from hfspark.sql import register_all
from hfspark.udfs.executor import ModelRef, load_count
from hfspark.udfs.factory import ModelUDF, model_udf, output_type, register
from hfspark.udfs.options import UdfOptions

__all__ = ["ModelRef", "ModelUDF", "UdfOptions", "load_count", "model_udf", "output_type", "register",
           "register_all"]
