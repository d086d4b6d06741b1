"""Fault tests: hfspark jobs on a standalone cluster (spark-submit) under real faults.

Every faulty run is compared with a clean run of the same job: the same ids (none twice, none
missing) and the same predictions, read back with ``deltalake`` (delta-rs, not Spark).

- A Python worker running inference is SIGKILLed mid-batch: the task is retried.
- A worker (its JVM and executor) is SIGKILLed mid-job: Spark reschedules its tasks.
- The output filesystem is full (a 2 MiB tmpfs), or the table's ``_delta_log`` is read-only (a
  read-only bind mount: root ignores ``chmod``): the append fails with a clear error, before
  or at the commit, and the table still reads as its last good version.
- The driver of a YAML job (``jobs/run_job.py``) is SIGKILLed after its first chunk commit;
  the rerun resumes (``id_column``) and writes every id exactly once.
- The model store (moto S3 behind a proxy) is down when executors first load the model: with
  a brief outage the bounded retries ride it out; kept down, the job fails naming the URI.

To keep the file at a few minutes on a small machine, one app (``fault_apps/classify.py``)
runs the clean phase and the executor and disk faults one after another (the ``executor_run``
fixture); the store and driver tests run their own apps. Each app gets a fresh cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hfspark.testing.cluster import (
    StandaloneCluster,
    process_tree,
    still_running,
    submit,
    submit_command,
)
from tests.helpers.faults import (
    APPS,
    ROOT,
    TEXTS,
    AppControl,
    Marker,
    MotoS3,
    StoreProxy,
    assert_same_predictions,
    can_mount,
    cmdline,
    executor_logs,
    fill,
    has_torch,
    job_reason,
    kill_group,
    launch,
    parent,
    read_only_bind,
    read_predictions,
    sigkill,
    small_tmpfs,
    spark_env,
    table_version,
    wait_for,
)
from tests.helpers.servers import QUICK_ENV

pytestmark = pytest.mark.cluster

CLASSIFY = APPS / "classify.py"
N_ROWS = len(TEXTS.read_text().splitlines())
PACE_S = 0.5  # per Arrow batch of 8 rows in the phases where a kill must land mid-job
DRIVER_CONF = {"spark.driver.memory": "1g", "spark.sql.execution.arrow.maxRecordsPerBatch": "8"}


def start_cluster(
    request: pytest.FixtureRequest, work_dir: Path, env: dict[str, str] | None = None
) -> StandaloneCluster:
    """A fresh standalone cluster (2 workers, 1 core each), stopped when the requester ends."""
    cluster = StandaloneCluster(
        2, cores=1, memory="2g", env={**QUICK_ENV, **(env or {})}, work_dir=work_dir
    )
    request.addfinalizer(cluster.stop)
    return cluster.start()


def run_app(
    request: pytest.FixtureRequest,
    cluster: StandaloneCluster,
    plan: Path,
    log: Path,
    conf: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start the fault app with spark-submit (its output in ``log``), killed when the test ends."""
    cmd = submit_command(
        CLASSIFY, [str(plan)], master=cluster.master_url, conf={**DRIVER_CONF, **(conf or {})}
    )
    driver = launch(cmd, spark_env({**QUICK_ENV, **(env or {})}), log)
    request.addfinalizer(lambda: kill_group(driver))  # no-op once it has exited
    return driver


def finish(driver: subprocess.Popen, log: Path, timeout: float = 180) -> str:
    """Wait for the app to exit; returns its output (app prints, Python tracebacks, Spark log)."""
    try:
        driver.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(driver)
        raise AssertionError(
            f"the app did not exit within {timeout:.0f}s of its last phase; log {log}"
        ) from None
    return log.read_text(errors="replace")


@pytest.fixture(scope="module")
def saved_model(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny text-classification model saved with the hfspark flavor."""
    from hfspark.flavor import save_model

    dest = tmp_path_factory.mktemp("fault-model") / "text-classification"
    save_model(str(tiny_models["text-classification"]), str(dest), task="text-classification")
    return dest


# ---------------------------------------------------------------------------------------------
# One app: clean run, a Python worker killed, a full disk, a read-only log, a worker killed
# ---------------------------------------------------------------------------------------------
@dataclass
class ExecutorRun:
    """What the ``executor_run`` fixture saw: outcomes per phase and the faults it injected."""

    ctl: AppControl
    outputs: dict[str, Path]
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: str = ""
    returncode: int | None = None
    python_victim: Marker | None = None
    worker_victim: Marker | None = None
    worker0_tree: dict[int, int] = field(default_factory=dict)
    worker_states: list[str] = field(default_factory=list)
    mount_skip: str | None = None
    full_bytes: int = 0
    clean_files: int = 0


def _pick(ctl: AppControl, phase: str, ok: Callable[[Marker], bool]) -> Marker | None:
    """A task's first batch of ``phase`` that started under ``PACE_S`` ago and passes ``ok``.

    Its Python worker is still pausing on that batch, with the task's other batches to come:
    a kill now lands in the middle of a running task.
    """
    now = time.time()
    for mk in reversed(ctl.markers(phase)):
        if mk.batch == 0 and now - mk.mtime < PACE_S and ok(mk):
            return mk
    return None


@pytest.fixture(scope="module")
def executor_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, saved_model: Path
) -> Iterator[ExecutorRun]:
    """Run the classify app through its phases on a fresh cluster, injecting each fault."""
    root = tmp_path_factory.mktemp("executor-faults")
    cluster = start_cluster(request, root / "cluster")
    ctl = AppControl(root)
    outputs = {
        "clean": root / "clean",
        "python_kill": root / "python_kill",
        "worker_kill": root / "worker_kill",
        "disk_full": root / "full" / "table",
        "read_only": root / "ro" / "table",
    }
    # Phase order: the failed commit (read_only) keeps its Python workers warm; a failed task
    # (disk_full) does not, so it comes last, after the kills.
    run = ExecutorRun(ctl=ctl, outputs=outputs, mount_skip=can_mount())
    disk = run.mount_skip is None
    phases: list[dict[str, Any]] = [
        {"name": "clean", "model": "m", "output": str(outputs["clean"])},
        *(
            [
                {
                    "name": "read_only",
                    "model": "m",
                    "output": str(outputs["read_only"]),
                    "mode": "append",
                    "wait": True,
                }
            ]
            if disk
            else []
        ),
        {
            "name": "python_kill",
            "model": "m",
            "output": str(outputs["python_kill"]),
            "pace": PACE_S,
        },
        {
            "name": "worker_kill",
            "model": "m",
            "output": str(outputs["worker_kill"]),
            "pace": PACE_S,
        },
        *(
            [
                {
                    "name": "disk_full",
                    "model": "m",
                    "output": str(outputs["disk_full"]),
                    "mode": "append",
                }
            ]
            if disk
            else []
        ),
    ]
    plan = ctl.write_plan({"m": str(saved_model)}, phases)
    conf = {"spark.executorEnv.HFSPARK_CACHE_DIR": str(root / "executor-cache")}
    mounts = ExitStack()
    request.addfinalizer(mounts.close)  # after the tests: they read the tables on the mounts
    job = run_app(request, cluster, plan, root / "driver.log", conf)
    try:
        run.outcomes["clean"] = ctl.wait_done("clean", job)

        if disk:
            # The last good version: the clean table, copied into a folder whose _delta_log is
            # then bind-mounted read-only, and onto a 2 MiB tmpfs that is then filled.
            ctl.wait_ready("read_only", job)
            run.clean_files = len(list(outputs["clean"].glob("*.parquet")))
            shutil.copytree(outputs["clean"], outputs["read_only"])
            mounts.enter_context(read_only_bind(outputs["read_only"] / "_delta_log"))
            full = mounts.enter_context(small_tmpfs(outputs["disk_full"].parent, "2m"))
            shutil.copytree(outputs["clean"], outputs["disk_full"])
            run.full_bytes = fill(full)
            ctl.go("read_only")
            run.outcomes["read_only"] = ctl.wait_done("read_only", job)

        # A Python worker killed mid-batch: the worker pausing on a task's first batch, checked
        # to be a Python daemon's child (hfspark's preloading one, or PySpark's) in this cluster
        # with torch loaded (it runs the model).
        def inference_worker(mk: Marker) -> bool:
            daemon = cmdline(parent(mk.pid) or 0)
            return (
                mk.pid in cluster.process_tree()
                and has_torch(mk.pid)
                and ("hfspark.udfs.daemon" in daemon or "pyspark.daemon" in daemon)
            )

        victim = wait_for(
            lambda: _pick(ctl, "python_kill", inference_worker),
            240,
            "a batch of phase python_kill",
            job,
        )
        sigkill(victim.pid)
        run.python_victim = victim
        assert ctl.done("python_kill") is None, "the Python worker kill did not land mid-phase"
        run.outcomes["python_kill"] = ctl.wait_done("python_kill", job)

        # A worker (JVM + executor + its Python workers) killed while it runs a task.
        worker0 = cluster.worker_pids()[0]
        victim = wait_for(
            lambda: _pick(ctl, "worker_kill", lambda mk: mk.pid in process_tree([worker0])),
            240,
            "a batch of phase worker_kill on worker 0",
            job,
        )
        run.worker0_tree = process_tree([worker0])
        cluster.kill_worker(0, signal.SIGKILL)
        run.worker_victim = victim
        assert ctl.done("worker_kill") is None, "the worker kill did not land mid-phase"
        run.outcomes["worker_kill"] = ctl.wait_done("worker_kill", job)
        if disk:
            run.outcomes["disk_full"] = ctl.wait_done("disk_full", job)
        run.log, run.returncode = finish(job, root / "driver.log"), job.returncode
        run.worker_states = sorted(w["state"] for w in cluster.status()["workers"])
    except BaseException:
        kill_group(job)
        mounts.close()
        raise
    yield run


@pytest.fixture(scope="module")
def clean(executor_run: ExecutorRun):
    """The predictions of the clean run (phase ``clean``), read back with deltalake."""
    assert executor_run.outcomes["clean"]["ok"], executor_run.outcomes["clean"]
    got = read_predictions(executor_run.outputs["clean"])
    assert len(got) == N_ROWS and got["id"].is_unique
    return got


def test_fault_app_ran_every_phase(executor_run: ExecutorRun) -> None:
    assert executor_run.returncode == 0, executor_run.log[-5000:]
    assert "MODELS READY" in executor_run.log


def test_python_worker_killed_mid_batch_task_is_retried(executor_run: ExecutorRun, clean) -> None:
    run, victim = executor_run, executor_run.python_victim
    outcome = run.outcomes["python_kill"]
    assert outcome["ok"], outcome
    assert_same_predictions(
        read_predictions(run.outputs["python_kill"]), clean, "after a Python worker was killed"
    )
    assert "Python worker exited unexpectedly" in run.log, "the driver did not see it die"
    retried = [
        mk
        for mk in run.ctl.markers("python_kill")
        if mk.partition == victim.partition and mk.attempt > victim.attempt
    ]
    assert retried, f"partition {victim.partition} (killed in {victim}) was not retried"
    assert victim.pid not in {mk.pid for mk in retried}


def test_worker_killed_mid_job_tasks_are_rescheduled(executor_run: ExecutorRun, clean) -> None:
    run, victim = executor_run, executor_run.worker_victim
    outcome = run.outcomes["worker_kill"]
    assert outcome["ok"], outcome
    assert_same_predictions(
        read_predictions(run.outputs["worker_kill"]), clean, "after a worker was killed"
    )
    assert "Lost executor" in run.log or "ExecutorLostFailure" in run.log
    retried = [
        mk
        for mk in run.ctl.markers("worker_kill")
        if mk.partition == victim.partition and mk.attempt > victim.attempt
    ]
    assert retried, f"partition {victim.partition} (running on the killed worker) was not rerun"
    assert not set(run.worker0_tree) & {mk.pid for mk in retried}
    assert still_running(run.worker0_tree) == [], "the killed worker left processes behind"
    assert run.worker_states == ["ALIVE", "DEAD"]


def test_full_disk_fails_the_append_and_keeps_the_table(executor_run: ExecutorRun, clean) -> None:
    run = executor_run
    if run.mount_skip:
        pytest.skip(run.mount_skip)
    assert run.full_bytes > 0
    outcome = run.outcomes["disk_full"]
    assert not outcome["ok"], "the append to a full filesystem succeeded"
    assert "No space left on device" in outcome["error"], outcome["error"][:3000]
    assert table_version(run.outputs["disk_full"]) == 0  # no commit
    assert_same_predictions(
        read_predictions(run.outputs["disk_full"]), clean, "the table on the full disk"
    )


def test_read_only_log_fails_at_commit_and_keeps_the_table(
    executor_run: ExecutorRun, clean
) -> None:
    run = executor_run
    if run.mount_skip:
        pytest.skip(run.mount_skip)
    outcome = run.outcomes["read_only"]
    assert not outcome["ok"], "the commit into a read-only _delta_log succeeded"
    assert "Read-only file system" in outcome["error"], outcome["error"][:3000]
    table = run.outputs["read_only"]
    # the data files were written: the failure came at the commit, which never happened
    assert len(list(table.glob("*.parquet"))) > run.clean_files
    assert table_version(table) == 0
    assert_same_predictions(read_predictions(table), clean, "the table with a read-only log")


def test_job_reason_names_the_storage_cause(executor_run: ExecutorRun) -> None:
    """What ``hfspark run`` would print for these failed writes names the cause."""
    if executor_run.mount_skip:
        pytest.skip(executor_run.mount_skip)
    for phase, cause in (
        ("disk_full", "No space left on device"),
        ("read_only", "Read-only file system"),
    ):
        reason = job_reason(executor_run.outcomes[phase]["error"])
        assert cause in reason, f"{phase}: {reason}"


# ---------------------------------------------------------------------------------------------
# The model store is down when executors first load the model
# ---------------------------------------------------------------------------------------------
STORE_RETRIES, STORE_BACKOFF = 4, 1.0  # hfspark retries: waits of about 1, 2 and 4 s


def test_model_store_outage_at_executor_load(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_models: dict[str, Path], clean
) -> None:
    from hfspark.flavor import save_model

    relabelled = tmp_path / "relabelled"  # another model (config hash): loaded from the store
    shutil.copytree(tiny_models["text-classification"], relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    config["id2label"] = {k: f"other-{v}" for k, v in config["id2label"].items()}
    config["label2id"] = {f"other-{k}": v for k, v in config["label2id"].items()}
    (relabelled / "config.json").write_text(json.dumps(config))

    s3 = MotoS3("models").__enter__()
    request.addfinalizer(s3.__exit__)
    proxy = StoreProxy(s3.port)  # the executors' endpoint: down until the test brings it up
    request.addfinalizer(proxy.close)
    brief_uri, down_uri = "s3://models/tc", "s3://models/tc-relabelled"
    save_model(
        str(tiny_models["text-classification"]),
        brief_uri,
        storage_options=s3.storage_options,
        task="text-classification",
    )
    save_model(
        str(relabelled), down_uri, storage_options=s3.storage_options, task="text-classification"
    )

    cluster = start_cluster(request, tmp_path / "cluster")
    ctl = AppControl(tmp_path)
    plan = ctl.write_plan(
        {"brief": brief_uri, "down": down_uri},
        [
            {"name": "brief", "model": "brief", "output": str(tmp_path / "brief")},
            {"name": "down", "model": "down", "output": str(tmp_path / "down"), "wait": True},
        ],
    )
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    executor_env = {
        **creds,
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_MAX_ATTEMPTS": "1",  # no botocore retries: hfspark's are under test
        "HFSPARK_STORE_RETRIES": str(STORE_RETRIES),
        "HFSPARK_STORE_BACKOFF": str(STORE_BACKOFF),
        "HFSPARK_CACHE_DIR": str(tmp_path / "executor-cache"),
    }  # a fresh machine
    conf = {f"spark.executorEnv.{k}": v for k, v in executor_env.items()}
    # Each failed task attempt starts a fresh Python worker (imports, then hfspark's retries):
    # one attempt keeps the failing phase short. With Spark's default of 4 the failure takes
    # up to 4 times as long, still bounded.
    conf["spark.task.maxFailures"] = "1"
    # the driver reads the models' metadata straight from the store (it is up for the driver)
    driver_env = {
        **creds,
        "AWS_ENDPOINT_URL": s3.url,
        "HFSPARK_CACHE_DIR": str(tmp_path / "driver-cache"),
    }
    job = run_app(request, cluster, plan, tmp_path / "driver.log", conf, driver_env)
    # the executors' first try fails (the proxy is down): bring the store back during the backoff
    first_retry = re.compile(rf"list {re.escape(brief_uri)} failed .*retry 1/{STORE_RETRIES - 1}")
    wait_for(
        lambda: first_retry.search(executor_logs(cluster.work_dir)),
        240,
        "an executor to retry the model download",
        job,
        interval=0.2,
    )
    proxy.up()  # the outage was brief: the next retry gets through
    brief = ctl.wait_done("brief", job)
    ctl.wait_ready("down", job)
    proxy.down()  # and now it stays down
    ctl.go("down")
    down = ctl.wait_done("down", job, timeout=240)
    log = finish(job, tmp_path / "driver.log")
    executors = executor_logs(cluster.work_dir)
    assert job.returncode == 0, log[-5000:]

    assert brief["ok"], brief
    assert_same_predictions(
        read_predictions(tmp_path / "brief"), clean, "after a brief store outage"
    )
    assert f"loaded {brief_uri}" in executors and proxy.connections > 0

    assert not down["ok"], "the job read a model from a store that is down"
    error = down["error"]
    assert "ModelStoreError" in error, error[:3000]
    line = job_reason(error)  # hfspark run's line: the error, the UDF call, the cause
    assert line.startswith("ModelStoreError: text_classification(pace(text)): ") and (
        f"Cannot list {down_uri}" in line
    ), line
    assert re.search(rf"Cannot \w+ {re.escape(down_uri)} after {STORE_RETRIES} attempts", error), (
        error[:3000]
    )
    # bounded: a Python worker start and hfspark's retries (about 7 s of waits)
    assert down["seconds"] < 90, f"failing took {down['seconds']}s"
    assert not list((tmp_path / "down").glob("_delta_log/*.json")), "a failed job committed"


# ---------------------------------------------------------------------------------------------
# The driver of a YAML job is killed; the rerun resumes
# ---------------------------------------------------------------------------------------------
def test_driver_killed_mid_job_rerun_resumes_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path, saved_model: Path, clean
) -> None:
    out = tmp_path / "out"
    conf = {
        "spark": {"conf": {"spark.sql.execution.arrow.maxRecordsPerBatch": 8}},
        "input": {"format": "json", "path": str(TEXTS), "id_column": "id"},
        "models": [
            {
                "name": "pred",
                "uri": str(saved_model),
                "inputs": "text",
                "options": {"batch_size": 8, "device": "cpu"},
            }
        ],
        "output": {"path": str(out)},
        "run": {
            "chunk_rows": 80,
            "report_path": str(tmp_path / "reports"),
            "progress": "log",
            "log_every_s": 1,
        },
    }
    job_yaml = tmp_path / "job.yaml"
    job_yaml.write_text(yaml.safe_dump(conf, sort_keys=False))
    cluster = start_cluster(request, tmp_path / "cluster")
    run_job = ROOT / "jobs" / "run_job.py"
    cmd = submit_command(run_job, [str(job_yaml)], master=cluster.master_url, conf=DRIVER_CONF)
    driver = launch(cmd, spark_env(QUICK_ENV), tmp_path / "killed-driver.log")
    request.addfinalizer(lambda: kill_group(driver))
    first_commit = out / "_delta_log" / f"{0:020d}.json"
    wait_for(first_commit.exists, 300, "the first chunk commit", driver, interval=0.1)
    kill_group(driver)  # SIGKILL: the driver JVM and the Python driver, no cleanup
    log = (tmp_path / "killed-driver.log").read_text(errors="replace")
    assert f"{N_ROWS} input rows, 0 already written, {N_ROWS} to process in 4 chunk(s)" in log
    partial = read_predictions(out)
    assert 1 <= len(partial) < N_ROWS, "the driver must die in the middle of the job"
    # the app's executors go away with their driver (before the rerun asks for the cores)
    workers = cluster.worker_pids()
    wait_for(
        lambda: not set(process_tree(workers)) - set(workers),
        120,
        "the killed app's executors to exit",
    )

    done = submit(
        run_job,
        [str(job_yaml)],
        master=cluster.master_url,
        conf=DRIVER_CONF,
        env=QUICK_ENV,
        timeout=420,
    )
    (tmp_path / "rerun.log").write_text(done.stdout + "\n" + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert f"wrote {N_ROWS - len(partial)} rows to delta {out}" in done.stdout
    assert f"{len(partial)} were there before this run" in done.stdout
    resumed = read_predictions(out)
    assert_same_predictions(resumed, clean, "after the driver was killed and the job rerun")
    assert set(partial["id"]) <= set(resumed["id"])
