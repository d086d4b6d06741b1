"""load_model: a saved model as a transformers pipeline or as its components.

Models are loaded with ``trust_remote_code=False`` and ``use_safetensors=True``, always.
transformers 5 removed the pipelines of question-answering, summarization, translation and
text2text-generation: those models load as components (or run through hfspark's UDF).

Example:
    >>> from hfspark.flavor import load_model
    >>> pipe = load_model("/models/sentiment")
    >>> pipe("I love it")
    [{'label': 'POSITIVE', 'score': 0.99}]
    >>> parts = load_model("/models/qa", return_type="components")
    >>> sorted(parts)
    ['model', 'tokenizer']
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from hfspark.errors import ConfigError, ModelValidationError
from hfspark.flavor.constants import FlavorKey
from hfspark.flavor.info import ModelInfo, read_info
from hfspark.flavor.peft_load import model_dir_for
from hfspark.flavor.sources import model_class
from hfspark.flavor.taskinfo import architecture_suffixes, auto_model_name, required_components
from hfspark.flavor.validate import detect_components

__all__ = ["load_model", "resolve_device", "resolve_dtype"]

_RETURN_TYPES = ("pipeline", "components")
_AUTO_COMPONENT = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
    "processor": "AutoProcessor",
}


def resolve_device(device: Any) -> Any:
    """``None`` -> ``cuda:0`` when CUDA is visible else ``cpu``; ints follow pipelines (-1 = cpu)."""
    import torch

    if device is None:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if isinstance(device, int):
        return "cpu" if device < 0 else f"cuda:{device}"
    return device


def resolve_dtype(dtype: Any) -> Any:
    """``"float16"``/``"torch.float16"``/``torch.float16``/``"auto"`` -> what from_pretrained takes."""
    if dtype is None or not isinstance(dtype, str):
        return dtype
    import torch

    name = dtype.removeprefix("torch.")
    if name == "auto":
        return name
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(
            f"Unknown torch dtype {dtype!r}; use e.g. 'float32', 'float16', 'bfloat16' or 'auto'."
        )
    return value


def _pipeline_task(info: ModelInfo) -> str | None:
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES

    for name in (info.metadata.get("mlflow_task"), info.task):
        if name and (name in SUPPORTED_TASKS or name in TASK_ALIASES):
            return str(name)
    return None


def _load_components(info: ModelInfo, flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
    transformers = importlib.import_module("transformers")
    folders = dict(info.components)
    in_model_dir = detect_components(info.model_dir)
    for name in required_components(info.task):
        if name not in folders and "processor" not in folders and name in in_model_dir:
            folders[name] = info.model_dir
    loaded = {}
    for name, folder in folders.items():
        cls_name = flavor_conf.get(FlavorKey.COMPONENT_TYPE.format(name))
        cls = getattr(transformers, str(cls_name), None) if cls_name else None
        if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
            cls = getattr(transformers, _AUTO_COMPONENT[name])
        try:
            loaded[name] = cls.from_pretrained(str(folder), trust_remote_code=False)
        except (OSError, ValueError, TypeError) as e:
            raise ModelValidationError(
                f"Cannot load the {name} from {folder}: {e}. Save the "
                "model again with its processors."
            ) from e
    return loaded


def _load_weights(info: ModelInfo, flavor_conf: Mapping[str, Any], device: Any, dtype: Any) -> Any:
    config = dict(info.metadata.get("config") or {})
    if flavor_conf.get(FlavorKey.MODEL_TYPE) and not config.get("architectures"):
        config["architectures"] = [flavor_conf[FlavorKey.MODEL_TYPE]]
    # The saved architecture keeps its head; a task that accepts any architecture
    # (feature-extraction) loads the task's Auto class (the base model) instead.
    cls = model_class(
        auto_model_name(info.task), config, exact=bool(architecture_suffixes(info.task))
    )
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device == "auto" or isinstance(device, dict):
        kwargs["device_map"] = device
    try:
        model = cls.from_pretrained(str(model_dir_for(info)), **kwargs)  # PEFT: merged
    except (OSError, ValueError) as e:
        raise ModelValidationError(
            f"Cannot load the {info.task} model in {info.model_dir}: {e}"
        ) from e
    if "device_map" not in kwargs:
        model = model.to(device)
    return model.eval()


def load_model(
    uri: str | os.PathLike[str],
    *,
    device: Any = None,
    torch_dtype: Any = None,
    return_type: str = "pipeline",
    task: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """Load a saved model (hfspark, MLflow or bare transformers folder).

    Args:
        uri: where the model is (local path, ``file://``, ``/dbfs``, fsspec URL, MLflow URI).
        device: ``None`` (GPU 0 when CUDA is visible, else CPU), ``"cpu"``, ``"cuda:1"``, an
            int (-1 = CPU), or ``"auto"``/a dict for an accelerate device map.
        torch_dtype: override the saved dtype (``"float16"``, ``torch.bfloat16``, ``"auto"``).
        return_type: ``"pipeline"`` (a transformers Pipeline) or ``"components"`` (a dict
            ``{"model": ..., "tokenizer": ..., ...}``).
        task: override the saved task (see :func:`read_info`).
        storage_options: fsspec options for a remote URI.

    Raises:
        ConfigError: bad ``return_type``/dtype, or a pipeline for a task transformers 5
            no longer has a pipeline for.
        ModelValidationError: see :func:`read_info`.

    Example:
        >>> parts = load_model("s3://bucket/models/summarizer", return_type="components")
        >>> parts["model"].generate(**parts["tokenizer"]("Long text...", return_tensors="pt"))
    """
    if return_type not in _RETURN_TYPES:
        raise ConfigError(f"return_type must be 'pipeline' or 'components', got {return_type!r}.")
    info = read_info(uri, task=task, storage_options=storage_options)
    flavor_conf = (info.metadata.get("mlmodel") or {}).get("flavors", {}).get("transformers", {})
    pipeline_task = None
    if return_type == "pipeline":
        pipeline_task = _pipeline_task(info)
        if pipeline_task is None:
            import transformers

            raise ConfigError(
                f"transformers {transformers.__version__} has no {info.task!r} pipeline (removed "
                "in transformers 5). Load the model with load_model(uri, "
                "return_type='components'), or run it on Spark with hfspark's UDF, which "
                "implements the task without a pipeline."
            )
        if "processor" in info.components:
            raise ConfigError(
                "This model was saved with a processor, which pipelines do not "
                "take; use return_type='components'."
            )
    dev = resolve_device(device)
    dtype = resolve_dtype(torch_dtype if torch_dtype is not None else info.torch_dtype)
    parts: dict[str, Any] = {"model": _load_weights(info, flavor_conf, dev, dtype)}
    parts.update(_load_components(info, flavor_conf))
    if return_type == "components":
        return parts
    import transformers

    kwargs = {k: v for k, v in parts.items() if k != "processor"}
    if not (dev == "auto" or isinstance(dev, dict)):
        kwargs["device"] = dev
    return transformers.pipeline(task=pipeline_task, **kwargs)  # type: ignore[arg-type]  # stubs: task=None only
