"""Ship a driver-local model to executors that cannot read it (classic sessions only).

On a real cluster a model saved on the driver's disk is invisible to executors. With
``ship="auto"`` (the default) hfspark packs the folder once, sends it with Spark's broadcast
mechanism, and each machine unpacks it once into its cache. Spark Connect clients have no
SparkContext: there the model must sit on a path every executor can read.

Example:
    >>> bc = ship_model(spark, info)          # None when executors can read info.root
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from hfspark.errors import ConfigError

__all__ = ["needs_shipping", "ship_model", "unpack_shipped", "is_connect"]


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (no SparkContext)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _active_session() -> Any:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def needs_shipping(uri: str, ship: str, spark: Any = None) -> bool:
    """Whether to broadcast the model folder: ``always``, ``never`` or ``auto``.

    ``auto`` ships a plain local path when the master is not local (a real cluster).
    """
    if ship == "never":
        return False
    spark = spark or _active_session()
    local_path = (
        "://" not in uri
        and not uri.startswith("/dbfs/")
        and not uri.startswith(("runs:", "models:"))
    )
    if ship == "always":
        if spark is not None and is_connect(spark):
            raise ConfigError(
                "A Spark Connect client cannot ship model files to executors: save the model "
                "to a path every executor can read (shared filesystem, /dbfs, s3://...)."
            )
        if not local_path:
            raise ConfigError(f"ship='always' needs a local model path, got {uri!r}")
        return True
    if spark is None or is_connect(spark) or not local_path:
        return False
    master = spark.sparkContext.master
    return not master.startswith("local")


def ship_model(spark: Any, root: Path) -> Any:
    """Pack ``root`` into a tar and broadcast it; returns the Broadcast handle."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(root), arcname=".")
    return spark.sparkContext.broadcast(buf.getvalue())


def unpack_shipped(broadcast: Any, content_hash: str) -> Path:
    """Unpack a shipped model once per machine (safe across processes); returns its folder."""
    cache = (
        Path(os.environ.get("HFSPARK_CACHE_DIR") or Path.home() / ".cache" / "hfspark") / "shipped"
    )
    target = cache / (content_hash[:32] or "model")
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / ".complete").exists():
            return target
        staging = Path(str(target) + f".tmp{os.getpid()}")
        with tarfile.open(fileobj=io.BytesIO(broadcast.value), mode="r") as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths and '..'
        (staging / ".complete").write_text(content_hash)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        staging.rename(target)
    return target
