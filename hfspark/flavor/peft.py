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
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import (
    ConfigError,
    MissingDependencyError,
    ModelValidationError,
    UnsafeModelError,
)
from hfspark.flavor.constants import COMPONENTS_DIR, CONFIG_FILE, MLMODEL_FILE, FlavorKey
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
    "resolve_peft",
    "model_dir_for",
]

_log = logging.getLogger(__name__)

PEFT_DIR = "peft"  # mlflow.transformers.peft._PEFT_ADAPTOR_DIR_NAME
LOCAL_BASE_KEY = "local_base_model_path"  # mlflow FlavorKey.MODEL_LOCAL_BASE
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PICKLED_ADAPTER = "adapter_model.bin"
_INJECTED = (".base_layer.", ".lora_", ".modules_to_save.", ".original_module.")


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
        merged = peft.PeftModel.from_pretrained(_load_base(base), str(inner)).merge_and_unload()
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


# ---------------------------------------------------------------------- reading
def resolve_peft(
    root: Path,
    flavor_conf: Mapping[str, Any],
    saved: Mapping[str, Any],
    label: str,
    task: str | None,
) -> dict[str, Any]:
    """Where a PEFT model's base weights and adapter are (MLflow's and hfspark's layouts).

    Returns ``{"model_dir", "adapter_dir", "base_uri", "base_hash"}`` (the last two may be None).

    Raises:
        ModelValidationError: the base model cannot be found, or is a hub reference.
    """
    from hfspark.flavor.validate import check_inside

    adapter_dir = check_inside(
        root, flavor_conf[FlavorKey.PEFT], "flavors.transformers.peft_adaptor"
    )
    check_adapter(adapter_dir, f"{root}/{flavor_conf[FlavorKey.PEFT]}")
    info = dict(saved.get("peft") or {})
    base_uri, base_hash = info.get("base_uri"), info.get("base_hash")
    if base_uri and ("://" in str(base_uri) or str(base_uri).startswith(("models:", "runs:"))):
        from hfspark.flavor.info import read_info

        base = read_info(str(base_uri), task=task)
        model_dir = base.model_dir
    elif flavor_conf.get(LOCAL_BASE_KEY):
        model_dir = Path(str(flavor_conf[LOCAL_BASE_KEY]))
        if (model_dir / MLMODEL_FILE).is_file():  # a saved model folder: its weights folder
            from hfspark.flavor.info import read_info

            model_dir = read_info(model_dir, task=task).model_dir
        if not (model_dir / CONFIG_FILE).is_file():
            raise ModelValidationError(
                f"{label}: the PEFT base model {model_dir} (local_base_model_path) is not there. "
                "Put the base model back at that path, or save the adapter again with "
                "base_model= pointing at where the base model is now."
            )
    elif flavor_conf.get(FlavorKey.MODEL_BINARY):
        model_dir = check_inside(
            root, flavor_conf[FlavorKey.MODEL_BINARY], "flavors.transformers.model_binary"
        )
    else:
        raise ModelValidationError(
            f"{label}: the PEFT base model is a Hugging Face hub reference "
            f"({flavor_conf.get(FlavorKey.MODEL_NAME)!r}), which hfspark never downloads. Save "
            "the adapter again with a local base model (mlflow.transformers.save_model(..., "
            "base_model_path=...) or hfspark's save_model(..., base_model=...))."
        )
    return {
        "model_dir": model_dir,
        "adapter_dir": adapter_dir,
        "base_uri": base_uri,
        "base_hash": base_hash,
    }


def _load_base(base: Any) -> Any:
    """The base model of ``base`` (a ModelInfo), with the task's class; safetensors only.

    MLflow's own PEFT layout with the base in ``model/`` holds the weights of the model with the
    adapter injected (``...query.base_layer.weight``, ``lora_A``...): the base weights are taken
    back out of those names.
    """
    from safetensors.torch import load_file

    from hfspark.flavor.sources import model_class
    from hfspark.flavor.taskinfo import architecture_suffixes, auto_model_name
    from hfspark.flavor.weights import safetensors_files

    config = dict(base.metadata.get("config") or {})
    cls = model_class(
        auto_model_name(base.task), config, exact=bool(architecture_suffixes(base.task))
    )
    files = safetensors_files(base.model_dir)
    keys = set()
    from safetensors import safe_open

    for f in files:
        with safe_open(str(f), "pt") as handle:
            keys.update(handle.keys())
    if not any(marker in k for k in keys for marker in _INJECTED):
        return cls.from_pretrained(
            str(base.model_dir), trust_remote_code=False, use_safetensors=True
        ).eval()
    from transformers import AutoConfig

    state: dict[str, Any] = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            if ".lora_" in k or ".modules_to_save." in k:
                continue
            state[k.replace(".base_layer.", ".").replace(".original_module.", ".")] = v
    model = cls._from_config(
        AutoConfig.from_pretrained(str(base.model_dir), trust_remote_code=False)
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    tensors = model.state_dict(keep_vars=True)
    untied = [
        k
        for k in missing
        if not any(  # a tied weight shares its storage with a loaded one
            n in state and n != k and t.data_ptr() == tensors[k].data_ptr()
            for n, t in tensors.items()
        )
    ]
    if unexpected or untied:
        raise ModelValidationError(
            f"{base.model_dir}: the base weights do not fit "
            f"{cls.__name__} (missing {sorted(untied)[:3]}, unexpected "
            f"{sorted(unexpected)[:3]}). Save the PEFT model again."
        )
    return model.eval()


def model_dir_for(info: Any) -> Path:
    """The folder to load a model's weights from: for a PEFT model, base + adapter merged.

    The merged weights are written once per machine (under a file lock) into
    ``<cache>/merged/<hash of base + adapter>``; other models return ``info.model_dir``.

    Example:
        >>> model_dir_for(read_info("/models/sst2-lora"))
        PosixPath('/home/me/.cache/hfspark/merged/5be1...')
    """
    peft_meta = info.metadata.get("peft")
    if not peft_meta:
        return info.model_dir
    from filelock import FileLock

    from hfspark.flavor.store import cache_root

    final = cache_root() / "merged" / info.content_hash[:32]
    if (final / CONFIG_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock", timeout=3600):
        if (final / CONFIG_FILE).is_file():
            return final
        peft = _import_peft()
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            model = peft.PeftModel.from_pretrained(
                _load_base(info), str(peft_meta["adapter_dir"]), is_trainable=False
            )
            model.merge_and_unload().save_pretrained(str(tmp), safe_serialization=True)
            for stray in tmp.glob("*.bin"):
                stray.unlink()
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _log.info("merged the PEFT adapter of %s into %s", info.uri, final)
    return final


def peft_digest(
    peft_meta: Mapping[str, Any], base_files: list[Path], saved: str | None, where: str
) -> tuple[str, str]:
    """(adapter hash, content hash) of a PEFT model, checked against what was saved.

    Raises:
        ModelValidationError: the base model's weights or the adapter changed since the save.
    """
    from hfspark.flavor.weights import content_hash

    base_hash = content_hash(base_files)  # per-file digests are cached per machine
    if peft_meta.get("base_hash") and base_hash != peft_meta["base_hash"]:
        raise ModelValidationError(
            f"{where}: the PEFT base model ({peft_meta.get('base_uri')}) changed since the adapter "
            "was saved (its weights hash differs); the adapter was trained on the old one. Point "
            "base_model= at the original base model and save the adapter again."
        )
    a_hash = adapter_hash(Path(peft_meta["adapter_dir"]))
    digest = combined_hash(base_hash, a_hash)
    if saved and saved != digest:
        raise ModelValidationError(
            f"{where}/{PEFT_DIR}: the adapter changed since it was saved "
            "(content hash differs). Save the model again."
        )
    return a_hash, digest
