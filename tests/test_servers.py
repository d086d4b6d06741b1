"""Real Spark servers on loopback: jobs on a standalone cluster (also losing a worker) and Connect.

The module-level ledger collects every process the fixtures started (JVMs, executors, Python
workers) and, torn down after the fixtures, checks that none of them is still alive.
"""

from __future__ import annotations

import contextlib
import signal
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from hfspark.testing.cluster import (
    ClusterError,
    ConnectServer,
    StandaloneCluster,
    process_tree,
    still_running,
    submit,
)
from tests.helpers.servers import QUICK_ENV

# A pandas UDF job: one Arrow batch per partition, each leaves a marker file, then sleeps.
JOB = textwrap.dedent("""
    import os, sys, time
    import pandas as pd
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf

    out, rows, parts, sleep_s, markers = sys.argv[1:]
    sleep_s = float(sleep_s)
    spark = SparkSession.builder.getOrCreate()  # before pandas_udf("string") parses its type

    @pandas_udf("string")
    def label(ids: pd.Series) -> pd.Series:
        open(os.path.join(markers, f"{os.getpid()}-{ids.iloc[0]}"), "w").close()
        time.sleep(sleep_s)
        return "row-" + ids.astype(str)

    df = spark.range(0, int(rows), numPartitions=int(parts))
    df.select("id", label("id").alias("label")).write.format("delta").save(out)
    print("MASTER", spark.sparkContext.master)
    spark.stop()
""")
DRIVER_CONF = {"spark.driver.memory": "1g"}


@pytest.fixture(scope="module", autouse=True)
def ledger() -> Iterator[dict[int, int]]:
    """pid -> start time of every process seen; set up first, so it is torn down last."""
    seen: dict[int, int] = {}
    yield seen
    deadline = time.monotonic() + 10
    while still_running(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert still_running(seen) == [], "processes left running after the fixtures ended"


def run_job(tmp_path: Path, master: str, rows: int, parts: int, sleep_s: float, name: str):
    """Submit JOB; returns (CompletedProcess, Delta table path)."""
    app, out, markers = tmp_path / "job.py", tmp_path / "table", tmp_path / "markers"
    app.write_text(JOB)
    markers.mkdir(exist_ok=True)
    args = [str(out), str(rows), str(parts), str(sleep_s), str(markers)]
    done = submit(app, args, master=master, conf=DRIVER_CONF, env=QUICK_ENV, name=name, timeout=240)
    (tmp_path / "driver.log").write_text(done.stdout + done.stderr)  # for post-mortems
    return done, out


def read_delta(path: Path) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pandas().sort_values("id", ignore_index=True)


def expected(rows: int) -> pd.DataFrame:
    ids = pd.Series(range(rows), dtype="int64")
    return pd.DataFrame({"id": ids, "label": "row-" + ids.astype(str)})


@pytest.mark.cluster
def test_cluster_runs_pandas_udf_job_into_delta(
    standalone_cluster: StandaloneCluster,
    tmp_path: Path,
    ledger: dict[int, int],
) -> None:
    ledger.update(standalone_cluster.process_tree())
    assert standalone_cluster.master_url.startswith("spark://127.0.0.1:")
    done, out = run_job(tmp_path, standalone_cluster.master_url, 200, 4, 0.0, "udf-job")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"MASTER {standalone_cluster.master_url}" in done.stdout
    pd.testing.assert_frame_equal(read_delta(out), expected(200))
    apps = standalone_cluster.status()["completedapps"]
    assert any(app["name"] == "udf-job" for app in apps)


@pytest.mark.cluster
def test_job_survives_sigkill_of_a_worker(
    standalone_cluster: StandaloneCluster,
    tmp_path: Path,
    ledger: dict[int, int],
) -> None:
    cluster = standalone_cluster
    pool = ThreadPoolExecutor(1)
    try:
        markers = tmp_path / "markers"
        markers.mkdir()
        job = pool.submit(run_job, tmp_path, cluster.master_url, 80, 8, 2.0, "kill-job")
        deadline = time.monotonic() + 120
        # Wait until a UDF batch runs and worker 0's executor has Python workers (worker JVM,
        # executor JVM, pyspark daemon, ...): then the kill takes running tasks with it.
        while not (any(markers.iterdir()) and len(process_tree([cluster.worker_pids()[0]])) >= 3):
            assert time.monotonic() < deadline and not job.done(), "the job never got busy"
            time.sleep(0.2)
        worker0 = process_tree([cluster.worker_pids()[0]])
        ledger.update(cluster.process_tree())
        cluster.kill_worker(0, signal.SIGKILL)
        assert not job.done(), "the kill did not land mid-job"
        done, out = job.result(timeout=240)
    finally:
        pool.shutdown(wait=False)  # on failure the driver dies with the cluster at teardown
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    pd.testing.assert_frame_equal(read_delta(out), expected(80))
    assert "Lost executor" in done.stderr or "ExecutorLostFailure" in done.stderr
    deadline = time.monotonic() + 10  # the executor's Python workers go with their JVM
    while still_running(worker0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert still_running(worker0) == []
    states = {w["port"]: w["state"] for w in cluster.status()["workers"]}
    assert sorted(states.values()) == ["ALIVE", "DEAD"]


@pytest.mark.connect
def test_connect_pandas_udf_and_delta(
    connect_server: ConnectServer,
    tmp_path: Path,
    ledger: dict[int, int],
) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf

    assert connect_server.url.startswith("sc://127.0.0.1:")
    spark = SparkSession.builder.remote(connect_server.url).getOrCreate()
    try:

        @pandas_udf("long")
        def square(x: pd.Series) -> pd.Series:
            return x * x

        out = str(tmp_path / "squares")
        spark.range(50).select("id", square("id").alias("sq")).write.format("delta").save(out)
        ledger.update(connect_server.process_tree())  # now with its Python workers
        got = spark.read.format("delta").load(out).toPandas().sort_values("id", ignore_index=True)
    finally:
        spark.stop()
    assert got["sq"].tolist() == [i * i for i in range(50)]


@pytest.mark.parametrize("server_class", [StandaloneCluster, ConnectServer])
def test_failed_start_names_the_process_shows_its_log_and_cleans_up(server_class, tmp_path: Path):
    server = server_class(
        work_dir=tmp_path, env={"JAVA_TOOL_OPTIONS": "-XX:+NoSuchJvmOption"}, start_timeout=60
    )
    with pytest.raises(ClusterError, match=r"(?s)Spark (master|Connect server).*NoSuchJvmOption"):
        server.start()
    assert server.process_tree() == {}
    assert list((tmp_path / "logs").glob("*.log")), "the logs of a failed start are kept"


def _processes_running(needle: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if needle in cmdline.read_text():
                found.append(int(cmdline.parent.name))
    return found


@pytest.mark.slow
def test_submit_check_shows_the_python_traceback(tmp_path: Path) -> None:
    app = tmp_path / "fails.py"
    app.write_text("raise RuntimeError('boom from the app')\n")
    with pytest.raises(ClusterError, match=r"(?s)exited with code 1.*boom from the app"):
        submit(app, master="local[1]", conf=DRIVER_CONF, env=QUICK_ENV, check=True, timeout=120)


@pytest.mark.slow
def test_submit_timeout_kills_the_driver_tree(tmp_path: Path) -> None:
    app = tmp_path / "hangs.py"
    app.write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    with pytest.raises(ClusterError, match="did not finish in 15s"):
        submit(app, master="local[1]", conf=DRIVER_CONF, env=QUICK_ENV, timeout=15)
    assert _processes_running(str(app)) == []
