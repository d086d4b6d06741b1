"""ModelInfo: what the rest of hfspark needs to know about a saved model (no weights loaded).

:func:`read_info` reads a folder saved by hfspark, by ``mlflow.transformers`` (it computes
what hfspark's metadata would hold) or a bare transformers folder with ``config.json``. It
checks the folder (task vs architecture, components, safetensors headers, no remote code, no
paths out of the folder) by reading small files only, so the UDF engine can call it on the
driver and on every executor. Weight hashes are cached per machine.

Example:
    >>> from hfspark.flavor import read_info
    >>> info = read_info("/models/sentiment")
    >>> info.task, info.content_hash[:12]
    ('text-classification', '3f2a9c0d1e4b')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hfspark.errors import ConfigError, ModelValidationError
from hfspark.flavor.constants import (
    COMPONENT_NAMES,
    COMPONENTS_DIR,
    CONFIG_FILE,
    HFSPARK_FORMAT_VERSION,
    INCOMPLETE_MARKER,
    MLMODEL_FILE,
    FlavorKey,
    HfSparkKey,
    PyfuncKey,
)

__all__ = ["ModelInfo", "read_info"]

#: the temporary names save_model writes under (``.<name>.tmp-<hex>``, ``.<name>.old-<hex>``).
_STAGING_NAME = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{12}$")


@dataclass(frozen=True)
class ModelInfo:
    """A saved model, resolved to a local folder.

    Attributes:
        uri: the URI the user gave (``/path``, ``file://``, ``s3://``, ``models:/``...).
        root: local folder of the saved model (a cache copy for remote stores).
        task: canonical task name.
        model_dir: folder with ``config.json`` and the safetensors weights.
        components: processor name -> folder (``tokenizer``, ``feature_extractor``...).
        content_hash: sha256 over the weight files (identifies the model in caches).
        inference_config: default task options saved with the model.
        torch_dtype: dtype saved with the model, or None.
        flavor: ``hfspark``, ``mlflow`` or ``pretrained`` (a bare transformers folder).
        metadata: everything else: ``mlmodel`` (the parsed MLmodel, empty for a bare
            folder), ``hfspark`` (hfspark's section, computed when the folder has none),
            ``config`` (``config.json``) and ``mlflow_task``.
        prompt_template: the saved prompt template (one ``{prompt}``), or None.
        schema: Spark ``input`` fields/types and ``output`` type string, or None when the
            task's adapter is not available.
    """

    uri: str
    root: Path
    task: str
    model_dir: Path
    components: dict[str, Path] = field(default_factory=dict)
    content_hash: str = ""
    inference_config: dict[str, Any] = field(default_factory=dict)
    torch_dtype: str | None = None
    flavor: str = "hfspark"
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt_template: str | None = None
    schema: dict[str, Any] | None = None

    def relocated(self, root: Path) -> ModelInfo:
        """This info with its folder at ``root`` (the same model, copied to another machine).

        Paths inside the old folder move with it; paths elsewhere (a PEFT base model on a
        shared path) stay.

        Example:
            >>> info.relocated(Path("/local/cache/abc")).model_dir
            PosixPath('/local/cache/abc/model')
        """
        old = Path(self.root)

        def move(path: Any) -> Any:
            p = Path(path)
            return Path(root) / p.relative_to(old) if p.is_relative_to(old) else path

        meta = dict(self.metadata)
        if isinstance(meta.get("peft"), dict):
            meta["peft"] = {
                k: move(v) if isinstance(v, Path) else v for k, v in meta["peft"].items()
            }
        return replace(
            self,
            root=Path(root),
            model_dir=move(self.model_dir),
            components={k: move(v) for k, v in self.components.items()},
            metadata=meta,
        )


def read_info(
    uri: str | os.PathLike[str],
    *,
    task: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    verify: bool = False,
) -> ModelInfo:
    """Describe a saved model without loading its weights.

    Args:
        uri: local path, ``file://``, ``/dbfs/...``, fsspec URL or MLflow URI. A remote
            model is copied once into the local cache (see :func:`resolve_local`).
        task: override the saved task (needed for a bare folder whose task cannot be
            inferred from ``config.architectures``).
        storage_options: fsspec options for a remote URI.
        verify: re-hash the weights and compare with the hash saved by hfspark.

    Raises:
        ModelValidationError: incomplete or inconsistent folder (names the file and the fix).
        UnsafeModelError: pickle-only weights, remote code, or a path out of the folder.
        UnknownTaskError: the task is not known to hfspark.
        ModelStoreError: the store cannot be read.

    Example:
        >>> info = read_info("s3://bucket/models/ner")
        >>> info.root, info.components["tokenizer"]
    """
    from hfspark.flavor import metadata as md
    from hfspark.flavor.store import resolve_local
    from hfspark.flavor.taskinfo import (
        infer_task,
        known_options,
        mlflow_task_name,
        task_schema,
        translation_defaults,
    )
    from hfspark.flavor.validate import (
        check_architecture,
        check_components,
        check_inside,
        check_no_remote_code,
        detect_components,
        read_json,
    )
    from hfspark.flavor.weights import check_weights, content_hash, file_sha256
    from hfspark.tasks.registry import canonical_task

    root = resolve_local(uri, storage_options=storage_options)
    if not root.is_dir():
        raise ModelValidationError(f"{uri} is not a folder; a saved model is a folder.")
    if (root / INCOMPLETE_MARKER).exists() or _STAGING_NAME.match(root.name):
        raise ModelValidationError(
            f"{root} is the leftover of an interrupted save ({INCOMPLETE_MARKER} is present). "
            "Delete it and save the model again."
        )
    doc: dict[str, Any] = {}
    saved: dict[str, Any] = {}
    flavor_conf: dict[str, Any] = {}
    prompt_template = None
    peft: dict[str, Any] | None = None
    if (root / MLMODEL_FILE).is_file():
        label = f"{root}/{MLMODEL_FILE}"
        doc = md.parse_mlmodel((root / MLMODEL_FILE).read_text(encoding="utf-8"), label)
        flavor_conf = doc[PyfuncKey.FLAVORS]["transformers"]
        meta = doc.get(PyfuncKey.METADATA) or {}
        saved = meta.get(HfSparkKey.SECTION) or {}
        prompt_template = meta.get(PyfuncKey.PROMPT_TEMPLATE)
        if int(saved.get(HfSparkKey.FORMAT_VERSION, 1)) > HFSPARK_FORMAT_VERSION:
            raise ModelValidationError(f"{label} was written by a newer hfspark; upgrade hfspark.")
        if flavor_conf.get(FlavorKey.PEFT):  # an adapter + a reference to its base model
            from hfspark.flavor.peft_load import resolve_peft

            peft = resolve_peft(
                root,
                flavor_conf,
                saved,
                label,
                task or saved.get(HfSparkKey.TASK) or flavor_conf.get(FlavorKey.TASK),
            )
        binary = flavor_conf.get(FlavorKey.MODEL_BINARY)
        if peft is None and binary is None:
            if FlavorKey.MODEL_REVISION in flavor_conf:
                raise ModelValidationError(
                    f"{label}: the weights are not in the folder (saved with "
                    "save_pretrained=False). Run mlflow.transformers.persist_pretrained_model "
                    "on it, or save it again with the weights."
                )
            binary = "pipeline"  # MLflow < 2.4.1 layout
        model_dir = (
            peft["model_dir"]
            if peft is not None
            else check_inside(root, binary, "flavors.transformers.model_binary")
        )
        if HfSparkKey.MODEL_DIR in saved:
            check_inside(root, saved[HfSparkKey.MODEL_DIR], "metadata.hfspark.model_dir")
        names = list(flavor_conf.get(FlavorKey.COMPONENTS) or [])
        if FlavorKey.PROCESSOR_TYPE in flavor_conf:
            names.append("processor")
        components: dict[str, Path] = {}
        for name in names:
            if name not in COMPONENT_NAMES:
                raise ModelValidationError(
                    f"{label}: unknown component {name!r}; components "
                    f"are {', '.join(COMPONENT_NAMES)}."
                )
            folder = check_inside(root, f"{COMPONENTS_DIR}/{name}", f"components.{name}")
            if not folder.is_dir():
                raise ModelValidationError(
                    f"{root}/{COMPONENTS_DIR}/{name} is missing although "
                    f"{MLMODEL_FILE} lists it. Save the model again."
                )
            components[name] = folder
        saved_task = saved.get(HfSparkKey.TASK) or flavor_conf.get(FlavorKey.TASK)
        if not (task or saved_task):
            raise ModelValidationError(f"{label} records no task; pass task=...")
        final_task = canonical_task(str(task or saved_task))
        flavor = "hfspark" if saved else "mlflow"
        if saved and final_task == saved.get(HfSparkKey.TASK):
            options = dict(saved.get(HfSparkKey.INFERENCE_CONFIG) or {})
        elif not saved:
            pyfunc = doc[PyfuncKey.FLAVORS].get("python_function") or {}
            options = translation_defaults(
                final_task,
                flavor_conf.get(FlavorKey.TASK),
                known_options(final_task, pyfunc.get(PyfuncKey.MODEL_CONFIG) or {}),
            )
        else:
            options = {}
        dtype = md.normalize_dtype(flavor_conf.get(FlavorKey.TORCH_DTYPE))
    elif (root / CONFIG_FILE).is_file():
        model_dir = root
        components = {name: root for name in sorted(detect_components(root))}
        config = read_json(root / CONFIG_FILE)
        final_task = canonical_task(task) if task else infer_task(config, set(components))
        flavor = "pretrained"
        options = {}
        dtype = md.normalize_dtype(config.get("dtype") or config.get("torch_dtype"))
    else:
        raise ModelValidationError(
            f"{root} holds neither {MLMODEL_FILE} nor {CONFIG_FILE}: not a saved model. Save "
            "one with hfspark.flavor.save_model (or model.save_pretrained)."
        )

    rel = os.path.relpath(model_dir, root)
    config = read_json(model_dir / CONFIG_FILE, f"{root}/{rel}/{CONFIG_FILE}")
    check_no_remote_code([model_dir, *components.values()], root)
    check_architecture(final_task, config, f"{root}/{rel}/{CONFIG_FILE}")
    check_components(final_task, set(components) | detect_components(model_dir), str(root))
    files = check_weights(model_dir, where=f"{root}/{rel}")
    recorded = saved.get(HfSparkKey.WEIGHT_FILES) or {}
    digest = saved.get(HfSparkKey.CONTENT_HASH)
    if peft is not None:
        from hfspark.flavor.peft_load import peft_digest

        peft["adapter_hash"], digest = peft_digest(peft, files, digest, str(root))
    elif recorded:
        _check_recorded(recorded, files, f"{root}/{rel}")
    if peft is None and (not digest or verify):
        actual = content_hash(files)
        if digest and actual != digest:
            raise ModelValidationError(
                f"{root}/{rel}: the weights changed since they were "
                "saved (content hash differs). Save the model again."
            )
        digest = actual
    schema = saved.get(HfSparkKey.SCHEMA) if saved.get(HfSparkKey.TASK) == final_task else None
    if schema is None:
        try:
            schema = task_schema(final_task, options)
        except ConfigError:
            schema = None
    section = dict(saved) or md.build_hfspark_section(
        task=final_task,
        inference_config=options,
        schema=schema,
        content_hash=str(digest or ""),
        weight_files={f.name: {"size": f.stat().st_size, "sha256": file_sha256(f)} for f in files},
        components=sorted(components),
        version_info={"transformers": flavor_conf.get(FlavorKey.TRANSFORMERS_VERSION)},
    )
    return ModelInfo(
        uri=str(uri),
        root=root,
        task=final_task,
        model_dir=model_dir,
        components=components,
        content_hash=str(digest or ""),
        inference_config=options,
        torch_dtype=dtype,
        flavor=flavor,
        metadata={
            "mlmodel": doc,
            "hfspark": section,
            "config": config,
            **({"peft": peft} if peft is not None else {}),
            "mlflow_task": flavor_conf.get(FlavorKey.TASK) or mlflow_task_name(final_task),
        },
        prompt_template=prompt_template,
        schema=schema,
    )


def _check_recorded(recorded: Mapping[str, Any], files: list[Path], where: str) -> None:
    """Compare weight files with the names and sizes hfspark recorded (a cheap stat)."""
    by_name = {f.name: f for f in files}
    for name, meta in recorded.items():
        f = by_name.get(name)
        if f is None:
            raise ModelValidationError(
                f"{where}/{name} is missing (it was saved with the model). "
                "Copy it again or save the model again."
            )
        size = (meta or {}).get("size")
        if size is not None and f.stat().st_size != int(size):
            raise ModelValidationError(
                f"{where}/{name} has {f.stat().st_size} bytes but was saved with {size}: the "
                "file changed or was copied partly. Copy it again or save the model again."
            )
