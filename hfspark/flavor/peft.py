"""PEFT (LoRA...) models: an adapter saved with a reference to its base model, in MLflow's layout.

MLflow's transformers flavor saves a PEFT model as its adapter in ``peft/``
(``_PEFT_ADAPTOR_DIR_NAME``; ``adapter_config.json`` + ``adapter_model.safetensors``), with
``flavors.transformers.peft_adaptor: peft`` and the base model either as a local path
(``local_base_model_path``, MLflow's ``base_model_path=``) or as weights in ``model/``.
hfspark writes the first form (so ``mlflow.transformers.load_model`` loads it), adds
``metadata.hfspark.peft`` (the base model's URI, its weights hash and the adapter's), and reads
every form MLflow writes. The base may be a folder or a registered model (``models:/base/1``;
``@alias`` is pinned to its version when saving); ``merge_adapter=True`` saves the merged model
instead, an ordinary model.

On executors the base is loaded once per machine, the adapter applied and merged, and the merged
weights cached on disk under the hash of base + adapter; the UDF's model cache is keyed by that
hash too, so scoring a PEFT model costs what scoring the merged model costs.

Example:
    >>> from peft import LoraConfig, get_peft_model
    >>> tuned = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", target_modules=["query"]))
    >>> save_model({"model": tuned, "tokenizer": tok}, "/models/sst2-lora", base_model="/models/bert")
    >>> model_udf("/models/sst2-lora")            # base + adapter, merged once per machine
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import (
    ConfigError,
    MissingDependencyError,
    ModelValidationError,
    UnsafeModelError,
)
from hfspark.flavor.constants import COMPONENTS_DIR, MLMODEL_FILE, FlavorKey
from hfspark.flavor.sources import Source

__all__ = [
    "PEFT_DIR",
    "LOCAL_BASE_KEY",
    "ADAPTER_CONFIG",
    "is_peft_model",
    "is_adapter_folder",
    "PeftSource",
    "peft_source",
    "adapter_hash",
    "combined_hash",
    "check_adapter",
    "peft_version",
]

_log = logging.getLogger(__name__)

PEFT_DIR = "peft"  # mlflow.transformers.peft._PEFT_ADAPTOR_DIR_NAME
LOCAL_BASE_KEY = "local_base_model_path"  # mlflow FlavorKey.MODEL_LOCAL_BASE
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PICKLED_ADAPTER = "adapter_model.bin"


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as e:
        raise MissingDependencyError(
            "This is a PEFT (LoRA) model: install peft (pip install 'hfspark[peft]')."
        ) from e
    return peft


def is_peft_model(obj: Any) -> bool:
    """True for a ``peft.PeftModel`` (False when peft is not installed)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(obj, PeftModel)


def is_adapter_folder(path: Any) -> bool:
    """True for a local folder holding ``adapter_config.json`` (a saved PEFT adapter)."""
    if not isinstance(path, (str, os.PathLike)) or "://" in str(path):
        return False
    folder = Path(path).expanduser()
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / MLMODEL_FILE).exists()


def check_adapter(folder: Path, where: str) -> list[Path]:
    """An adapter folder's safetensors files (refuses a pickled adapter or a missing config)."""
    from hfspark.flavor.weights import check_safetensors

    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelValidationError(
            f"{where} has no {ADAPTER_CONFIG}: save the adapter again "
            "(peft_model.save_pretrained(folder))."
        )
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        if (folder / _PICKLED_ADAPTER).is_file():
            raise UnsafeModelError(
                f"{where}/{_PICKLED_ADAPTER} is a pickle file, which can run code when loaded; "
                "hfspark loads safetensors only. Save the adapter with "
                "peft_model.save_pretrained(folder, safe_serialization=True)."
            )
        raise ModelValidationError(f"{where} has no {ADAPTER_WEIGHTS}: save the adapter again.")
    for f in files:
        check_safetensors(f, f"{where}/{f.name}")
    return files


def adapter_hash(folder: Path) -> str:
    """sha256 over the adapter's config and weights (names and contents).

    Example:
        >>> adapter_hash(Path("/models/sst2-lora/peft"))[:12]
        '9b1e44c0a7d2'
    """
    from hfspark.flavor.weights import content_hash

    return content_hash([folder / ADAPTER_CONFIG, *sorted(folder.glob("*.safetensors"))])


def combined_hash(base_hash: str, adapter: str) -> str:
    """The content hash of base + adapter (the key of every cache of a PEFT model)."""
    return hashlib.sha256(f"peft\0{base_hash}\0{adapter}".encode()).hexdigest()


# ---------------------------------------------------------------------- saving
class PeftSource(Source):
    """A PEFT model (or adapter folder) and the base model it refers to."""

    is_peft = True

    def __init__(
        self,
        adapter: Any,
        base: Any,
        base_uri: str,
        parts: Mapping[str, Any],
        instance_type: str | None,
        task_hint: str | None,
    ) -> None:
        self.adapter = adapter  # a PeftModel or an adapter folder (Path)
        self.base = base  # ModelInfo of the base model
        self.base_uri = base_uri
        self.parts = {k: v for k, v in parts.items() if v is not None}
        self.config = dict(base.metadata.get("config") or {})
        self.components = set(self.parts) | set(base.components)
        self.instance_type = instance_type
        self.task_hint = task_hint or base.task
        self.source_name = base_uri
        self.dtype = base.torch_dtype

    def write(self, stage: Path, task_components: tuple[str, ...]) -> dict[str, str]:
        """Write ``peft/`` (the adapter) and ``components/``; no base weights."""
        from hfspark.tasks.base import _load_component

        target = stage / PEFT_DIR
        if isinstance(self.adapter, Path):
            target.mkdir(parents=True)
            for src in sorted(self.adapter.iterdir()):
                if src.is_file() and (
                    src.suffix == ".safetensors" or src.name in (ADAPTER_CONFIG, "README.md")
                ):
                    shutil.copyfile(src, target / src.name)
        else:
            self.adapter.save_pretrained(str(target), safe_serialization=True)
        for stray in target.glob("*.bin"):
            stray.unlink()
        classes = {}
        for name in task_components:
            obj = self.parts.get(name)
            if obj is None:
                folder = self.base.components.get(name, self.base.model_dir)
                obj = _load_component(name, folder)
            obj.save_pretrained(str(stage / COMPONENTS_DIR / name))
            classes[name] = type(obj).__name__
        return classes


def _base_reference(model: Any, base_model: Any) -> str:
    """The base model's URI: ``base_model``, else the adapter config's local base path."""
    if base_model is not None:
        return str(base_model)
    if isinstance(model, Path):
        name = json.loads((model / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    else:
        cfg = model.peft_config.get(model.active_adapter)
        name = getattr(cfg, "base_model_name_or_path", None)
    if name and Path(str(name)).expanduser().is_dir():
        return str(Path(str(name)).expanduser().absolute())
    raise ConfigError(
        f"The adapter's base model {name!r} is not a local folder: pass base_model= (a folder, "
        "or a registered model like 'models:/bert-base/1'), or merge_adapter=True to save the "
        "merged model."
    )


def peft_source(
    model: Any, *, base_model: Any = None, merge_adapter: bool = False, task: str | None = None
) -> Source | None:
    """A source for a PEFT model, a pipeline or dict holding one, or an adapter folder.

    Returns None for anything else (``save_model`` then uses its usual sources). With
    ``merge_adapter`` the adapter is merged into a copy of the base: an ordinary model.

    Raises:
        ConfigError: no usable base model reference, or ``base_model`` for a non-PEFT model.
        MissingDependencyError: peft is not installed.

    Example:
        >>> peft_source({"model": tuned, "tokenizer": tok}, base_model="models:/bert/1")
    """
    import transformers

    parts: dict[str, Any] = {}
    instance_type = task_hint = None
    inner = model
    if isinstance(model, Mapping) and "model" in model:
        inner = model["model"]
        parts = {k: v for k, v in model.items() if k not in ("model", "torch_dtype")}
    elif isinstance(model, transformers.Pipeline):
        inner = model.model
        parts = {
            n: getattr(model, n, None)
            for n in ("tokenizer", "feature_extractor", "image_processor")
        }
        instance_type, task_hint = type(model).__name__, getattr(model, "task", None)
    if is_adapter_folder(inner):
        _import_peft()
        inner = Path(inner).expanduser().absolute()
        check_adapter(inner, str(inner))
    elif not is_peft_model(inner):
        if base_model is not None or merge_adapter:
            raise ConfigError(
                "base_model= and merge_adapter= apply to PEFT models only "
                "(a peft.PeftModel or a saved adapter folder)."
            )
        return None
    from hfspark.flavor.info import read_info
    from hfspark.flavor.store import pin_uri

    ref = _base_reference(inner, base_model)
    base_uri = pin_uri(ref)  # models:/base@alias -> the version it names now
    base = read_info(base_uri, task=task or task_hint)
    if merge_adapter:
        return _merged_source(inner, base, base_uri, parts, instance_type, task_hint)
    return PeftSource(inner, base, base_uri, parts, instance_type, task_hint)


def _merged_source(
    inner: Any,
    base: Any,
    base_uri: str,
    parts: dict[str, Any],
    instance_type: str | None,
    task_hint: str | None,
) -> Source:
    """An ordinary in-memory source of the merged model (the caller's model is not changed)."""
    import copy

    from hfspark.flavor.sources import MemorySource

    peft = _import_peft()
    if isinstance(inner, Path):
        from hfspark.flavor.peft_load import load_base

        merged = peft.PeftModel.from_pretrained(
            load_base(base), str(inner), trust_remote_code=False
        ).merge_and_unload()
        a_hash = adapter_hash(inner)
    else:
        merged = copy.deepcopy(inner).merge_and_unload()
        a_hash = ""
    for name, folder in base.components.items():
        if name not in parts or parts[name] is None:
            from hfspark.tasks.base import _load_component

            parts[name] = _load_component(name, folder)
    source = MemorySource(
        merged, parts, instance_type=instance_type, task_hint=task_hint or base.task
    )
    source.source_name = base_uri
    source.peft_info = {
        "merged": True,
        "base_uri": base_uri,
        "base_hash": base.content_hash,
        **({"adapter_hash": a_hash} if a_hash else {}),
    }
    return source


def write_peft(
    stage: Path, source: PeftSource, task: str, mlflow_task: str, options: dict, dtype: str | None
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any], str]:
    """Write the adapter and components; return (classes, flavor updates, hfspark peft, hash).

    The flavor updates replace ``model_binary`` with MLflow's ``peft_adaptor`` and
    ``local_base_model_path`` (the base model's local transformers folder).
    """
    from hfspark.flavor.weights import file_sha256

    classes = source.write(stage, _task_components(task))
    files = check_adapter(stage / PEFT_DIR, PEFT_DIR)
    a_hash = adapter_hash(stage / PEFT_DIR)
    config = json.loads((stage / PEFT_DIR / ADAPTER_CONFIG).read_text())
    section = {
        "adapter_dir": PEFT_DIR,
        "base_uri": source.base_uri,
        "base_hash": source.base.content_hash,
        "adapter_hash": a_hash,
        "peft_type": config.get("peft_type"),
        "merged": False,
        "adapter_files": {
            f.name: {"size": f.stat().st_size, "sha256": file_sha256(f)} for f in files
        },
    }
    flavor = {FlavorKey.PEFT: PEFT_DIR, LOCAL_BASE_KEY: str(source.base.model_dir)}
    return classes, flavor, section, combined_hash(source.base.content_hash, a_hash)


def _task_components(task: str) -> tuple[str, ...]:
    from hfspark.flavor.taskinfo import required_components

    return required_components(task)


def peft_version() -> str | None:
    """The installed peft version (None when it is not installed)."""
    try:
        return importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return None
