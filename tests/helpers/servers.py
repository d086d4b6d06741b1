"""Pytest fixtures for Spark servers on loopback: a standalone cluster and a Spark Connect server.

Both are module-scoped and stop everything they started when the module ends, also when a test
or the start-up fails (the finalizer is registered before the first process starts). Their JVMs
run with ``QUICK_JVM_OPTS`` (C1 JIT, serial GC): half the CPU time on a 2-core machine.

Example:
    >>> # tests/conftest.py loads this module as a plugin: ask for the fixtures by name
    >>> def test_x(standalone_cluster, connect_server): ...
    >>> def test_job(standalone_cluster):
    ...     done = submit("job.py", master=standalone_cluster.master_url)
"""

from __future__ import annotations

import os
import subprocess

import pytest

from hfspark.testing.cluster import QUICK_JVM_OPTS, ConnectServer, StandaloneCluster

__all__ = ["standalone_cluster", "connect_server", "QUICK_ENV", "MlflowServer"]

QUICK_ENV = {"JAVA_TOOL_OPTIONS": QUICK_JVM_OPTS}  # also for submit(..., env=QUICK_ENV)


@pytest.fixture(scope="module")
def standalone_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> StandaloneCluster:
    """A master and 2 workers (1 core, 2 GiB each) on 127.0.0.1; logs under the test temp dir."""
    cluster = StandaloneCluster(
        2, cores=1, memory="2g", env=QUICK_ENV, work_dir=tmp_path_factory.mktemp("standalone")
    )
    request.addfinalizer(cluster.stop)
    return cluster.start()


@pytest.fixture(scope="module")
def connect_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ConnectServer:
    """A Spark Connect server (local[2], Delta, 1 GiB driver) on 127.0.0.1; ``.url`` is sc://..."""
    server = ConnectServer(
        master="local[2]",
        conf={"spark.driver.memory": "1g"},
        env=QUICK_ENV,
        work_dir=tmp_path_factory.mktemp("connect"),
    )
    saved_mode = os.environ.get("SPARK_CONNECT_MODE_ENABLED")

    def stop() -> None:
        server.stop()
        if saved_mode is None:  # Connect clients set it for the whole process
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)

    request.addfinalizer(stop)
    return server.start()


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 (sqlite backend, local artifact root), in its own process group.

    Job execution (MLflow's huey consumers, 7 processes) is turned off: nothing here uses it
    and it would take the CPU from the tests on a small machine.

    Example:
        >>> server = MlflowServer(tmp_path).start()
        >>> server.url
        'http://127.0.0.1:45127'
    """

    def __init__(self, root: os.PathLike[str] | str, port: int | None = None) -> None:
        from pathlib import Path

        self.root = Path(root)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = self.root / "artifacts"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "server.log"

    def start(self, timeout_s: float = 90.0) -> MlflowServer:
        """Start the server and wait until ``/health`` answers."""
        import sys
        import time
        import urllib.request
        from pathlib import Path

        self.root.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        cmd = [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"mlflow server not up after {timeout_s}s: {self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        """Stop the server and every process it started (its process group)."""
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
