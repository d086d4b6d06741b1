"""The hfspark flavor: save and load transformers models in an MLflow-compatible layout.

Example:
    >>> from hfspark.flavor import save_model, read_info, load_model
    >>> save_model(pipe, "/models/sentiment")                 # or s3://..., a dict, a folder
    >>> read_info("/models/sentiment").task                   # no weights loaded
    'text-classification'
    >>> load_model("/models/sentiment")("I love it")          # a transformers pipeline
    >>> log_model(pipe, "model", registered_model_name="sentiment", alias="champion")  # MLflow
"""

from typing import TYPE_CHECKING

from hfspark._lazy import lazy_exports

_EXPORTS = {
    "ModelInfo": "hfspark.flavor.info",
    "read_info": "hfspark.flavor.info",
    "load_model": "hfspark.flavor.load",
    "log_model": "hfspark.flavor.log",
    "save_model": "hfspark.flavor.save",
    "resolve_local": "hfspark.flavor.store",
    "resolve_uri": "hfspark.flavor.resolver",
}
__all__ = [
    "ModelInfo",
    "load_model",
    "log_model",
    "read_info",
    "resolve_local",
    "resolve_uri",
    "save_model",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from hfspark.flavor.info import ModelInfo, read_info
    from hfspark.flavor.load import load_model
    from hfspark.flavor.log import log_model
    from hfspark.flavor.resolver import resolve_uri
    from hfspark.flavor.save import save_model
    from hfspark.flavor.store import resolve_local
