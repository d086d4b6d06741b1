"""Weight files: find them, refuse pickles, check safetensors headers, hash the content.

Nothing here loads a tensor: a safetensors file is checked by reading its JSON header and
comparing the data offsets it declares with the file size, which catches truncated copies.

The content hash is sha256 over the weight files (names and contents). Per-file digests are
cached in memory and on disk (``<cache>/hashes``), keyed by path, size, mtime and inode, so a
model is hashed once per machine until its files change.

Example:
    >>> from hfspark.flavor.weights import check_weights, content_hash
    >>> files = check_weights(Path("/models/sentiment/model"))   # [Path(.../model.safetensors)]
    >>> content_hash(files)[:12]
    '3f2a9c0d1e4b'
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from hfspark.errors import ModelValidationError, UnsafeModelError
from hfspark.flavor.constants import PICKLE_SUFFIXES, SAFETENSORS_INDEX_FILE

__all__ = [
    "safetensors_files",
    "pickle_files",
    "check_safetensors",
    "check_weights",
    "file_sha256",
    "content_hash",
]

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_CHUNK = 4 * 1024 * 1024
_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def safetensors_files(model_dir: Path) -> list[Path]:
    """The ``*.safetensors`` files directly in ``model_dir``, sorted by name."""
    return sorted(p for p in model_dir.glob("*.safetensors") if p.is_file())


def pickle_files(model_dir: Path) -> list[Path]:
    """Weight files in ``model_dir`` that would be unpickled (``.bin``, ``.pt``, ``.ckpt``...)."""
    return sorted(
        p for p in model_dir.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES
    )


def check_safetensors(path: Path, label: str | None = None) -> int:
    """Check a safetensors file's header against its size; return its tensor count.

    Args:
        path: the ``.safetensors`` file.
        label: how to name the file in errors (default: its path).

    Raises:
        ModelValidationError: the file is empty, truncated, padded or its header is not valid.
    """
    name = label or str(path)
    fix = "Copy or save the model again."
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelValidationError(f"{name} is truncated ({size} bytes, no header). {fix}")
            n = int.from_bytes(head, "little")
            if n <= 1 or n > _MAX_HEADER or 8 + n > size:
                raise ModelValidationError(
                    f"{name} is not a valid safetensors file or is truncated: its header claims "
                    f"{n} bytes but the file has {size}. {fix}"
                )
            header = json.loads(f.read(n))
    except OSError as e:
        raise ModelValidationError(f"Cannot read {name}: {e}. {fix}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelValidationError(f"{name} has a corrupt safetensors header ({e}). {fix}") from e
    if not isinstance(header, dict):
        raise ModelValidationError(f"{name} has a corrupt safetensors header. {fix}")
    end = 0
    tensors = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelValidationError(
                f"{name}: tensor {key!r} has no valid data_offsets in its header. {fix}"
            ) from e
        if not 0 <= begin <= stop:
            raise ModelValidationError(f"{name}: tensor {key!r} has bad data_offsets. {fix}")
        end = max(end, stop)
        tensors += 1
    expected = 8 + n + end
    if size < expected:
        raise ModelValidationError(
            f"{name} is truncated: its header needs {expected} bytes, the file has {size}. {fix}"
        )
    if size > expected:
        raise ModelValidationError(
            f"{name} has {size - expected} unexpected bytes after its tensors (corrupt copy). {fix}"
        )
    return tensors


def check_weights(model_dir: Path, *, where: str | None = None) -> list[Path]:
    """Validate the weights of a transformers folder; return its safetensors files.

    Checks every safetensors file's header, that a sharded index names only shards that are
    there, and refuses folders whose only weights are pickles.

    Raises:
        UnsafeModelError: the weights are pickle files only.
        ModelValidationError: no weights, a missing shard, or a truncated file.
    """
    where = where or str(model_dir)
    files = safetensors_files(model_dir)
    if not files:
        pickles = pickle_files(model_dir) if model_dir.is_dir() else []
        if pickles:
            raise UnsafeModelError(
                f"{where}/{pickles[0].name} is a pickle weight file, which can run arbitrary "
                "code when loaded; hfspark loads safetensors only. Convert it with "
                "hfspark.flavor.save_model(<folder>, <new path>, allow_pickle=True) if you trust "
                "its source."
            )
        raise ModelValidationError(
            f"{where} has no weights (no *.safetensors file). Save the model again with "
            "hfspark.flavor.save_model or model.save_pretrained(folder)."
        )
    index = model_dir / SAFETENSORS_INDEX_FILE
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelValidationError(
                f"{where}/{SAFETENSORS_INDEX_FILE} is not a valid shard index ({e}). "
                "Save the model again."
            ) from e
        for shard in sorted(shards):
            if Path(shard).name != shard or not (model_dir / shard).is_file():
                raise ModelValidationError(
                    f"{where}/{shard} is listed in {SAFETENSORS_INDEX_FILE} but missing. "
                    "Copy the missing shard or save the model again."
                )
    for f in files:
        check_safetensors(f, f"{where}/{f.name}")
    return files


def _hash_cache_dir() -> Path | None:
    from hfspark.flavor.store import cache_root

    try:
        d = cache_root() / "hashes"
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        return None


def file_sha256(path: Path) -> str:
    """The sha256 of one file, cached by (path, size, mtime, inode) in memory and on disk."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    disk_dir = _hash_cache_dir()
    disk_key = hashlib.sha256("\0".join(map(str, key)).encode()).hexdigest()[:32]
    if disk_dir is not None:
        try:
            cached = (disk_dir / disk_key).read_text().strip()
            if len(cached) == 64:
                with _memo_lock:
                    _memo[key] = cached
                return cached
        except OSError:
            pass
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _memo_lock:
        _memo[key] = digest
    if disk_dir is not None:
        tmp = disk_dir / f".{disk_key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            tmp.write_text(digest)
            os.replace(tmp, disk_dir / disk_key)
        except OSError:
            tmp.unlink(missing_ok=True)
    return digest


def content_hash(files: Iterable[Path]) -> str:
    """sha256 over weight files: ``name\\0sha256(file)\\n`` for each file, sorted by name."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()
