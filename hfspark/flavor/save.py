"""save_model: write a model in MLflow's transformers layout plus hfspark metadata, atomically.

The folder is written next to its target under a temporary name, marked incomplete until the
end, then renamed into place: an interrupted save never leaves a folder that looks valid.
Saving to a remote URL saves into the local cache first, then uploads (``MLmodel`` last).

Example:
    >>> from transformers import pipeline
    >>> from hfspark.flavor import save_model
    >>> info = save_model(pipeline("text-classification", model="/models/bert-sst2"), "/models/sst2")
    >>> info.task, info.flavor
    ('text-classification', 'hfspark')
"""

from __future__ import annotations

import os
import platform
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hfspark.errors import ConfigError
from hfspark.flavor import metadata as md
from hfspark.flavor.constants import (
    CONDA_FILE,
    CONFIG_FILE,
    INCOMPLETE_MARKER,
    INPUT_EXAMPLE_FILE,
    MLMODEL_FILE,
    MODEL_CARD_FILE,
    MODEL_DIR,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    FlavorKey,
    HfSparkKey,
)
from hfspark.flavor.info import ModelInfo, read_info
from hfspark.flavor.sources import Source, json_safe, make_source
from hfspark.flavor.store import (
    MLFLOW_SCHEMES,
    cache_dir_for,
    cache_root,
    is_remote,
    local_path,
    remote_exists,
    remove_remote,
    upload_dir,
)
from hfspark.flavor.taskinfo import (
    PIPELINE_CLASSES,
    check_inference_config,
    infer_task,
    mlflow_task_name,
    required_components,
    task_schema,
    translation_defaults,
)
from hfspark.flavor.validate import (
    check_architecture,
    check_components,
    check_prompt_template,
    read_json,
)
from hfspark.flavor.weights import check_weights, content_hash, file_sha256
from hfspark.tasks.registry import canonical_task

__all__ = ["save_model"]


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    inference_config: Mapping[str, Any] | None = None,
    torch_dtype: Any = None,
    model_card: Any = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    allow_pickle: bool = False,
    prompt_template: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    base_model: Any = None,
    merge_adapter: bool = False,
    onnx: bool = False,
) -> ModelInfo:
    """Save a transformers model for hfspark (and MLflow) at ``path``.

    Args:
        model: a transformers ``Pipeline``; a dict with ``model`` and optionally
            ``tokenizer``, ``feature_extractor``, ``image_processor``, ``processor``; or a
            local pretrained folder (copied file by file, never loaded).
        path: local path, ``file://``, ``/dbfs/...`` or an fsspec URL (``s3://...``).
        task: task name or alias (inferred from the pipeline or ``config.architectures``
            when left out). ``translation_en_to_fr`` style names keep their language pair.
        inference_config: default task options (validated by the task's adapter).
        torch_dtype: dtype to load the model with (recorded, the weights are not cast).
        model_card: markdown text or a ``huggingface_hub.ModelCard`` for ``model_card.md``.
        input_example: a JSON-serializable example input (``input_example.json``).
        metadata: extra user metadata written under ``metadata`` in ``MLmodel``.
        overwrite: replace an existing model at ``path``.
        allow_pickle: convert pickle weights (``.bin``...) of a folder to safetensors.
        prompt_template: a template with exactly one ``{prompt}`` (MLflow-compatible).
        storage_options: fsspec options for a remote ``path`` or folder.
        base_model: for a PEFT model (a ``peft.PeftModel``, or a saved adapter folder): its base
            model, a folder or a registered model (``models:/bert/1``); default: the adapter
            config's base when it is a local folder. Saved as MLflow's ``peft/`` layout.
        merge_adapter: for a PEFT model: save the merged model instead of adapter + base.
        onnx: also export the task's model call to ONNX (``onnx/`` beside the weights),
            checked against torch; ``engine="onnx"``/``"auto"`` workers then run it without
            torch. Encoder tasks only (see :mod:`hfspark.flavor.onnx_export`).

    Returns:
        The :class:`ModelInfo` of the saved model.

    Raises:
        ConfigError: bad arguments, or ``path`` exists and ``overwrite`` is False.
        UnknownTaskError: the task name is not known.
        ModelValidationError: the model does not fit the task or lacks a component.
        UnsafeModelError: pickle weights without ``allow_pickle``, or remote code.

    Example:
        >>> save_model({"model": model, "tokenizer": tok}, "s3://bucket/models/ner", task="ner")
    """
    target = str(path)
    remote = is_remote(path)
    if remote and target.split(":", 1)[0].lower() in MLFLOW_SCHEMES:
        raise ConfigError(
            f"Cannot save to {target}: save to a folder, then log it with "
            "mlflow.log_artifacts(folder, ...) or mlflow.transformers."
        )
    dest = None if remote else local_path(path).absolute()  # type: ignore[union-attr]
    exists = remote_exists(target, storage_options=storage_options) if remote else _exists(dest)
    if exists and not overwrite:
        raise ConfigError(
            f"{target} already exists: pass overwrite=True to replace it, or choose another path."
        )
    if dest is not None and exists:
        _check_replaceable(dest)
    user_meta = dict(json_safe(dict(metadata or {}), "metadata"))
    if HfSparkKey.SECTION in user_meta:
        raise ConfigError(f"metadata key {HfSparkKey.SECTION!r} is reserved for hfspark.")
    example = None if input_example is None else json_safe(input_example, "input_example")

    from hfspark.flavor.peft import peft_source

    source = peft_source(model, base_model=base_model, merge_adapter=merge_adapter, task=task)
    source = source or make_source(
        model, allow_pickle=allow_pickle, torch_dtype=torch_dtype, storage_options=storage_options
    )
    requested = task or source.task_hint
    canonical = (
        canonical_task(requested) if requested else infer_task(source.config, source.components)
    )
    source.task_hint = canonical
    check_architecture(canonical, source.config, f"{source.source_name or 'model'} config")
    check_components(canonical, source.components, source.source_name or "model")
    check_prompt_template(prompt_template, canonical)
    options = check_inference_config(
        canonical, translation_defaults(canonical, task, inference_config or {})
    )
    dtype = md.mlflow_dtype(torch_dtype or source.dtype)

    if remote:
        stage_parent = cache_root() / "staging"
    else:
        stage_parent = dest.parent  # type: ignore[union-attr]
    stage_parent.mkdir(parents=True, exist_ok=True)
    name = dest.name if dest is not None else "remote"
    stage = stage_parent / f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    stage.mkdir()
    try:
        (stage / INCOMPLETE_MARKER).write_text("hfspark save in progress\n")
        _write(
            stage,
            source,
            canonical,
            mlflow_task_name(canonical, task),
            options,
            dtype,
            model_card,
            example,
            user_meta,
            prompt_template,
        )
        if onnx:
            _export_onnx(stage, canonical, options)
        (stage / INCOMPLETE_MARKER).unlink()
        if remote:
            _publish_remote(stage, target, exists, storage_options)
        else:
            _publish_local(stage, dest, overwrite)  # type: ignore[arg-type]
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return read_info(target, task=canonical, storage_options=storage_options)


def _export_onnx(stage: Path, task: str, options: Mapping[str, Any]) -> None:
    from hfspark.flavor.onnx_export import export_saved

    model_dir = stage / MODEL_DIR
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(
            "onnx=True needs the weights in the saved folder; a PEFT adapter saved beside a "
            "referenced base has none: pass merge_adapter=True to export the merged model."
        )
    export_saved(stage, model_dir, task, options)


def _exists(dest: Path | None) -> bool:
    return dest is not None and (dest.exists() or dest.is_symlink())


def _check_replaceable(dest: Path) -> None:
    """Refuse to delete a non-empty folder that is not a model (a typo must not wipe data)."""
    if dest.is_dir() and not dest.is_symlink() and any(dest.iterdir()):
        if not (
            (dest / MLMODEL_FILE).exists()
            or (dest / CONFIG_FILE).exists()
            or (dest / INCOMPLETE_MARKER).exists()
        ):
            raise ConfigError(
                f"{dest} is a folder that does not hold a model; hfspark will not "
                "delete it even with overwrite=True. Choose another path."
            )


def _card_text(model_card: Any, source: Source, task: str) -> str:
    if model_card is None:
        if source.readme:
            return source.readme
        return f"# {source.model_type}\n\nTask: {task}\n\nSaved with hfspark.\n"
    if isinstance(model_card, str):
        return model_card
    text = getattr(model_card, "content", None) or getattr(model_card, "text", None)
    return str(text if text is not None else model_card)


def _write(
    stage: Path,
    source: Source,
    task: str,
    mlflow_task: str,
    options: dict,
    dtype: str | None,
    model_card: Any,
    example: Any,
    user_meta: dict,
    prompt_template: str | None,
) -> None:
    """Write weights, components, files and MLmodel (last) into the staging folder."""
    from hfspark.flavor.peft import PeftSource, peft_version, write_peft

    peft_section: dict | None = getattr(source, "peft_info", None)
    if isinstance(source, PeftSource):  # adapter in peft/, base weights referenced
        classes, peft_flavor, peft_section, digest = write_peft(
            stage, source, task, mlflow_task, options, dtype
        )
        model_dir = source.base.model_dir  # type: ignore[attr-defined]
        weight_files = peft_section.pop("adapter_files")
    else:
        classes = source.write(stage, required_components(task))
        model_dir = stage / MODEL_DIR
    check_architecture(task, read_json(model_dir / CONFIG_FILE), f"{MODEL_DIR}/{CONFIG_FILE}")
    files = check_weights(model_dir, where=MODEL_DIR)
    if not getattr(source, "is_peft", False):
        weight_files = {f.name: {"size": f.stat().st_size, "sha256": file_sha256(f)} for f in files}
        digest = content_hash(files)
    versions = md.versions()
    if peft_section is not None:
        versions["peft"] = peft_version()
    python_version = platform.python_version()
    reqs = md.requirements(versions)
    if peft_section is not None and not peft_section.get("merged") and versions.get("peft"):
        reqs.append(f"peft=={versions['peft']}")
    (stage / MODEL_CARD_FILE).write_text(_card_text(model_card, source, task), encoding="utf-8")
    (stage / REQUIREMENTS_FILE).write_text("\n".join(reqs) + "\n")
    (stage / PYTHON_ENV_FILE).write_text(yaml.safe_dump(md.python_env(python_version)))
    (stage / CONDA_FILE).write_text(yaml.safe_dump(md.conda_env(python_version, reqs)))
    if example is not None:
        import json

        (stage / INPUT_EXAMPLE_FILE).write_text(json.dumps(example))
    instance_type = source.instance_type or _pipeline_class(mlflow_task, task)
    pyfunc = None
    if _has_pipeline(mlflow_task) and "processor" not in classes:
        model_config = (
            {"return_full_text": False}
            if (prompt_template is not None and task == "text-generation")
            else None
        )
        pyfunc = md.build_pyfunc_flavor(python_version, model_config)
    flavor = md.build_transformers_flavor(
        task=mlflow_task,
        instance_type=instance_type,
        model_type=source.model_type,
        source_model_name=source.source_name,
        components=classes,
        torch_dtype=dtype,
        transformers_version=versions.get("transformers"),
    )
    section = md.build_hfspark_section(
        task=task,
        inference_config=options,
        schema=task_schema(task, options),
        content_hash=digest,
        weight_files=weight_files,
        components=sorted(classes),
        version_info=versions,
        input_example=INPUT_EXAMPLE_FILE if example is not None else None,
    )
    if peft_section is not None:
        section["peft"] = peft_section
    if getattr(source, "is_peft", False):
        del flavor[FlavorKey.MODEL_BINARY], section[HfSparkKey.MODEL_DIR]
        flavor.update(peft_flavor)
    doc = md.build_mlmodel(
        transformers_flavor=flavor,
        pyfunc_flavor=pyfunc,
        hfspark_section=section,
        user_metadata=user_meta,
        prompt_template=prompt_template,
        size_bytes=sum(p.stat().st_size for p in stage.rglob("*") if p.is_file()),
    )
    (stage / MLMODEL_FILE).write_text(md.dump_mlmodel(doc))


def _pipelines() -> tuple[dict, dict]:
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES

    return SUPPORTED_TASKS, TASK_ALIASES


def _has_pipeline(mlflow_task: str) -> bool:
    supported, aliases = _pipelines()
    return mlflow_task in supported or mlflow_task in aliases


def _pipeline_class(mlflow_task: str, task: str) -> str:
    supported, aliases = _pipelines()
    entry = supported.get(aliases.get(mlflow_task, mlflow_task))
    if entry is not None:
        impl = entry["impl"]  # a class, or its dotted name (transformers 5 imports lazily)
        return impl.rsplit(".", 1)[-1] if isinstance(impl, str) else impl.__name__
    return PIPELINE_CLASSES.get(task, "Pipeline")


def _publish_local(stage: Path, dest: Path, overwrite: bool) -> None:
    """Rename the finished staging folder onto ``dest`` (swapping out an old model)."""
    if not _exists(dest):
        try:
            os.rename(stage, dest)
            return
        except OSError:
            if not overwrite:
                raise ConfigError(
                    f"{dest} appeared while saving; pass overwrite=True to replace it."
                ) from None
    if not overwrite:
        raise ConfigError(f"{dest} already exists: pass overwrite=True to replace it.")
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(dest, old)
    os.rename(stage, dest)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _publish_remote(
    stage: Path, uri: str, exists: bool, storage_options: Mapping[str, Any] | None
) -> None:
    """Upload the staging folder, then keep it as this machine's cache copy of ``uri``."""
    if exists:
        remove_remote(uri, storage_options=storage_options)
    upload_dir(stage, uri, storage_options=storage_options)
    final = cache_dir_for(uri.rstrip("/"))
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock", timeout=600):
        if final.exists():
            shutil.rmtree(final)
        os.rename(stage, final)
