"""The hfspark flavor: save and load transformers models in an MLflow-compatible layout.

Example:
    >>> from hfspark.flavor import save_model, read_info, load_model
    >>> save_model(pipe, "/models/sentiment")                 # or s3://..., a dict, a folder
    >>> read_info("/models/sentiment").task                   # no weights loaded
    'text-classification'
    >>> load_model("/models/sentiment")("I love it")          # a transformers pipeline
    >>> log_model(pipe, "model", registered_model_name="sentiment", alias="champion")  # MLflow
"""

from hfspark.flavor.info import ModelInfo, read_info
from hfspark.flavor.load import load_model
from hfspark.flavor.log import log_model
from hfspark.flavor.save import save_model
from hfspark.flavor.store import resolve_local

__all__ = ["ModelInfo", "load_model", "log_model", "read_info", "resolve_local", "save_model"]
