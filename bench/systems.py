"""The Spark rows of the table: hfspark, MLflow's ``spark_udf`` and a naive pandas UDF.

Every system runs on the same ``local[N]`` session settings, the same parquet input
(``id``, ``text``) repartitioned round-robin to P partitions, and writes its output with the
``noop`` sink (every row is computed and serialized, nothing is stored, so the sink costs
nothing and all systems pay the same). Each (system, partitions) pair gets a fresh
SparkSession, so its Python workers start cold and their memory is its own:

1. a small *cold* job (``2 × P`` rows, P partitions): worker start, imports, model loads;
2. ``reps`` timed jobs on all rows (the best one is reported).

Model loads: hfspark appends a line per load to ``$HFSPARK_STATS_DIR/loads.log`` (set with
``spark.executorEnv.HFSPARK_STATS_DIR``); the naive UDF appends one too (it is our code);
MLflow's loads are its ``mlflow.pyfunc.load_model`` calls in the workers, counted with inotify
as opens of the saved ``MLmodel`` file divided by the opens of one load (calibrated on the
driver: 3 in MLflow 3.17).

Example:
    >>> res = run_spark_system(SYSTEMS["hfspark"], model, data, partitions=2, reps=1, cfg=cfg)
    >>> res.rows_per_s, res.loads_cold, res.peak_rss_mib
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # module level: pandas_udf resolves the type hints here

from bench.models import MAX_LENGTH, MLFLOW_CONFIG, BenchModel
from bench.monitor import FileOpens, WorkerMemory

__all__ = [
    "SPEECH_ENGINE",
    "ENGINE",
    "error_line",
    "SYSTEMS",
    "JobResult",
    "SparkSystem",
    "run_spark_system",
    "spark_settings",
]

#: hfspark engine settings for CPU (see bench/README.md "Engine settings" and results/tune.md):
#: length-sorted batches of up to 8 rows, at most 2,048 padded tokens per forward pass.
ENGINE: dict[str, Any] = {"batch_size": 8, "max_tokens_per_batch": 2048}
#: hfspark settings for speech: a row's cost is its audio length, so no token budget;
#: 8 clips per generate() call (generation is sequential in tokens, batching amortises it).
SPEECH_ENGINE: dict[str, Any] = {"batch_size": 8}


@dataclass(frozen=True)
class SparkSystem:
    """One way of running the model in a Spark job."""

    name: str
    kind: str  # "hfspark" | "mlflow" | "naive"
    batch_size: int | None = None  # MLflow model_config batch_size (None: its default)
    torch_dtype: str = "auto"  # hfspark's torch_dtype option (opt-in bf16 row)
    engine: str = "torch"  # hfspark's engine option (the ONNX Runtime row)


SYSTEMS: dict[str, SparkSystem] = {
    s.name: s
    for s in (
        SparkSystem("hfspark", "hfspark"),
        SparkSystem("hfspark bf16", "hfspark", torch_dtype="bfloat16"),
        SparkSystem("hfspark onnx", "hfspark", engine="onnx"),
        SparkSystem("mlflow default", "mlflow"),
        SparkSystem("mlflow bs8", "mlflow", 8),
        SparkSystem("mlflow bs32", "mlflow", 32),
        SparkSystem("naive pandas_udf", "naive"),
    )
}


@dataclass
class JobResult:
    """One (system, task, partitions) measurement."""

    system: str
    task: str
    partitions: int
    rows: int
    tokens: int
    seconds: float
    cold_seconds: float
    loads_cold: int | None
    loads_timed: int | None
    loads_total: int | None
    load_pids: int | None  # distinct processes that loaded (None: not known)
    workers: int
    peak_rss_mib: float
    cpu_seconds: float | None = None  # worker CPU (user+sys) of the best timed job
    all_seconds: list[float] = field(default_factory=list)
    outputs: dict[int, Any] | None = None  # id -> output, when the job collected them
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def spark_settings(cores: int, stats_dir: Path) -> dict[str, str]:
    """The Spark settings every system shares (on top of hfspark.session.DEFAULT_CONF)."""
    return {
        "spark.task.cpus": "1",
        "spark.sql.shuffle.partitions": str(cores),
        "spark.python.worker.reuse": "true",
        "spark.executorEnv.HFSPARK_STATS_DIR": str(stats_dir),
        "spark.driver.memory": "2g",
    }


#: the worker preload of an ONNX Runtime deployment (no torch: hfspark.udfs.daemon)
ONNX_PRELOAD = "onnx,hfspark"


def _session(cores: int, stats_dir: Path, engine: str = "torch") -> Any:
    from hfspark.session import local_spark

    os.environ["HFSPARK_STATS_DIR"] = str(stats_dir)  # local mode: workers inherit it too
    conf = spark_settings(cores, stats_dir)
    if engine == "onnx":
        conf["spark.executorEnv.HFSPARK_WORKER_PRELOAD"] = ONNX_PRELOAD
    return local_spark(f"local[{cores}]", app_name="hfspark-bench", conf=conf)


def error_line(exc: BaseException) -> str:
    """The most telling line of an error from a Spark job: the worker's last exception line."""
    import re

    text = str(exc)
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if re.match(r"^[\w.]*(Error|Exception): ", ln.strip())
        and "PythonException" not in ln
        and "exceptions.base.PySpark" not in ln
    ]
    line = lines[-1] if lines else (text.splitlines() or [""])[0]
    return f"{type(exc).__name__}: {line[:300]}"


# ------------------------------------------------------------------------------ columns
class LogLoads:
    """Loads counted from the lines of ``loads.log`` in the stats folder."""

    def __init__(self, stats_dir: Path) -> None:
        self.log = stats_dir / "loads.log"

    def __enter__(self) -> LogLoads:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def value(self) -> int:
        return len(self.lines())

    def pids(self) -> int | None:
        """How many distinct processes loaded a model."""
        return len({line.split("\t")[0] for line in self.lines()})


class MlflowLoads:
    """MLflow model loads in the workers: opens of ``MLmodel`` over the opens of one load."""

    def __init__(self, mlmodel: Path, per_load: int) -> None:
        self.opens = FileOpens(mlmodel)
        self.per_load = max(1, per_load)

    def __enter__(self) -> MlflowLoads:
        self.opens.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.opens.__exit__(None, None, None)
        shutil.rmtree(self.opens.path.parent, ignore_errors=True)  # spark_udf's model copy

    def pids(self) -> int | None:
        return None

    def value(self) -> int | None:
        count = self.opens.poll()
        return None if count is None else round(count / self.per_load)


def mlflow_opens_per_load(path: Path) -> int:
    """How many times one ``mlflow.pyfunc.load_model`` opens the ``MLmodel`` file."""
    import mlflow.pyfunc

    with FileOpens(path / "MLmodel") as opens:
        mlflow.pyfunc.load_model(str(path))
        return opens.poll() or 1


def _hfspark_column(
    model: BenchModel, task: str, stats_dir: Path, torch_dtype: str = "auto", engine: str = "torch"
) -> tuple[Any, Any]:
    from hfspark.udfs import model_udf

    if task == "automatic-speech-recognition":
        udf = model_udf(str(model.hfspark), task=task, torch_dtype=torch_dtype, **SPEECH_ENGINE)
    else:
        udf = model_udf(
            str(model.hfspark),
            task=task,
            max_length=MAX_LENGTH,
            torch_dtype=torch_dtype,
            engine=engine,
            **ENGINE,
        )
    return udf(input_col(task)), LogLoads(stats_dir)


def input_col(task: str) -> str:
    """The input column of the benchmark data for a task."""
    return "audio" if task == "automatic-speech-recognition" else "text"


def _mlflow_column(
    spark: Any, model: BenchModel, task: str, batch_size: int | None, per_load: int
) -> tuple[Any, Any]:
    import mlflow.pyfunc

    config: dict[str, Any] = {"batch_size": batch_size or MLFLOW_CONFIG["batch_size"]}
    if task != "automatic-speech-recognition":  # the speech model is saved with batch_size only
        config.update({k: v for k, v in MLFLOW_CONFIG.items() if k != "batch_size"})
    result_type = {
        "text-classification": "label string, score double",
        "feature-extraction": "array<array<double>>",
        "automatic-speech-recognition": "string",
    }[task]
    udf = mlflow.pyfunc.spark_udf(
        spark, str(model.mlflow), result_type=result_type, env_manager="local", model_config=config
    )
    return udf(input_col(task)), MlflowLoads(_mlflow_copy(), per_load)


def _mlflow_copy() -> Path:
    """The ``MLmodel`` of the copy spark_udf just made in MLflow's temp folder (workers load it)."""
    from mlflow.utils.file_utils import get_or_create_tmp_dir

    found = sorted(Path(get_or_create_tmp_dir()).rglob("MLmodel"), key=lambda p: p.stat().st_ctime)
    if not found:
        raise FileNotFoundError("spark_udf made no model copy under MLflow's temp folder")
    return found[-1]


def _count_load() -> None:
    stats = os.environ.get("HFSPARK_STATS_DIR")
    if stats:
        with open(Path(stats) / "loads.log", "a") as f:
            f.write(f"{os.getpid()}\tnaive\n")


def _naive_column(model: BenchModel, task: str, stats_dir: Path) -> tuple[Any, Any]:
    """The tutorial pattern: build ``transformers.pipeline`` inside a scalar pandas UDF."""
    from pyspark.sql.functions import pandas_udf

    folder = str(model.folder)
    if task == "text-classification":

        @pandas_udf("label string, score double")  # type: ignore[call-overload]
        def classify(texts: pd.Series) -> pd.DataFrame:
            from transformers import pipeline

            pipe = pipeline("text-classification", model=folder)
            _count_load()
            return pd.DataFrame(pipe(texts.tolist(), truncation=True, max_length=MAX_LENGTH))

        return classify("text"), LogLoads(stats_dir)

    if task == "automatic-speech-recognition":

        @pandas_udf("string")  # type: ignore[call-overload]
        def transcribe(audio: pd.Series) -> pd.Series:
            import io

            import soundfile
            from transformers import pipeline

            pipe = pipeline("automatic-speech-recognition", model=folder)
            _count_load()
            clips = []
            for data in audio:
                array, rate = soundfile.read(io.BytesIO(data), dtype="float32")
                clips.append({"raw": array, "sampling_rate": rate})
            return pd.Series([o["text"] for o in pipe(clips)])

        return transcribe("audio"), LogLoads(stats_dir)

    @pandas_udf("array<float>")  # type: ignore[call-overload]
    def embed(texts: pd.Series) -> pd.Series:
        import numpy as np
        from transformers import pipeline

        pipe = pipeline("feature-extraction", model=folder)
        _count_load()
        out = pipe(texts.tolist(), truncation=True)  # the tokenizer's limit is MAX_LENGTH
        return pd.Series([np.asarray(o[0]).mean(axis=0).tolist() for o in out])

    return embed("text"), LogLoads(stats_dir)


def _column(
    system: SparkSystem, spark: Any, model: BenchModel, task: str, stats_dir: Path
) -> tuple[Any, Any]:
    if system.kind == "hfspark":
        return _hfspark_column(model, task, stats_dir, system.torch_dtype, system.engine)
    if system.kind == "mlflow":
        return _mlflow_column(
            spark, model, task, system.batch_size, mlflow_opens_per_load(model.mlflow)
        )
    return _naive_column(model, task, stats_dir)


# ---------------------------------------------------------------------------------- run
def _job(df: Any, column: Any, keep: bool = False) -> tuple[float, list[Any] | None]:
    """Run one job; ``keep`` collects (id, output) rows instead of writing to ``noop``."""
    out = df.select("id", column.alias("out"))
    start = time.perf_counter()
    if keep:
        rows = out.collect()
        return time.perf_counter() - start, rows
    out.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start, None


def run_spark_system(
    system: SparkSystem,
    model: BenchModel,
    data: Path,
    *,
    task: str,
    rows: int,
    tokens: int,
    partitions: int,
    reps: int,
    cores: int,
    keep: bool = False,
) -> JobResult:
    """Measure one system at one partition count on a fresh local session."""
    stats_dir = Path(tempfile.mkdtemp(prefix="hfspark-bench-stats-"))
    spark = _session(cores, stats_dir, system.engine)
    try:
        source = spark.read.parquet(str(data))
        full = source.repartition(partitions)
        cold = source.limit(2 * partitions).repartition(partitions)
        column, counter = _column(system, spark, model, task, stats_dir)
        with WorkerMemory() as memory, counter:
            base = counter.value()
            cold_s, _ = _job(cold, column)
            after_cold = counter.value()
            times, timed_loads, cpus = [], [], []
            for _ in range(max(1, reps)):
                before = counter.value()
                snap = memory.cpu_snapshot()
                seconds, kept = _job(full, column, keep)
                cpus.append(memory.cpu_since(snap))
                times.append(seconds)
                after = counter.value()
                timed_loads.append(None if after is None or before is None else after - before)
            end = counter.value()
        loads_cold = None if after_cold is None or base is None else after_cold - base
        loads_total = None if end is None or base is None else end - base
        known = [n for n in timed_loads if n is not None]
        return JobResult(
            system=system.name,
            task=task,
            partitions=partitions,
            rows=rows,
            tokens=tokens,
            seconds=min(times),
            cold_seconds=cold_s,
            loads_cold=loads_cold,
            loads_timed=max(known) if known else None,
            loads_total=loads_total,
            load_pids=counter.pids(),
            workers=len(memory.pids),
            peak_rss_mib=memory.peak_mib(),
            cpu_seconds=cpus[times.index(min(times))],
            all_seconds=times,
            outputs={r["id"]: r["out"] for r in kept} if kept else None,
        )
    finally:
        spark.stop()
        shutil.rmtree(stats_dir, ignore_errors=True)


def run_scaling(
    model: BenchModel,
    sets: list[tuple[int, Path]],
    *,
    task: str,
    partitions: int,
    cores: int,
    tokens_per_row: float,
) -> list[dict[str, float]]:
    """hfspark rows/s for growing inputs (one warm session; a cold job first)."""
    stats_dir = Path(tempfile.mkdtemp(prefix="hfspark-bench-stats-"))
    spark = _session(cores, stats_dir)
    try:
        column, _ = _hfspark_column(model, task, stats_dir)
        first = spark.read.parquet(str(sets[0][1]))
        _job(first.limit(2 * partitions).repartition(partitions), column)
        out = []
        for rows, path in sets:
            seconds, _ = _job(spark.read.parquet(str(path)).repartition(partitions), column)
            out.append(
                {
                    "rows": rows,
                    "seconds": seconds,
                    "rows_per_s": rows / seconds,
                    "tokens_per_s": rows * tokens_per_row / seconds,
                }
            )
        return out
    finally:
        spark.stop()
        shutil.rmtree(stats_dir, ignore_errors=True)
