"""Pytest fixtures for Spark servers on loopback: a standalone cluster and a Spark Connect server.

Both are module-scoped and stop everything they started when the module ends, also when a test
or the start-up fails (the finalizer is registered before the first process starts). Their JVMs
run with ``QUICK_JVM_OPTS`` (C1 JIT, serial GC): half the CPU time on a 2-core machine.

Example:
    >>> from tests.servers import standalone_cluster, connect_server  # noqa: F401
    >>> def test_job(standalone_cluster):
    ...     done = submit("job.py", master=standalone_cluster.master_url)
"""

from __future__ import annotations

import os

import pytest

from hfspark.cluster import QUICK_JVM_OPTS, ConnectServer, StandaloneCluster

__all__ = ["standalone_cluster", "connect_server", "QUICK_ENV"]

QUICK_ENV = {"JAVA_TOOL_OPTIONS": QUICK_JVM_OPTS}  # also for submit(..., env=QUICK_ENV)


@pytest.fixture(scope="module")
def standalone_cluster(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> StandaloneCluster:
    """A master and 2 workers (1 core, 2 GiB each) on 127.0.0.1; logs under the test temp dir."""
    cluster = StandaloneCluster(2, cores=1, memory="2g", env=QUICK_ENV,
                                work_dir=tmp_path_factory.mktemp("standalone"))
    request.addfinalizer(cluster.stop)
    return cluster.start()


@pytest.fixture(scope="module")
def connect_server(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> ConnectServer:
    """A Spark Connect server (local[2], Delta, 1 GiB driver) on 127.0.0.1; ``.url`` is sc://..."""
    server = ConnectServer(master="local[2]", conf={"spark.driver.memory": "1g"}, env=QUICK_ENV,
                           work_dir=tmp_path_factory.mktemp("connect"))
    saved_mode = os.environ.get("SPARK_CONNECT_MODE_ENABLED")

    def stop() -> None:
        server.stop()
        if saved_mode is None:  # Connect clients set it for the whole process
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)

    request.addfinalizer(stop)
    return server.start()
