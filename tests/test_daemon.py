"""hfspark's preloading Python daemon: workers fork with torch imported, fall back cleanly.

Real Spark (local[2]) and a tiny text classifier. A probe Arrow UDF runs in the same pool
of Python workers as the model UDF and reports, from inside a worker, its parent's command
line and whether torch and transformers' model classes were imported before its first task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


def _worker_facts(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
    """Per batch: this worker's parent command line, what was imported, its startup record."""
    import os
    import sys

    from hfspark.udfs.startup import snapshot

    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        parent = f.read().replace(b"\0", b" ").decode()
    facts = {
        "ppid": os.getppid(),
        "parent": parent,
        "torch": "torch" in sys.modules,
        "modeling": "transformers.modeling_utils" in sys.modules,
        "startup": snapshot(),
    }
    for batch in batches:
        yield pa.array([json.dumps(facts)] * len(batch), pa.string())


def _facts(spark: Any) -> list[dict[str, Any]]:
    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    probe = arrow_udf(_worker_facts, "string", ArrowUDFType.SCALAR_ITER)  # type: ignore[call-overload]
    rows = spark.range(0, 2, 1, 2).select(probe("id").alias("f")).collect()
    return [json.loads(r["f"]) for r in rows]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hfspark.flavor import save_model
    from tests.helpers.tiny_models import build_text_classification

    root = tmp_path_factory.mktemp("daemon")
    folder = build_text_classification(root / "tiny")
    save_model(str(folder), str(root / "saved"), task="text-classification")
    return str(root / "saved")


def _session(conf: dict[str, str] | None = None) -> Any:
    from hfspark.session import local_spark

    return local_spark("local[2]", app_name="hfspark-daemon", conf=conf)


def _predict(spark: Any, model: str) -> list[Any]:
    from hfspark.udfs import model_udf

    df = spark.createDataFrame([(f"text {i}",) for i in range(8)], "text string").repartition(2)
    return df.select(model_udf(model)("text").alias("p")).collect()


def test_preload_modules_parses_groups_and_off() -> None:
    from hfspark.udfs.daemon import preload_modules

    assert preload_modules("none") == []
    assert preload_modules("") == []
    assert preload_modules("onnxruntime, tokenizers") == ["onnxruntime", "tokenizers"]
    mods = preload_modules("torch,transformers,transformers")
    assert mods[0] == "torch" and "transformers.modeling_utils" in mods
    assert len(mods) == len(set(mods))


@pytest.fixture(scope="module")
def hf_spark() -> Iterator[Any]:
    """A fresh session with hfspark's defaults (its first Python tasks are the tests')."""
    spark = _session()
    yield spark
    spark.stop()


def test_workers_fork_from_the_preloading_daemon_and_report_startup(
    hf_spark: Any, classifier: str
) -> None:
    from hfspark.jobs.startup import describe, worker_startup
    from hfspark.session import DAEMON_KEY

    spark = hf_spark
    assert spark.sparkContext.getConf().get(DAEMON_KEY) == "hfspark.udfs.daemon"
    first = _facts(spark)  # the session's first Python tasks: nothing ran in them before
    # local_spark() started the zygote beside the JVM: the daemon is its fork (its command line)
    assert all("-m hfspark.udfs.zygote" in f["parent"] for f in first), first
    assert all(f["torch"] and f["modeling"] for f in first), first
    assert len(_predict(spark, classifier)) == 8
    startup = worker_startup(spark)
    assert startup["daemon"] == "hfspark"
    assert all(w["zygote"] and not w["fallback"] for w in startup["workers"]), startup
    assert "torch" in startup["preloaded"] and startup["preload_s"] > 0
    slow = startup["slowest"]
    assert {"start_s", "imports_s", "weights_s", "load_s", "first_call_s"} <= set(slow)
    assert "daemon hfspark" in describe(startup)


def test_job_report_carries_the_startup_breakdown(
    hf_spark: Any, classifier: str, tmp_path: Path
) -> None:
    from hfspark.jobs import load_config, run_job

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"t {i}"}) + "\n" for i in range(6)))
    conf = {
        "input": {"path": str(src), "format": "json", "id_column": "id"},
        "models": [{"name": "pred", "uri": classifier, "inputs": "text"}],
        "output": {"path": str(tmp_path / "out"), "format": "parquet"},
        "run": {"report_path": str(tmp_path / "reports"), "progress": "off"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(conf))
    report = run_job(load_config(path), hf_spark, source=str(path))
    assert report.startup["daemon"] == "hfspark"
    assert "load_s" in report.startup["slowest"]
    md = Path(report.paths["markdown"]).read_text()
    assert "worker startup:" in md and "daemon hfspark" in md
    assert json.loads(Path(report.paths["json"]).read_text())["startup"]["workers"]


def test_failed_preload_falls_back_to_the_plain_daemon(hf_spark: Any, classifier: str) -> None:
    hf_spark.stop()  # a new SparkContext: its conf picks the daemon's environment
    spark = _session({"spark.executorEnv.HFSPARK_WORKER_PRELOAD": "torch,hfspark_no_such_mod"})
    try:
        facts = _facts(spark)
        assert all("-m pyspark.daemon" in f["parent"] for f in facts), facts
        assert len(_predict(spark, classifier)) == 8  # the UDF still runs
        from hfspark.jobs.startup import worker_startup

        startup = worker_startup(spark)
        assert startup["daemon"] == "pyspark"
        assert "hfspark_no_such_mod" in startup["fallback"]
    finally:
        spark.stop()


def _daemon_pids() -> list[int]:
    import os

    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/cmdline", "rb") as f:
                parent = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if "-m hfspark.udfs.daemon" in line and "-m hfspark.udfs.daemon" not in parent:
            out.append(pid)  # a daemon Spark started (or the stand-in of a zygote's fork)
        elif "-m hfspark.udfs.zygote" in line and "-m hfspark.udfs.zygote" in parent:
            if "-m hfspark.udfs.zygote" not in _cmdline(_ppid(ppid)):
                out.append(pid)  # a daemon forked from the zygote (not one of its workers)
    return out


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_session_start_warms_the_daemon_before_the_first_query(
    hf_spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hfspark import session

    hf_spark.stop()
    monkeypatch.setenv("HFSPARK_WARM_WORKERS", "1")  # tests turn it off (conftest); users get it
    spark = _session()
    try:
        thread = session._WARMED.get(id(spark.sparkContext))
        assert thread is not None, "local_spark() did not start warming the workers"
        thread.join(180)
        assert not thread.is_alive()
        warmed = _daemon_pids()
        assert warmed, "no hfspark daemon running after the warm-up, before any query"
        facts = _facts(spark)
        assert all("-m hfspark.udfs.zygote" in f["parent"] and f["torch"] for f in facts), facts
        # the query's workers fork from the daemon the warm-up started (not one of its own)
        assert {f["ppid"] for f in facts} <= set(warmed), (facts, warmed)
        assert set(_daemon_pids()) == set(warmed)
        assert session.warm_workers(spark) is None  # once per SparkContext
    finally:
        spark.stop()
    # Spark stops its daemons with the context: the zygote's forks go too (the zygote stays)
    end = time.monotonic() + 30
    while _daemon_pids() and time.monotonic() < end:
        time.sleep(0.2)
    assert not _daemon_pids(), "daemons outlived spark.stop()"
    assert session._ZYGOTE["proc"].poll() is None
