"""SparkSessions for hfspark: the embedded one, or your own builder with hfspark's settings.

Example:
    >>> from hfspark.session import local_spark, with_hfspark
    >>> spark = local_spark()                       # local[*], Delta, venv Python workers
    >>> spark.range(3).write.format("delta").save("/tmp/t")
    >>> from pyspark.sql import SparkSession       # or your own builder:
    >>> spark = with_hfspark(SparkSession.builder.master("local[2]")).getOrCreate()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DAEMON_KEY",
    "DEFAULT_CONF",
    "spark_conf",
    "local_spark",
    "worker_env",
    "with_hfspark",
    "ensure_worker_python",
    "warm_workers",
    "start_zygote",
    "significant",
]

log = logging.getLogger("hfspark.session")
_DELTA_SQL = ("spark.sql.extensions", "spark.sql.catalog.spark_catalog")
_IMPORTS_HFSPARK: dict[str, bool] = {}
#: the Spark setting that picks the module of the Python daemon forking the workers.
DAEMON_KEY = "spark.python.daemon.module"
#: worker-side settings passed through from the driver's environment when set there.
_PASS_THROUGH = ("HFSPARK_WORKER_PRELOAD",)

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.python.worker.reuse": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Rows per Arrow batch handed to a pandas UDF; hfspark slices it into inference batches.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.session.timeZone": "UTC",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    # Python workers forked from a daemon that imported torch and transformers once
    # (hfspark.udfs.daemon; falls back to pyspark.daemon by itself if preloading fails).
    DAEMON_KEY: "hfspark.udfs.daemon",
}


def worker_env() -> dict[str, str]:
    """Environment for the driver and its Python workers: the current interpreter, offline hub."""
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **{k: os.environ[k] for k in _PASS_THROUGH if os.environ.get(k)},
    }


def spark_conf(
    extra: Mapping[str, Any] | None = None, *, with_delta: bool = True
) -> dict[str, str]:
    """The Spark settings of :func:`local_spark` (also written into spark-submit commands)."""
    from hfspark.jars import delta_jars

    conf = dict(DEFAULT_CONF)
    if with_delta:
        conf["spark.jars"] = ",".join(str(p) for p in delta_jars())
    for key, value in worker_env().items():
        conf[f"spark.executorEnv.{key}"] = value
    conf["spark.pyspark.python"] = sys.executable
    conf["spark.pyspark.driver.python"] = sys.executable
    conf.update({k: str(v) for k, v in (extra or {}).items()})
    return conf


def local_spark(
    master: str = "local[*]",
    app_name: str = "hfspark",
    conf: Mapping[str, Any] | None = None,
) -> SparkSession:
    """Get or create an embedded SparkSession with Delta Lake and hfspark's settings.

    Args:
        master: Spark master URL; ``local[*]`` uses every core of this machine.
        app_name: the application name shown in logs.
        conf: extra Spark settings that override the defaults.

    Example:
        >>> spark = local_spark("local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    """
    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in spark_conf(conf).items():
        builder = builder.config(key, value)
    spark = _with_zygote(builder).getOrCreate()
    warm_workers(spark)
    return spark


def _with_zygote(builder: Any) -> Any:
    """``builder`` naming the zygote :func:`start_zygote` started for it (if it did)."""
    options = {str(k): str(v) for k, v in getattr(builder, "_options", {}).items()}
    zygote = start_zygote(options)
    return builder.config(f"spark.executorEnv.{ZYGOTE_ENV}", zygote) if zygote else builder


def _jvm() -> Any:
    """The running JVM's py4j view (``None`` before PySpark launched one)."""
    try:
        from pyspark import SparkContext

        return None if SparkContext._gateway is None else SparkContext._gateway.jvm
    except ImportError:
        return None


#: the variable that names the zygote to Spark's daemons (:mod:`hfspark.udfs.zygote`)
ZYGOTE_ENV = "HFSPARK_ZYGOTE"
_ZYGOTE: dict[str, Any] = {}
#: environment variables an import may read: a zygote and a daemon must agree on them
_IMPORT_ENV = (
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "TORCH",
    "PYTORCH_",
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
    "CUDA_",
    "NVIDIA_",
    "LD_",
    "HFSPARK_WORKER_PRELOAD",
    "PYTHONHASHSEED",
    "PYTHONHOME",
    "PYTHONOPTIMIZE",
    "PYTHONDONTWRITEBYTECODE",
)


def significant(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` an import may read (a zygote's and a daemon's must match).

    Example:
        >>> significant({"OMP_NUM_THREADS": "1", "HOME": "/root"})
        {'OMP_NUM_THREADS': '1'}
    """
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_ENV)}


def _master(options: Mapping[str, str]) -> str:
    """The session's master: the builder's, else the running JVM's (spark-submit), else local."""
    if options.get("spark.master"):
        return str(options["spark.master"])
    jvm = _jvm()
    return str(jvm.System.getProperty("spark.master") or "local") if jvm is not None else "local"


def _daemon_env(options: Mapping[str, str]) -> dict[str, str]:
    """The environment Spark will give a local session's Python daemons (what imports read).

    The JVM's own environment (fixed when PySpark launched it: this driver's environment
    may have changed since) with the session's ``spark.executorEnv.*`` on top.
    """
    jvm = _jvm()
    env = (
        dict(os.environ)
        if jvm is None
        else {str(k): str(v) for k, v in jvm.System.getenv().items()}
    )
    for key, value in options.items():
        if key.startswith("spark.executorEnv."):
            env[key.removeprefix("spark.executorEnv.")] = value
    # PySpark's SparkContext and PythonRunner set these two for every Python worker
    env["PYTHONHASHSEED"] = os.environ.get("PYTHONHASHSEED", "0")
    env["OMP_NUM_THREADS"] = options.get(
        "spark.executorEnv.OMP_NUM_THREADS", options.get("spark.task.cpus", "1")
    )
    env.pop(ZYGOTE_ENV, None)
    return env


def start_zygote(options: Mapping[str, str]) -> str | None:
    """Start the preloading zygote for a local session about to start (or reuse this driver's).

    It imports torch and transformers while the JVM starts, so the session's Python daemon
    forks from an interpreter that already has them (:mod:`hfspark.udfs.zygote`). Only for a
    local master using hfspark's daemon, before a SparkContext exists; ``HFSPARK_ZYGOTE=0``
    turns it off. Returns the value for ``spark.executorEnv.HFSPARK_ZYGOTE``, or None.

    Example:
        >>> start_zygote({"spark.master": "local[2]", DAEMON_KEY: "hfspark.udfs.daemon"})
        '/tmp/hfspark-zygote-k2j1/sock#5f0c...'
    """
    if os.environ.get(ZYGOTE_ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    if "spark.remote" in options or os.environ.get("SPARK_REMOTE"):
        return None  # Spark Connect: the server's executors are not this machine's
    if options.get(DAEMON_KEY) != DEFAULT_CONF[DAEMON_KEY] or options.get(
        f"spark.executorEnv.{ZYGOTE_ENV}"
    ):
        return None
    try:
        from pyspark import SparkContext

        if SparkContext._active_spark_context is not None:
            return None  # getOrCreate would return the running session: too late
    except ImportError:
        return None
    try:
        master, env = _master(options), _daemon_env(options)
    except Exception as e:  # noqa: BLE001 - a JVM that stopped answering: no zygote, no harm
        log.debug("hfspark: no zygote: %s", e)
        return None
    if not master.startswith("local"):
        return None
    key = json.dumps([sys.executable, significant(env)], sort_keys=True)
    old = _ZYGOTE.get("proc")
    if old is not None and old.poll() is None and _ZYGOTE.get("key") == key:
        return str(_ZYGOTE["spec"])
    _stop_zygote()
    folder = tempfile.mkdtemp(prefix="hfspark-zygote-")
    path, token = os.path.join(folder, "sock"), os.urandom(16).hex()
    # bound here, so a daemon that comes before the zygote is up waits in the backlog
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    read_end, write_end = os.pipe()  # the zygote exits when this driver (the write end) is gone
    fds = (listener.fileno(), read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hfspark.udfs.zygote", path, token, *map(str, fds)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=fds,
            start_new_session=True,
        )
    except OSError as e:
        os.close(write_end)
        log.debug("hfspark: no zygote: %s", e)
        return None
    finally:
        os.close(read_end)
        listener.close()
    _ZYGOTE.update(proc=proc, key=key, spec=f"{path}#{token}", write_end=write_end)
    return str(_ZYGOTE["spec"])


def _stop_zygote() -> None:
    """Let this driver's zygote go (it exits when its pipe closes; its daemons live on)."""
    if "write_end" in _ZYGOTE:
        with contextlib.suppress(OSError):
            os.close(_ZYGOTE["write_end"])
    _ZYGOTE.clear()


#: SparkContext id -> the thread warming its workers (tests join it)
_WARMED: dict[int, threading.Thread] = {}


def warm_workers(spark: Any) -> threading.Thread | None:
    """Start the executors' Python daemons now, in the background, so their imports overlap
    the driver's own work (reading inputs, planning) instead of the first query's.

    Runs one tiny job (a no-op Arrow UDF, one task per core) in a daemon thread, once per
    SparkContext and only when the workers fork from hfspark's preloading daemon
    (:mod:`hfspark.udfs.daemon`); ``HFSPARK_WARM_WORKERS=0`` turns it off. A first query that comes sooner waits for the same
    daemon start (Spark starts one daemon per executor), so nothing is paid twice.

    Example:
        >>> thread = warm_workers(spark)     # None: not hfspark's daemon, or already warmed
    """
    if os.environ.get("HFSPARK_WARM_WORKERS", "1").strip().lower() in ("0", "false", "no"):
        return None
    try:
        sc = spark.sparkContext
        if sc.getConf().get(DAEMON_KEY, "") != DEFAULT_CONF[DAEMON_KEY] or id(sc) in _WARMED:
            return None
    except Exception:  # noqa: BLE001 - Spark Connect: no SparkContext here
        return None
    slots = max(1, int(sc.defaultParallelism))

    def run() -> None:
        try:
            import pyarrow as pa
            from pyspark.sql.functions import ArrowUDFType, arrow_udf

            # an Arrow UDF of the model UDFs' kind: Spark keys its Python daemons by the
            # runner's environment, and an RDD job would start a daemon of its own
            def nothing(batches: Any) -> Any:
                for batch in batches:
                    yield pa.nulls(len(batch), pa.int64())

            noop = arrow_udf(nothing, "bigint", ArrowUDFType.SCALAR_ITER)  # type: ignore[call-overload]
            sc.setJobGroup("hfspark-warm-workers", "hfspark: start the Python workers", True)
            spark.range(0, slots, 1, slots).select(noop("id")).write.format("noop").mode(
                "overwrite"
            ).save()
        except Exception as e:  # noqa: BLE001 - a stopped session, a busy cluster: no harm
            log.debug("hfspark: warming the Python workers stopped: %s", e)

    thread = threading.Thread(target=run, name="hfspark-warm-workers", daemon=True)
    _WARMED[id(sc)] = thread
    thread.start()
    return thread


def with_hfspark(builder: Any, *, delta: bool = True) -> Any:
    """Add Delta Lake and hfspark's worker settings to your own ``SparkSession.Builder``.

    Adds the Delta jars (fetched once from Maven Central and cached), Delta's SQL extension
    and catalog, and points the Python workers at this interpreter (``PYSPARK_PYTHON``,
    unless you set it). On a local master whose workers can import hfspark, the workers are
    forked from hfspark's preloading daemon (:mod:`hfspark.udfs.daemon`), whose imports start
    now, beside the JVM (:func:`start_zygote`). Settings you put on the builder yourself win.

    Example:
        >>> from pyspark.sql import SparkSession
        >>> spark = with_hfspark(SparkSession.builder.master("local[2]").appName("me")).getOrCreate()
    """
    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    wanted = {"spark.jars", *_DELTA_SQL} if delta else set()
    options = getattr(builder, "_options", {})
    if _local_workers_import_hfspark(options):
        wanted.add(DAEMON_KEY)
    conf = {
        k: v
        for k, v in spark_conf(with_delta=delta).items()
        if k in wanted or k.startswith("spark.executorEnv.")
    }
    for key, value in conf.items():
        if key == "spark.jars" and options.get(key):  # the user's jars and Delta's
            builder = builder.config(key, f"{options[key]},{value}")
        elif key not in options:
            builder = builder.config(key, value)
    return _with_zygote(builder)


def _local_workers_import_hfspark(options: Mapping[str, Any]) -> bool:
    """A local master whose Python workers can import hfspark (its daemon is safe to use).

    On a cluster the workers' Python is the deployment's: set ``spark.python.daemon.module``
    there yourself (README, "Bring your own Spark").
    """
    master = str(options.get("spark.master", "local"))
    if not master.startswith("local"):
        return False
    exe = str(
        options.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON") or sys.executable
    )
    return _same_python(exe) or _imports_hfspark(exe)


def _same_python(exe: str) -> bool:
    found = shutil.which(exe)
    return found is not None and os.path.realpath(found) == os.path.realpath(sys.executable)


def _imports_hfspark(exe: str) -> bool:
    if exe not in _IMPORTS_HFSPARK:
        try:
            done = subprocess.run(
                [exe, "-c", "import hfspark.errors, pandas, pyarrow"],
                capture_output=True,
                timeout=120,
                check=False,
            )
            _IMPORTS_HFSPARK[exe] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _IMPORTS_HFSPARK[exe] = False
    return _IMPORTS_HFSPARK[exe]


def ensure_worker_python(spark: Any) -> None:
    """Make a local session's Python workers run a Python that can import hfspark.

    PySpark starts its workers with ``PYSPARK_PYTHON`` (default ``python3`` from ``PATH``),
    not with the driver's interpreter, so a session built from a virtualenv's Python that
    is not activated would fail every task with ``No module named 'hfspark'``. On a local
    master the workers run on this machine: when theirs cannot import hfspark, they are
    switched to this interpreter (with a warning). Cluster and Spark Connect sessions are
    left as they are (their workers' Python is set by the deployment).

    Example:
        >>> ensure_worker_python(spark)      # called by model_udf and register
    """
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return  # Spark Connect: the server's deployment sets its workers' Python
    try:
        sc = spark.sparkContext
        master = str(sc.master)
    except Exception:  # noqa: BLE001 - no SparkContext
        return
    if not master.startswith("local"):
        return
    exe = str(getattr(sc, "pythonExec", "") or "python3")
    if _same_python(exe) or _imports_hfspark(exe):
        return
    log.warning(
        "hfspark: this local Spark session would run its Python workers with %r, which cannot "
        "import hfspark; using %s instead. Set PYSPARK_PYTHON (or build the session with "
        "hfspark.with_hfspark(builder)) to choose.",
        exe,
        sys.executable,
    )
    sc.pythonExec = sys.executable
