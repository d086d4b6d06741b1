"""The hfspark flavor: save and load transformers models in an MLflow-compatible layout."""

from hfspark.flavor.info import ModelInfo

__all__ = ["ModelInfo"]
