"""Model stores: local paths, ``file://``, ``/dbfs``, fsspec URLs and MLflow URIs.

A remote model is copied once per machine into a local cache
(``~/.cache/hfspark/models/<hash of the URI>``, or ``$HFSPARK_CACHE_DIR``). Several processes
may ask at once: one downloads under a file lock into a temporary folder and renames it into
place; the others wait and reuse it. Transient store errors are retried with backoff a bounded
number of times, then raised as :class:`~hfspark.errors.ModelStoreError` naming the URI.

Example:
    >>> from hfspark.flavor import resolve_local
    >>> resolve_local("s3://bucket/models/sentiment")
    PosixPath('/home/me/.cache/hfspark/models/5d1c0f2a9e7b40c1a2f3')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from hfspark.errors import (
    ConfigError,
    HfSparkError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelStoreError,
)
from hfspark.flavor.constants import CACHE_ENV, MLMODEL_FILE

__all__ = [
    "MLFLOW_SCHEMES",
    "cache_root",
    "cache_dir_for",
    "is_remote",
    "local_path",
    "pin_uri",
    "resolve_local",
    "remote_exists",
    "remove_remote",
    "upload_dir",
    "with_retries",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

MLFLOW_SCHEMES = ("models", "runs", "mlflow-artifacts")
RETRIES_ENV = "HFSPARK_STORE_RETRIES"
BACKOFF_ENV = "HFSPARK_STORE_BACKOFF"
LOCK_TIMEOUT_ENV = "HFSPARK_CACHE_LOCK_TIMEOUT"
#: errors a retry cannot fix.
_PERMANENT = (
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    ValueError,
    TypeError,
    KeyError,
    ImportError,
    HfSparkError,
)


def cache_root() -> Path:
    """The cache folder of hfspark (``$HFSPARK_CACHE_DIR`` or ``~/.cache/hfspark``)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hfspark"


def _scheme(uri: str) -> str:
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    head = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if head in (*MLFLOW_SCHEMES, "dbfs"):
        return head
    return ""


def local_path(uri: str | os.PathLike[str]) -> Path | None:
    """The local path of a URI (plain path, ``file://``, ``dbfs:/`` -> ``/dbfs``), else None."""
    if isinstance(uri, os.PathLike):
        return Path(uri).expanduser()
    text = str(uri)
    scheme = _scheme(text)
    if scheme == "":
        return Path(text).expanduser()
    if scheme == "file":
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"{text}: file:// URIs must name a local path (file:///abs/path).")
        return Path(unquote(parsed.path))
    if scheme == "dbfs" and "://" not in text:
        return Path("/dbfs") / text.split(":", 1)[1].lstrip("/")
    return None


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for URIs that are copied into the local cache (fsspec URLs, MLflow URIs)."""
    return local_path(uri) is None


def cache_dir_for(uri: str) -> Path:
    """The cache folder of a remote model: ``<cache>/models/<sha256(uri)[:24]>``."""
    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:24]
    return cache_root() / "models" / key


def with_retries(fn: Callable[[], T], uri: str, what: str, *, attempts: int | None = None) -> T:
    """Run ``fn``, retrying transient errors with exponential backoff (bounded).

    Raises:
        ModelStoreError: naming the URI, after the last attempt or on a permanent error.
    """
    attempts = max(1, attempts or int(os.environ.get(RETRIES_ENV, "4")))
    base = float(os.environ.get(BACKOFF_ENV, "0.5"))
    for i in range(attempts):
        try:
            return fn()
        except HfSparkError:
            raise
        except Exception as e:
            if _not_found(e):
                raise ModelNotFoundError(
                    f"Cannot {what} {uri}: not found ({e}). Check the URI."
                ) from e
            if isinstance(e, _PERMANENT):
                raise ModelStoreError(f"Cannot {what} {uri}: {type(e).__name__}: {e}") from e
            if i + 1 >= attempts:  # network, throttling, timeouts: retried until here
                raise ModelStoreError(
                    f"Cannot {what} {uri} after {attempts} attempts: {type(e).__name__}: {e}. "
                    "Check that the store is reachable and the credentials are valid."
                ) from e
            delay = min(base * 2**i, 10.0) * random.uniform(0.75, 1.25)
            _log.warning(
                "%s %s failed (%s); retry %d/%d in %.1fs", what, uri, e, i + 1, attempts - 1, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _not_found(e: BaseException) -> bool:
    """A missing file, or MLflow's RESOURCE_DOES_NOT_EXIST (a missing run or model)."""
    return isinstance(e, FileNotFoundError) or getattr(e, "error_code", None) == (
        "RESOURCE_DOES_NOT_EXIST"
    )


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - fsspec is a dependency
        raise MissingDependencyError(
            "Reading remote models needs fsspec: pip install fsspec"
        ) from e
    try:
        return fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except ImportError as e:
        raise MissingDependencyError(
            f"Reading {uri} needs an fsspec backend: {e} (e.g. pip install s3fs, gcsfs, adlfs)."
        ) from e


def remote_exists(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """True when a remote URI exists (with retries)."""
    fs, path = _filesystem(uri, storage_options)
    return bool(with_retries(lambda: fs.exists(path), uri, "check"))


def remove_remote(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete a remote folder (with retries)."""
    fs, path = _filesystem(uri, storage_options)
    with_retries(lambda: fs.rm(path, recursive=True), uri, "delete")


def _download_fsspec(uri: str, dest: Path, storage_options: Mapping[str, Any] | None) -> None:
    fs, root = _filesystem(uri, storage_options)
    root = root.rstrip("/")

    def listing() -> dict[str, int]:
        if not fs.isdir(root):
            if fs.exists(root):
                raise NotADirectoryError(f"{uri} is a file, not a model folder")
            raise FileNotFoundError(f"no model folder at {uri}")
        return {p: int(info.get("size") or 0) for p, info in fs.find(root, detail=True).items()}

    files = with_retries(listing, uri, "list")
    if not files:
        raise ModelStoreError(f"Cannot read {uri}: the folder is empty.")
    plan: dict[str, tuple[Path, int]] = {}
    for remote, size in files.items():
        rel = remote[len(root) :].lstrip("/")
        target = (dest / rel).resolve()
        if not rel or not target.is_relative_to(dest.resolve()):
            raise ModelStoreError(f"Cannot read {uri}: unsafe file name {remote!r} in the store.")
        plan[remote] = (target, size)

    def fetch() -> None:
        todo = [r for r, (t, s) in plan.items() if not (t.is_file() and t.stat().st_size == s)]
        for r in todo:
            plan[r][0].parent.mkdir(parents=True, exist_ok=True)
        if todo:
            fs.get(todo, [str(plan[r][0]) for r in todo])

    with_retries(fetch, uri, "download")


def _import_mlflow(uri: str) -> Any:
    try:
        import mlflow.artifacts
    except ImportError as e:
        raise MissingDependencyError(
            f"{uri} is an MLflow URI: install mlflow (pip install 'hfspark[mlflow]')."
        ) from e
    return mlflow


#: ``models:/NAME@ALIAS`` or ``models:/NAME/SUFFIX`` (a version, ``latest`` or a stage).
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<suffix>[^/]+))$")


def pin_uri(uri: str) -> str:
    """``models:/name@alias`` (or ``/latest``, ``/Stage``) -> ``models:/name/<version now>``.

    Aliases, ``latest`` and stages move; a version does not. Resolving them first (with
    ``MlflowClient`` against the current tracking/registry URI) makes the per-machine cache
    key the version, and a driver that pins a URI before shipping it makes every executor
    load the same version. Any other URI is returned as it is (mlflow is not imported).

    Raises:
        MissingDependencyError: mlflow is not installed.
        ModelStoreError: the model or alias does not exist, or the registry is unreachable.

    Example:
        >>> pin_uri("models:/sentiment@champion")
        'models:/sentiment/3'
    """
    text = str(uri).rstrip("/")
    m = _MODELS_URI.match(text)
    if m is None or (m["suffix"] or "").isdigit():
        return str(uri)
    mlflow = _import_mlflow(text)
    name, alias, suffix = m["name"], m["alias"], m["suffix"]

    def version() -> str:
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient()
        try:
            if alias:
                return str(client.get_model_version_by_alias(name, alias).version)
            import warnings

            with warnings.catch_warnings():  # stages are deprecated in MLflow, still resolved
                warnings.simplefilter("ignore")
                stages = None if suffix.lower() == "latest" else [suffix]
                found = client.get_latest_versions(name, stages=stages)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise FileNotFoundError(e.message) from e
            raise
        if not found:
            raise FileNotFoundError(f"registered model {name!r} has no version for {suffix!r}")
        return str(max(int(v.version) for v in found))

    return f"models:/{name}/{with_retries(version, text, 'resolve')}"


def _download_mlflow(uri: str, dest: Path) -> None:
    mlflow = _import_mlflow(uri)
    staging = dest.parent / f"{dest.name}.mlflow"
    staging.mkdir(parents=True, exist_ok=True)
    got = with_retries(
        lambda: mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)),
        uri,
        "download",
    )
    os.rename(got, dest)
    shutil.rmtree(staging, ignore_errors=True)


def resolve_local(
    uri: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> Path:
    """The local folder of a model URI; a remote model is downloaded once into the cache.

    Local paths, ``file://`` and ``/dbfs/...`` (or ``dbfs:/...``) are returned as they are
    (absolute). Any fsspec URL (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``...) and MLflow
    URIs (``runs:/``, ``models:/``; needs mlflow) are copied into the cache under a file lock,
    through a temporary folder renamed into place, so concurrent callers never see a partial
    copy. Once cached, no store is contacted again (delete the cache folder to refresh), but
    ``models:/name@alias``, ``/latest`` and stages are first resolved to the version they name
    now (:func:`pin_uri`), so a moved alias is fetched into a new cache folder.

    Args:
        uri: where the model is.
        storage_options: fsspec options (credentials, ``endpoint_url``...).

    Raises:
        ModelStoreError: the store cannot be read after retries, or the path does not exist.

    Example:
        >>> resolve_local("file:///models/sentiment")
        PosixPath('/models/sentiment')
    """
    local = local_path(uri)
    if local is not None:
        local = local.absolute()
        if not local.exists():
            raise ModelNotFoundError(f"No model at {uri}: {local} does not exist.")
        return local
    requested = str(uri).rstrip("/")
    text = pin_uri(requested)  # an alias that moved gets a new cache folder
    final = cache_dir_for(text)
    if final.is_dir():
        return final
    from filelock import FileLock, Timeout

    final.parent.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "3600"))
    try:
        with FileLock(str(final) + ".lock", timeout=timeout):
            if final.is_dir():  # another process finished while we waited
                return final
            for stale in final.parent.glob(f".tmp-{final.name}-*"):  # killed downloads
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                if _scheme(text) in MLFLOW_SCHEMES:
                    _download_mlflow(text, tmp)
                else:
                    tmp.mkdir(parents=True)
                    _download_fsspec(text, tmp, storage_options)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(tmp.parent / f"{tmp.name}.mlflow", ignore_errors=True)
                raise
            (final.parent / f"{final.name}.json").write_text(
                json.dumps({"uri": text, "requested": requested, "time": time.time()})
            )
    except Timeout as e:
        raise ModelStoreError(
            f"Timed out after {timeout:.0f}s waiting for another process to download {uri} "
            f"(lock {final}.lock). Raise {LOCK_TIMEOUT_ENV} or delete a stale lock."
        ) from e
    return final


def upload_dir(local: Path, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Upload a saved model folder to a remote URI, ``MLmodel`` last (with retries).

    A reader never sees a remote folder with ``MLmodel`` before all the files it names are
    there; an interrupted upload leaves a folder without ``MLmodel``, which hfspark refuses.
    """
    fs, root = _filesystem(uri, storage_options)
    root = root.rstrip("/")
    files = sorted(p for p in local.rglob("*") if p.is_file())
    first = [p for p in files if p.relative_to(local).as_posix() != MLMODEL_FILE]
    last = [p for p in files if p.relative_to(local).as_posix() == MLMODEL_FILE]

    def put(batch: list[Path]) -> Callable[[], None]:
        def run() -> None:
            if batch:
                fs.put(
                    [str(p) for p in batch],
                    [f"{root}/{p.relative_to(local).as_posix()}" for p in batch],
                )

        return run

    with_retries(put(first), uri, "upload to")
    with_retries(put(last), uri, "upload to")
