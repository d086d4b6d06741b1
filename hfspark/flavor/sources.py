"""What can be saved: a pipeline, a dict of components, or a pretrained folder.

A source knows its config, its components and how to write ``model/`` and ``components/``
into a staging folder. A folder is copied file by file (never loaded), except that its
processors are re-saved under ``components/`` as MLflow expects, and pickle weights are
converted to safetensors when the caller allows it.

Example:
    >>> from hfspark.flavor.sources import make_source
    >>> src = make_source("/models/bert-ner", allow_pickle=False)   # reads config.json only
    >>> src.model_type, sorted(src.components)
    ('BertForTokenClassification', ['tokenizer'])
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import ConfigError, ModelValidationError, UnsafeModelError
from hfspark.flavor.constants import (
    COMPONENT_NAMES,
    COMPONENTS_DIR,
    CONFIG_FILE,
    MLMODEL_FILE,
    MODEL_DIR,
    OTHER_WEIGHT_SUFFIXES,
    PICKLE_SUFFIXES,
)
from hfspark.flavor.metadata import normalize_dtype
from hfspark.flavor.validate import check_no_remote_code, detect_components, read_json
from hfspark.flavor.weights import check_weights, pickle_files, safetensors_files

__all__ = ["Source", "FolderSource", "MemorySource", "make_source", "model_class"]

_log = logging.getLogger(__name__)

_AUTO_COMPONENT = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
    "processor": "AutoProcessor",
}
_DICT_KEYS = (*COMPONENT_NAMES, "model", "torch_dtype")


class Source:
    """Base of the things ``save_model`` accepts."""

    config: dict[str, Any]
    components: set[str]
    task_hint: str | None = None
    instance_type: str | None = None
    source_name: str = ""
    dtype: str | None = None
    readme: str | None = None
    #: PEFT provenance of a merged adapter (base URI and hashes), written into the metadata.
    peft_info: dict[str, Any] | None = None

    @property
    def model_type(self) -> str:
        archs = self.config.get("architectures") or []
        return str(archs[0]) if archs else str(self.config.get("model_type", "PreTrainedModel"))

    def write(self, stage: Path, task_components: tuple[str, ...]) -> dict[str, str]:
        """Write ``model/`` and ``components/``; return component name -> class name."""
        raise NotImplementedError


def _copy_file(src: Path, dst: Path) -> None:
    """Copy one file (content and mode; links are followed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _skip(rel: Path) -> bool:
    if any(part.startswith(".") for part in rel.parts):  # .git, .cache, .hfspark-incomplete
        return True
    suffix = rel.suffix.lower()
    return suffix in PICKLE_SUFFIXES or suffix in OTHER_WEIGHT_SUFFIXES


def model_class(task_auto: str, config: Mapping[str, Any], exact: bool) -> Any:
    """The class that loads a model: the exact architecture when transformers has it, else Auto.

    Args:
        task_auto: the task's Auto class name (e.g. ``AutoModelForCausalLM``).
        config: the model's ``config.json``.
        exact: prefer ``config.architectures[0]`` over the Auto class.
    """
    transformers = importlib.import_module("transformers")
    archs = config.get("architectures") or []
    if exact and archs and isinstance(cls := getattr(transformers, str(archs[0]), None), type):
        if issubclass(cls, transformers.PreTrainedModel):
            return cls
    return getattr(transformers, task_auto)


class FolderSource(Source):
    """A local transformers folder (``config.json`` + weights), copied file by file."""

    def __init__(self, folder: Path, *, allow_pickle: bool) -> None:
        self.folder = folder
        if (folder / MLMODEL_FILE).exists():
            raise ConfigError(
                f"{folder} is already a saved model (it has {MLMODEL_FILE}). Use it as it is "
                "(hfspark.flavor.read_info / load_model), or pass its model/ folder to re-save."
            )
        self.config = read_json(folder / CONFIG_FILE, str(folder / CONFIG_FILE))
        check_no_remote_code([folder])
        self.components = detect_components(folder)
        self.source_name = str(folder)
        self.dtype = normalize_dtype(self.config.get("dtype") or self.config.get("torch_dtype"))
        readme = folder / "README.md"
        self.readme = (
            readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else None
        )
        self.convert = False
        if safetensors_files(folder):
            check_weights(folder)  # fail fast on a truncated source
        elif pickle_files(folder):
            if not allow_pickle:
                check_weights(folder)  # raises UnsafeModelError naming the pickle file
            self.convert = True
        else:
            check_weights(folder)  # raises "no weights"

    def write(self, stage: Path, task_components: tuple[str, ...]) -> dict[str, str]:
        model_dir = stage / MODEL_DIR
        model_dir.mkdir(parents=True)
        for src in sorted(self.folder.rglob("*")):
            rel = src.relative_to(self.folder)
            if src.is_file() and not _skip(rel):
                _copy_file(src, model_dir / rel)
        if self.convert:
            self._convert_pickle(model_dir)
        classes = {}
        transformers = importlib.import_module("transformers")
        for name in task_components:
            loader = getattr(transformers, _AUTO_COMPONENT[name])
            try:
                obj = loader.from_pretrained(str(self.folder), trust_remote_code=False)
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise ModelValidationError(
                    f"Cannot load the {name} of {self.folder}: {e}. Save it into the folder "
                    f"({name}.save_pretrained(folder)) or pass a dict with {name!r}."
                ) from e
            obj.save_pretrained(str(stage / COMPONENTS_DIR / name))
            classes[name] = type(obj).__name__
        return classes

    def _convert_pickle(self, model_dir: Path) -> None:
        from hfspark.flavor.taskinfo import TASK_AUTO_MODEL

        pickles = pickle_files(self.folder)
        _log.warning(
            "converting pickle weights %s to safetensors (allow_pickle=True)",
            [p.name for p in pickles],
        )
        cls = model_class(TASK_AUTO_MODEL.get(self.task_hint or "", "AutoModel"), self.config, True)
        try:
            model = cls.from_pretrained(
                str(self.folder), use_safetensors=False, trust_remote_code=False
            )
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelValidationError(
                f"Cannot convert the pickle weights of {self.folder}: {e}"
            ) from e
        model.save_pretrained(str(model_dir))


class MemorySource(Source):
    """A model in memory with its processors (from a pipeline or a dict)."""

    def __init__(
        self,
        model: Any,
        parts: Mapping[str, Any],
        *,
        instance_type: str | None,
        task_hint: str | None,
        dtype: Any = None,
    ) -> None:
        if not hasattr(model, "save_pretrained") or not hasattr(model, "config"):
            raise ConfigError(
                f"The model must be a transformers PreTrainedModel, got {type(model).__name__}."
            )
        if type(model).__name__.startswith("Peft"):
            raise ConfigError(
                "PEFT models are not supported: merge the adapter first "
                "(model.merge_and_unload()) and save the merged model."
            )
        device_map = getattr(model, "hf_device_map", None)
        if isinstance(device_map, dict) and len(set(device_map.values())) > 1:
            raise ConfigError(
                "The model is spread over several devices (device_map); load it "
                "on one device before saving so that all weights are written."
            )
        self.model = model
        self.parts = {k: v for k, v in parts.items() if v is not None}
        self.config = model.config.to_dict()
        self.config["architectures"] = [type(model).__name__]
        self.components = set(self.parts)
        self.instance_type = instance_type
        self.task_hint = task_hint
        self.source_name = str(getattr(model, "name_or_path", "") or "")
        self.dtype = normalize_dtype(dtype if dtype is not None else getattr(model, "dtype", None))

    def write(self, stage: Path, task_components: tuple[str, ...]) -> dict[str, str]:
        model_dir = stage / MODEL_DIR
        self.model.save_pretrained(str(model_dir))
        check_no_remote_code([model_dir], stage)
        if not safetensors_files(model_dir):
            raise UnsafeModelError(
                "save_pretrained wrote no safetensors file; hfspark stores "
                "safetensors only. Upgrade transformers."
            )
        for stray in pickle_files(model_dir):
            stray.unlink()
        classes = {}
        for name, obj in self.parts.items():
            obj.save_pretrained(str(stage / COMPONENTS_DIR / name))
            classes[name] = type(obj).__name__
        return classes


def make_source(
    model: Any,
    *,
    allow_pickle: bool,
    torch_dtype: Any = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    """Wrap what the user passed to ``save_model``.

    Raises:
        ConfigError: an unsupported object or dict key.
    """
    if isinstance(model, (str, Path)):
        from hfspark.flavor.store import is_remote, resolve_local

        folder = (
            resolve_local(model, storage_options=storage_options)
            if is_remote(model)
            else Path(model).expanduser().absolute()
        )
        if not folder.is_dir():
            raise ConfigError(f"{model} is not a folder with a transformers model (config.json).")
        return FolderSource(folder, allow_pickle=allow_pickle)
    if isinstance(model, Mapping):
        unknown = [k for k in model if k not in _DICT_KEYS]
        if unknown:
            raise ConfigError(
                f"Unknown key(s) {unknown} in the model dict; valid keys: {', '.join(_DICT_KEYS)}."
            )
        if "model" not in model:
            raise ConfigError("The model dict needs a 'model' entry (a PreTrainedModel).")
        parts = {k: model[k] for k in COMPONENT_NAMES if k in model}
        return MemorySource(
            model["model"],
            parts,
            instance_type=None,
            task_hint=None,
            dtype=torch_dtype or model.get("torch_dtype"),
        )
    transformers = importlib.import_module("transformers")
    if isinstance(model, transformers.Pipeline):
        parts = {
            n: getattr(model, n, None)
            for n in ("tokenizer", "feature_extractor", "image_processor")
        }
        return MemorySource(
            model.model,
            parts,
            instance_type=type(model).__name__,
            task_hint=getattr(model, "task", None),
            dtype=torch_dtype,
        )
    raise ConfigError(
        "save_model takes a transformers Pipeline, a dict of components ({'model': ..., "
        f"'tokenizer': ...}}) or a local model folder; got {type(model).__name__}."
    )


def json_safe(value: Any, what: str) -> Any:
    """Round-trip a value through JSON to make sure it can be stored."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON-serializable: {e}") from e
