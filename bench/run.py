"""``make bench``: hfspark vs MLflow vs a naive pandas UDF vs the compute ceiling.

Every row of a table is measured in this one run, on the same rows, model and Spark
settings (``local[CORES]``, see :func:`bench.systems.spark_settings`), at 2 and 32
partitions. Prints the tables and PASS/FAIL lines and writes ``latest.md``, ``latest.json``
and ``latest.png`` to the results folder.

Environment knobs:
    HFSPARK_BENCH_ROWS    rows per table (default 2000)
    HFSPARK_BENCH_QUICK   1: ~200 rows, one repetition, no scaling series (smoke tests)
    HFSPARK_BENCH_REPS    timed jobs per configuration, best one reported (default 2); the
                          ceiling runs N rounds of its modes per partition count, half right
                          before the hfspark jobs and half right after
    HFSPARK_BENCH_CORES   Spark cores = ceiling processes (default 2)
    HFSPARK_BENCH_SCALING 0: skip the classification scaling series (2,000 to 16,000 rows)
    HFSPARK_BENCH_TASKS   comma list: classification,embeddings,speech,overhead,generation,
                          peers,coldstart (default all)
    HFSPARK_BENCH_SYSTEMS comma list of Spark systems (default all: hfspark, hfspark bf16,
                          hfspark onnx, mlflow default, mlflow bs8, mlflow bs32, naive pandas_udf)
    HFSPARK_BENCH_PARTITIONS  comma list (default 2,32)
    HFSPARK_BENCH_OUT     results folder (default bench/results; quick: bench/results/quick)
    HFSPARK_BENCH_WORK    cache folder for models and data (default $TMPDIR/hfspark-bench)

Example:
    $ make bench
    $ HFSPARK_BENCH_QUICK=1 .venv/bin/python -m bench.run
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench import report  # noqa: E402
from bench.ceiling import CeilingPool, CeilingResult, keep_best  # noqa: E402
from bench.data import bench_texts, cycled, describe, fingerprint  # noqa: E402
from bench.models import MAX_LENGTH, ensure_onnx, prepare_models  # noqa: E402
from bench.ort import export_plain  # noqa: E402
from bench.quant import run_quant  # noqa: E402
from bench.systems import ENGINE, SYSTEMS, error_line, run_scaling, run_spark_system  # noqa: E402

log = logging.getLogger("bench")

TASKS = {
    "classification": "text-classification",
    "embeddings": "feature-extraction",
    "speech": "automatic-speech-recognition",
}
PARTITIONS = (2, 32)
SCALING_ROWS = (2000, 4000, 8000, 16000)
CEILING_MODES = ("row", "sorted8", "sorted16", "onnx-sorted8", "onnx-sorted16")


@dataclass
class Settings:
    """The run's knobs, read from the environment."""

    rows: int
    quick: bool
    reps: int
    cores: int
    tasks: list[str]
    systems: list[str]
    partitions: tuple[int, ...]
    out: Path
    work: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        quick = os.environ.get("HFSPARK_BENCH_QUICK", "0") not in ("", "0", "false")
        root = Path(__file__).resolve().parent / "results"
        tasks = os.environ.get(
            "HFSPARK_BENCH_TASKS",
            ",".join([*TASKS, "overhead", "generation", "peers", "coldstart"]),
        )
        systems = [
            x.strip()
            for x in os.environ.get("HFSPARK_BENCH_SYSTEMS", ",".join(SYSTEMS)).split(",")
            if x.strip()
        ]
        unknown = [x for x in systems if x not in SYSTEMS]
        if unknown:
            raise SystemExit(
                f"unknown system(s) {unknown} in HFSPARK_BENCH_SYSTEMS; use {', '.join(SYSTEMS)}"
            )
        parts = os.environ.get("HFSPARK_BENCH_PARTITIONS", ",".join(map(str, PARTITIONS)))
        return cls(
            rows=int(os.environ.get("HFSPARK_BENCH_ROWS", "200" if quick else "2000")),
            quick=quick,
            reps=1 if quick else int(os.environ.get("HFSPARK_BENCH_REPS", "2")),
            cores=int(os.environ.get("HFSPARK_BENCH_CORES", "2")),
            tasks=[t.strip() for t in tasks.split(",") if t.strip()],
            systems=systems,
            partitions=tuple(int(p) for p in parts.split(",") if p.strip()),
            out=Path(os.environ.get("HFSPARK_BENCH_OUT") or (root / "quick" if quick else root)),
            work=Path(
                os.environ.get("HFSPARK_BENCH_WORK")
                or Path(tempfile.gettempdir()) / "hfspark-bench"
            ),
        )


def _write_parquet(texts: list[str], path: Path) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(path, index=False)
    return path


def _token_counts(folder: Path, texts: list[str]) -> list[int]:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    return [len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pyspark
    import torch
    import transformers

    try:
        import mlflow

        mlflow_version = mlflow.__version__
    except ImportError:
        mlflow_version = "-"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pyspark": pyspark.__version__,
        "mlflow": mlflow_version,
        "load_avg_start": os.getloadavg(),
    }


def run_text_task(key: str, s: Settings, texts: list[str], results: dict[str, Any]) -> None:
    """All systems and the ceiling for one text task, at every partition count."""
    task = TASKS[key]
    model = prepare_models(s.work, [task])[task]
    data = _write_parquet(texts, s.work / "data" / f"rows-{len(texts)}.parquet")
    tokens = _token_counts(model.folder, texts)
    results["data"][key] = {**describe(texts, tokens), "fingerprint": fingerprint(texts)}
    total = sum(tokens)
    wanted = (
        s.systems
        if key == "classification"
        else [
            n
            for n in (
                "hfspark",
                "hfspark bf16",
                "hfspark onnx",
                "mlflow default",
                "naive pandas_udf",
            )
            if n in s.systems
        ]
    )
    systems = [SYSTEMS[n] for n in wanted]
    partitions = s.partitions if key == "classification" else s.partitions[:1]
    _say(f"{task}: compute ceiling: {s.cores} processes loading the model")
    blocks: dict[int, dict[str, CeilingResult]] = {}  # partitions -> mode -> best run beside them
    rounds: dict[int, int] = {}
    plain = export_plain(model.folder, task, model.folder.parent / "ceiling.onnx")
    with CeilingPool(
        model.folder, task, texts, cores=s.cores, max_length=MAX_LENGTH, onnx_graph=plain
    ) as pool:

        def ceiling_rounds(parts: int, n: int) -> None:
            for _ in range(n):
                rounds[parts] = rounds.get(parts, 0) + 1
                _say(f"{task}: compute ceiling round {rounds[parts]} beside {parts} partitions")
                for res in pool.round(CEILING_MODES).values():
                    res.partitions = parts
                    keep_best(blocks.setdefault(parts, {}), res)

        for parts in partitions:
            for system in systems:
                # The ceiling's rounds sit right before and right after the hfspark jobs (same
                # machine state); not between them: Spark kills Python workers idle for 60 s.
                beside = system.name == "hfspark"
                ceiling_rounds(parts, (s.reps + 1) // 2 if beside else 0)
                _say(f"{task}: {system.name} at {parts} partitions")
                try:
                    res = run_spark_system(
                        system,
                        model,
                        data,
                        task=task,
                        rows=len(texts),
                        tokens=total,
                        partitions=parts,
                        reps=s.reps,
                        cores=s.cores,
                    )
                    results["spark"].append(res)
                except Exception as e:  # noqa: BLE001 - a failing baseline is a result, not a crash
                    log.exception("bench: %s failed", system.name)
                    results["failures"].append(
                        f"{task} / {system.name} / {parts} partitions: {error_line(e)}"
                    )
                ceiling_rounds(parts, s.reps // 2 if beside else 0)
            ceiling_rounds(parts, s.reps - rounds.get(parts, 0))  # hfspark not run: on its own
    results["ceiling"][task] = [c for block in blocks.values() for c in block.values()]
    _say(f"{task}: int8 / bf16 / ONNX Runtime outputs and speed")
    graphs = {"onnx fp32 (ONNX Runtime)": plain, "onnx fp32, hfspark's graph": ensure_onnx(model)}
    results["quant"].extend(
        run_quant(
            model.folder, task, texts[: min(len(texts), 400)], reps=1 if s.quick else 2, onnx=graphs
        )
    )
    scaling = os.environ.get("HFSPARK_BENCH_SCALING", "1") not in ("0", "false", "")
    if key == "classification" and not s.quick and scaling:
        sizes = [n for n in SCALING_ROWS if n >= len(texts)] or [len(texts)]
        sets = [
            (n, _write_parquet(cycled(texts, n), s.work / "data" / f"cycled-{n}.parquet"))
            for n in sizes
        ]
        _say(f"{task}: scaling series {sizes} at {s.partitions[0]} partitions")
        results["scaling"] = run_scaling(
            model,
            sets,
            task=task,
            partitions=s.partitions[0],
            cores=s.cores,
            tokens_per_row=total / len(texts),
        )


def main() -> int:
    """Run the benchmark; returns 0 (targets are reported, not enforced)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    s = Settings.from_env()
    s.out.mkdir(parents=True, exist_ok=True)
    _say(f"rows={s.rows} quick={s.quick} reps={s.reps} cores={s.cores} tasks={s.tasks} out={s.out}")
    results: dict[str, Any] = {
        "settings": {
            "rows": s.rows,
            "quick": s.quick,
            "reps": s.reps,
            "cores": s.cores,
            "partitions": list(s.partitions),
            "engine": ENGINE,
            "max_length": MAX_LENGTH,
            "sink": "noop",
            "ceiling_modes": list(CEILING_MODES),
        },
        "machine": _machine(),
        "data": {},
        "spark": [],
        "ceiling": {},
        "quant": [],
        "scaling": [],
        "speech": [],
        "overhead": {},
        "generation": {},
        "peers": {},
        "coldstart": {},
        "failures": [],
    }
    start = time.perf_counter()
    texts = bench_texts(s.rows)
    for key in s.tasks:
        if key == "speech":
            from bench.speech import run_speech

            _say("automatic-speech-recognition: Whisper tiny.en on espeak-ng speech")
            results["speech"] = run_speech(
                s.work, quick=s.quick, cores=s.cores, results=results, systems=s.systems
            )
        elif key == "overhead":
            from bench.overhead import run_overhead

            _say("framework overhead: 1x32 BERT on 30,000 short sentences, warm workers")
            results["overhead"] = run_overhead(s.work, cores=s.cores, reps=s.reps, quick=s.quick)
        elif key == "coldstart":
            from bench.coldstart import run_coldstart

            _say("cold start: cold vs warm jobs, worker memory (torch, plain daemon, onnx)")
            results["coldstart"] = run_coldstart(s.work, rows=s.rows, cores=s.cores, modes=None)
        elif key == "generation":
            from bench.generation import run_generation

            _say("generation: static vs continuous batching, prefix reuse, structured, dedupe")
            results["generation"] = run_generation(s.work, reps=s.reps, quick=s.quick)
        elif key == "peers":
            from bench.peers import run_peers

            _say("peers: hfspark, MLflow, distribatch, sentence-transformers, Ray Data, Daft")
            results["peers"] = run_peers(
                s.work, texts, cores=s.cores, partitions=s.partitions, reps=s.reps
            )
        elif key in TASKS:
            run_text_task(key, s, texts, results)
        else:
            raise SystemExit(f"unknown task {key!r} in HFSPARK_BENCH_TASKS; use {', '.join(TASKS)}")
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - start
    text = report.write(results, s.out)
    print(text)
    _say(f"wrote {s.out / 'latest.md'}, latest.json, latest.png in {results['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
