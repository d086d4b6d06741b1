"""log_model: save a model with the hfspark flavor into an MLflow run, and register it.

The model is written by :func:`hfspark.flavor.save_model` (MLflow's transformers layout plus
hfspark's metadata, safetensors only) inside MLflow's own ``Model.log``, so what is logged is a
regular MLflow 3 logged model: it has a run, a ``models:/m-...`` id, a signature derived from the
task, the model card and pinned requirements, and it loads with ``mlflow.transformers.load_model``,
``mlflow.pyfunc.load_model`` and hfspark's ``model_udf`` (``runs:/<run>/<name>``,
``models:/<registered>/<version>``, ``models:/<registered>@<alias>``).

Example:
    >>> import mlflow
    >>> from hfspark.flavor import log_model
    >>> mlflow.set_tracking_uri("http://127.0.0.1:5000")
    >>> info = log_model("/models/my-sst2", "model", task="text-classification",
    ...                  registered_model_name="sentiment", alias="champion")
    >>> info.registered_model_version
    1
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hfspark.errors import ConfigError, MissingDependencyError

__all__ = ["log_model", "mlflow_requirements"]

_log = logging.getLogger(__name__)


def _import_mlflow() -> Any:
    try:
        import mlflow
        import mlflow.models
    except ImportError as e:
        raise MissingDependencyError(
            "log_model needs mlflow: pip install 'hfspark[mlflow]'."
        ) from e
    return mlflow


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def mlflow_requirements(
    saved: Sequence[str],
    *,
    peft: bool = False,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
) -> list[str]:
    """Requirements of a logged model: hfspark's pinned ones plus mlflow (and peft).

    ``pip_requirements`` replaces the list; ``extra_pip_requirements`` adds to it.

    Example:
        >>> mlflow_requirements(["transformers==5.24.0"])
        ['mlflow==3.17.2', 'transformers==5.24.0']
    """
    if pip_requirements is not None:
        reqs = [str(r) for r in pip_requirements]
    else:
        reqs = list(saved)
        for pkg in ("mlflow", "peft") if peft else ("mlflow",):
            if (v := _version(pkg)) and not any(r.split("=")[0] == pkg for r in reqs):
                reqs.append(f"{pkg}=={v}")
    reqs += [str(r) for r in extra_pip_requirements or ()]
    return sorted(dict.fromkeys(reqs))


def _flavor_module(
    model: Any,
    signature: Any,
    input_example: Any,
    reqs: Mapping[str, Any],
    save_options: Mapping[str, Any],
) -> types.SimpleNamespace:
    """An object with the ``save_model(path, mlflow_model, **kwargs)`` MLflow's Model.log calls."""

    def save_model(path: str, mlflow_model: Any, **_: Any) -> None:
        from mlflow.models import Model
        from mlflow.models.utils import _save_example

        from hfspark.flavor import metadata as md
        from hfspark.flavor.constants import CONDA_FILE, MLMODEL_FILE, REQUIREMENTS_FILE
        from hfspark.flavor.save import save_model as hf_save
        from hfspark.flavor.signature import task_signature

        info = hf_save(model, path, **save_options)
        root = Path(path)
        saved = Model.load(str(root / MLMODEL_FILE))
        mlflow_model.flavors = saved.flavors
        mlflow_model.metadata = {**(mlflow_model.metadata or {}), **(saved.metadata or {})}
        mlflow_model.model_size_bytes = saved.model_size_bytes
        sig = signature
        if sig == "auto":
            sig = task_signature(info.task, info.metadata.get("mlflow_task"), info.inference_config)
        mlflow_model.signature = sig or None
        if input_example is not None:
            _save_example(mlflow_model, input_example, str(root))
        lines = (root / REQUIREMENTS_FILE).read_text().split()
        final = mlflow_requirements(
            lines, peft=bool(info.metadata.get("hfspark", {}).get("peft")), **reqs
        )
        (root / REQUIREMENTS_FILE).write_text("\n".join(final) + "\n")
        py = (mlflow_model.flavors.get("python_function") or {}).get("python_version")
        if py:
            env = md.conda_env(py, [r for r in final if not r.startswith("mlflow==")])
            (root / CONDA_FILE).write_text(yaml.safe_dump(env))
        mlflow_model.save(str(root / MLMODEL_FILE))

    return types.SimpleNamespace(__name__="hfspark", save_model=save_model)


def log_model(
    model: Any,
    name: str = "model",
    *,
    registered_model_name: str | None = None,
    alias: str | None = None,
    task: str | None = None,
    inference_config: Mapping[str, Any] | None = None,
    torch_dtype: Any = None,
    model_card: Any = None,
    input_example: Any = None,
    signature: Any = "auto",
    metadata: Mapping[str, Any] | None = None,
    prompt_template: str | None = None,
    allow_pickle: bool = False,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    await_registration_for: int = 300,
    validate_serving_input: bool = True,
    **save_options: Any,
) -> Any:
    """Log a model with the hfspark flavor into the active MLflow run (one is started if none).

    Args:
        model: what :func:`hfspark.flavor.save_model` takes: a ``Pipeline``, a dict of
            components, a local pretrained folder, or a PEFT model (see ``save_options``).
        name: the model's name in the run (``runs:/<run_id>/<name>``).
        registered_model_name: register a new version under this name (created if needed).
        alias: set this alias (e.g. ``champion``) on the new version; needs
            ``registered_model_name``.
        task, inference_config, torch_dtype, model_card, metadata, prompt_template,
            allow_pickle: as for :func:`hfspark.flavor.save_model`.
        input_example: an example input, stored as MLflow does (``input_example.json``) and
            checked against the pyfunc when ``validate_serving_input``.
        signature: ``"auto"`` (derived from the task), an ``mlflow.models.ModelSignature``, or
            None for no signature.
        pip_requirements: replace the pinned requirements; ``extra_pip_requirements`` adds.
        tags: tags of the logged model (and of the registered version).
        run_id: log into this run instead of the active one.
        await_registration_for: seconds to wait for the version to be READY.
        validate_serving_input: run the input example through the pyfunc (MLflow's check).
        save_options: more :func:`save_model` options (``base_model``, ``merge_adapter``).

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``run_id``, ``registered_model_version``...).

    Raises:
        MissingDependencyError: mlflow is not installed.
        ConfigError: bad arguments (an alias without a registered name...).

    Example:
        >>> with mlflow.start_run():
        ...     info = log_model(pipe, "model", registered_model_name="sentiment", alias="champion")
        >>> model_udf("models:/sentiment@champion")
    """
    mlflow = _import_mlflow()
    if alias is not None and not registered_model_name:
        raise ConfigError(
            "alias needs registered_model_name: the alias names a registered version."
        )
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ConfigError(f"name must be a relative artifact name like 'model', got {name!r}.")
    if "overwrite" in save_options or "storage_options" in save_options:
        raise ConfigError("log_model writes into MLflow: overwrite/storage_options do not apply.")
    options = {
        "task": task,
        "inference_config": inference_config,
        "torch_dtype": torch_dtype,
        "model_card": model_card,
        "metadata": metadata,
        "prompt_template": prompt_template,
        "allow_pickle": allow_pickle,
        **save_options,
    }
    flavor = _flavor_module(
        model,
        signature,
        input_example,
        {"pip_requirements": pip_requirements, "extra_pip_requirements": extra_pip_requirements},
        options,
    )
    started = None
    if run_id is None and mlflow.active_run() is None:
        started = mlflow.start_run()
        _log.info("started MLflow run %s to log the model", started.info.run_id)
    try:
        info = mlflow.models.Model.log(
            None,
            name=name,
            flavor=flavor,
            flavor_name="transformers",
            registered_model_name=registered_model_name,
            await_registration_for=await_registration_for,
            run_id=run_id,
            tags=dict(tags) if tags else None,
            validate_serving_input=validate_serving_input,
        )
        if alias is not None:
            mlflow.MlflowClient().set_registered_model_alias(
                registered_model_name, alias, str(info.registered_model_version)
            )
    finally:
        if started is not None:
            mlflow.end_run()
    return info
