"""Reading PEFT models: where the base and the adapter are, their hash, the merged weights.

Reads every layout MLflow's transformers flavor writes for a PEFT model (``peft_adaptor`` with
``local_base_model_path``, with the base weights in ``model/``) and hfspark's (the base as a
URI in ``metadata.hfspark.peft``). See :mod:`hfspark.flavor.peft` for the saving side.

Example:
    >>> from hfspark.flavor.peft_load import model_dir_for
    >>> model_dir_for(read_info("/models/sst2-lora"))      # base + adapter, merged once
    PosixPath('/home/me/.cache/hfspark/merged/5be1...')
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import ModelValidationError
from hfspark.flavor.constants import CONFIG_FILE, MLMODEL_FILE, FlavorKey
from hfspark.flavor.peft import (
    LOCAL_BASE_KEY,
    PEFT_DIR,
    _import_peft,
    adapter_hash,
    check_adapter,
    combined_hash,
)

__all__ = ["resolve_peft", "load_base", "model_dir_for", "peft_digest"]

_log = logging.getLogger(__name__)
_INJECTED = (".base_layer.", ".lora_", ".modules_to_save.", ".original_module.")


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


def load_base(base: Any) -> Any:
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
                load_base(info),
                str(peft_meta["adapter_dir"]),
                is_trainable=False,
                trust_remote_code=False,
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
