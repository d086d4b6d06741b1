"""The metadata of a saved model, built and parsed by pure functions (no weight I/O).

``MLmodel`` holds MLflow's ``flavors.transformers`` and ``flavors.python_function`` sections
(so ``mlflow.transformers.load_model`` and pyfunc read the folder) and hfspark's own section
under ``metadata.hfspark``: task, inference config, Spark schema, weight hash and versions.

Example:
    >>> from hfspark.flavor.metadata import build_transformers_flavor
    >>> build_transformers_flavor(task="text-classification", instance_type="TextClassificationPipeline",
    ...     model_type="BertForSequenceClassification", source_model_name="/models/bert",
    ...     components={"tokenizer": "BertTokenizer"}, torch_dtype="torch.float32",
    ...     transformers_version="5.24.0")["components"]
    ['tokenizer']
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import uuid
from collections.abc import Mapping
from typing import Any

import yaml

from hfspark.errors import ModelValidationError
from hfspark.flavor.constants import (
    CONDA_FILE,
    FLAVOR_NAME,
    HFSPARK_FORMAT_VERSION,
    MODEL_DIR,
    PYFUNC_FLAVOR,
    PYFUNC_LOADER,
    PYTHON_ENV_FILE,
    FlavorKey,
    HfSparkKey,
    PyfuncKey,
)

__all__ = [
    "normalize_dtype",
    "mlflow_dtype",
    "versions",
    "build_transformers_flavor",
    "build_pyfunc_flavor",
    "build_hfspark_section",
    "build_mlmodel",
    "dump_mlmodel",
    "parse_mlmodel",
    "requirements",
    "python_env",
    "conda_env",
]

_REQUIREMENT_PACKAGES = ("transformers", "torch", "safetensors", "accelerate", "tokenizers")


def normalize_dtype(dtype: Any) -> str | None:
    """``torch.float16`` / ``"torch.float16"`` / ``"float16"`` -> ``"float16"`` (None stays None)."""
    if dtype is None:
        return None
    text = str(dtype).strip()
    if not text or text == "None":
        return None
    return text.removeprefix("torch.")


def mlflow_dtype(dtype: Any) -> str | None:
    """The dtype as MLflow writes it in ``MLmodel`` (``torch.float32``); ``auto`` stays ``auto``."""
    name = normalize_dtype(dtype)
    if name is None or name == "auto":
        return name
    return f"torch.{name}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Installed versions of hfspark, transformers, torch, safetensors and Python."""
    return {
        "hfspark": _version("hfspark"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
        "safetensors": _version("safetensors"),
        "python": platform.python_version(),
    }


def build_transformers_flavor(
    *,
    task: str,
    instance_type: str,
    model_type: str,
    source_model_name: str,
    components: Mapping[str, str],
    torch_dtype: str | None,
    transformers_version: str | None,
) -> dict[str, Any]:
    """``flavors.transformers`` of ``MLmodel``, as ``mlflow.transformers`` writes it.

    Args:
        task: MLflow's task name (``text-classification``, ``translation_en_to_fr``...).
        instance_type: the pipeline class name (``TextClassificationPipeline``).
        model_type: the model class name (``BertForSequenceClassification``).
        source_model_name: where the model came from (hub id or folder).
        components: component name -> class name; ``processor`` is recorded apart as MLflow does.
        torch_dtype: ``torch.float32`` style or None.
        transformers_version: the installed transformers version.
    """
    conf: dict[str, Any] = {
        FlavorKey.TRANSFORMERS_VERSION: transformers_version,
        FlavorKey.CODE: None,
        FlavorKey.TASK: task,
        FlavorKey.INSTANCE_TYPE: instance_type,
        FlavorKey.FRAMEWORK: "pt",
        FlavorKey.MODEL_TYPE: model_type,
        FlavorKey.MODEL_NAME: source_model_name,
        FlavorKey.MODEL_BINARY: MODEL_DIR,
    }
    if torch_dtype:
        conf[FlavorKey.TORCH_DTYPE] = torch_dtype
    for name, cls in components.items():
        conf[FlavorKey.COMPONENT_TYPE.format(name)] = cls
    conf[FlavorKey.COMPONENTS] = [n for n in components if n != "processor"]
    return conf


def build_pyfunc_flavor(
    python_version: str, model_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``flavors.python_function``: lets ``mlflow.pyfunc.load_model`` serve the folder."""
    conf: dict[str, Any] = {
        PyfuncKey.LOADER_MODULE: PYFUNC_LOADER,
        PyfuncKey.PYTHON_VERSION: python_version,
        PyfuncKey.ENV: {"conda": CONDA_FILE, "virtualenv": PYTHON_ENV_FILE},
    }
    if model_config:
        conf[PyfuncKey.MODEL_CONFIG] = dict(model_config)
    return conf


def build_hfspark_section(
    *,
    task: str,
    inference_config: Mapping[str, Any],
    schema: Mapping[str, Any] | None,
    content_hash: str,
    weight_files: Mapping[str, Mapping[str, Any]],
    components: list[str],
    version_info: Mapping[str, Any],
    input_example: str | None = None,
) -> dict[str, Any]:
    """``metadata.hfspark``: what hfspark needs on the driver and executors, without weights."""
    section: dict[str, Any] = {
        HfSparkKey.FORMAT_VERSION: HFSPARK_FORMAT_VERSION,
        HfSparkKey.TASK: task,
        HfSparkKey.INFERENCE_CONFIG: dict(inference_config),
        HfSparkKey.MODEL_DIR: MODEL_DIR,
        HfSparkKey.COMPONENTS: list(components),
        HfSparkKey.CONTENT_HASH: content_hash,
        HfSparkKey.WEIGHT_FILES: {k: dict(v) for k, v in weight_files.items()},
        HfSparkKey.VERSIONS: dict(version_info),
    }
    if schema is not None:
        section[HfSparkKey.SCHEMA] = dict(schema)
    if input_example is not None:
        section[HfSparkKey.INPUT_EXAMPLE] = input_example
    return section


def build_mlmodel(
    *,
    transformers_flavor: Mapping[str, Any],
    pyfunc_flavor: Mapping[str, Any] | None,
    hfspark_section: Mapping[str, Any],
    user_metadata: Mapping[str, Any] | None = None,
    prompt_template: str | None = None,
    size_bytes: int | None = None,
    now: _dt.datetime | None = None,
    model_uuid: str | None = None,
) -> dict[str, Any]:
    """The whole ``MLmodel`` document (a dict ready for :func:`dump_mlmodel`)."""
    flavors: dict[str, Any] = {}
    if pyfunc_flavor is not None:
        flavors[PYFUNC_FLAVOR] = dict(pyfunc_flavor)
    flavors[FLAVOR_NAME] = dict(transformers_flavor)
    metadata: dict[str, Any] = dict(user_metadata or {})
    if prompt_template is not None:
        metadata[PyfuncKey.PROMPT_TEMPLATE] = prompt_template
    metadata[HfSparkKey.SECTION] = dict(hfspark_section)
    now = now or _dt.datetime.now(_dt.UTC)
    doc: dict[str, Any] = {
        PyfuncKey.FLAVORS: flavors,
        PyfuncKey.METADATA: metadata,
        "model_uuid": model_uuid or uuid.uuid4().hex,
        "utc_time_created": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    if (mlflow_version := _version("mlflow")) is not None:
        doc["mlflow_version"] = mlflow_version
    if size_bytes is not None:
        doc["model_size_bytes"] = int(size_bytes)
    return doc


def dump_mlmodel(doc: Mapping[str, Any]) -> str:
    """``MLmodel`` as YAML text."""
    return yaml.safe_dump(dict(doc), default_flow_style=False, sort_keys=True)


def parse_mlmodel(text: str, label: str = "MLmodel") -> dict[str, Any]:
    """Parse ``MLmodel`` (``yaml.safe_load``) and check its shape.

    Raises:
        ModelValidationError: not YAML, not a mapping, or no ``flavors.transformers``.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ModelValidationError(f"{label} is not valid YAML ({e}). Save the model again.") from e
    if not isinstance(doc, dict) or not isinstance(doc.get(PyfuncKey.FLAVORS), dict):
        raise ModelValidationError(f"{label} has no 'flavors' mapping. Save the model again.")
    flavor = doc[PyfuncKey.FLAVORS].get(FLAVOR_NAME)
    if not isinstance(flavor, dict):
        found = ", ".join(doc[PyfuncKey.FLAVORS]) or "none"
        raise ModelValidationError(
            f"{label} has no '{FLAVOR_NAME}' flavor (found: {found}); hfspark reads models "
            "saved by hfspark.flavor.save_model or mlflow.transformers."
        )
    meta = doc.get(PyfuncKey.METADATA)
    if meta is not None and not isinstance(meta, dict):
        raise ModelValidationError(f"{label}: 'metadata' must be a mapping.")
    section = (meta or {}).get(HfSparkKey.SECTION)
    if section is not None and not isinstance(section, dict):
        raise ModelValidationError(f"{label}: 'metadata.hfspark' must be a mapping.")
    return doc


def requirements(version_info: Mapping[str, Any] | None = None) -> list[str]:
    """Pinned pip requirements of a saved model (``requirements.txt``)."""
    reqs = []
    for pkg in _REQUIREMENT_PACKAGES:
        v = (version_info or {}).get(pkg) or _version(pkg)
        if v:
            reqs.append(f"{pkg}=={v.split('+')[0]}")
    return reqs


def python_env(python_version: str) -> dict[str, Any]:
    """``python_env.yaml`` as MLflow writes it (its dependencies are ``requirements.txt``)."""
    return {
        "python": python_version,
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }


def conda_env(python_version: str, reqs: list[str]) -> dict[str, Any]:
    """``conda.yaml`` as MLflow writes it."""
    mlflow_version = _version("mlflow")
    pip = [f"mlflow=={mlflow_version}"] if mlflow_version else ["mlflow"]
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version}", "pip", {"pip": pip + list(reqs)}],
    }
