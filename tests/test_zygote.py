"""The zygote: a local session's daemon imports torch beside the JVM, then takes over.

The hand-off protocol is exercised with real processes and PySpark's own daemon loop: a
stand-in (``hfspark.udfs.daemon.hand_off``, as ``python -m hfspark.udfs.daemon`` runs it)
passes its pipes over a Unix socket; the real daemon, forked from the zygote, writes its port
on the stand-in's stdout and stops when that stdin closes or the stand-in gets SIGTERM, as
Spark's ``PythonWorkerFactory`` does it. Spark itself runs it in ``tests/test_daemon.py``.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hfspark import session

# a quick zygote: nothing to import (the protocol is the same; test_daemon.py imports torch)
OPTIONS = {
    "spark.master": "local[2]",
    session.DAEMON_KEY: session.DEFAULT_CONF[session.DAEMON_KEY],
    "spark.executorEnv.HFSPARK_WORKER_PRELOAD": "none",
}
STAND_IN = "from hfspark.udfs.daemon import hand_off; import os, sys; ok = hand_off(); " \
    "sys.stderr.write(f'FALLBACK {os.environ.get(\"HFSPARK_DAEMON_FALLBACK\")}\\n')"  # fmt: skip


@pytest.fixture
def zygote() -> Iterator[str]:
    spec = session.start_zygote(OPTIONS)
    assert spec is not None
    yield spec
    session._stop_zygote()


def _daemon_env(spec: str, **extra: str) -> dict[str, str]:
    env = session._daemon_env(OPTIONS)
    env.update({session.ZYGOTE_ENV: spec, **extra})
    return env


def _stand_in(env: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", STAND_IN],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _children_of(pid: int) -> list[int]:
    out = []
    for p in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        try:
            with open(f"/proc/{p}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(p)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _wait(predicate: Any, timeout: float = 20) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stop", ["stdin closed", "SIGTERM"])
def test_daemon_hands_its_pipes_to_the_zygote_and_stops_as_spark_stops_it(
    zygote: str, stop: str
) -> None:
    zygote_pid = session._ZYGOTE["proc"].pid
    proc = _stand_in(_daemon_env(zygote))
    assert proc.stdout is not None and proc.stdin is not None
    port = struct.unpack("!i", proc.stdout.read(4))[0]  # PySpark's daemon: its port, on our pipe
    assert 0 < port < 65536
    daemons = [p for p in _children_of(zygote_pid) if _alive(p)]
    assert len(daemons) == 1, "the daemon is the zygote's fork"
    assert proc.poll() is None, "the stand-in lives as long as the daemon"
    if stop == "stdin closed":  # Spark's normal stop: it closes the daemon's stdin
        proc.stdin.close()
    else:  # Process.destroy(): SIGTERM to the process Spark started, passed on
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert _wait(lambda: not _alive(daemons[0])), "the real daemon outlived its stand-in"
    assert session._ZYGOTE["proc"].poll() is None, "the zygote serves the next daemon"


def test_zygote_refuses_a_daemon_whose_import_environment_differs(zygote: str) -> None:
    proc = _stand_in(_daemon_env(zygote, HF_HOME="/somewhere/else"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "FALLBACK zygote refused: HF_HOME differs" in err.decode(), err.decode()[-2000:]
    wrong = zygote.split("#")[0] + "#not-the-token"
    proc = _stand_in(_daemon_env(wrong))
    _, err = proc.communicate(timeout=60)
    assert "FALLBACK zygote refused: wrong token" in err.decode()


def test_no_zygote_without_a_local_hfspark_daemon_and_one_per_environment() -> None:
    assert session.start_zygote({**OPTIONS, "spark.master": "spark://h:7077"}) is None
    assert session.start_zygote({**OPTIONS, session.DAEMON_KEY: "pyspark.daemon"}) is None
    assert session.start_zygote({**OPTIONS, "spark.remote": "sc://localhost:15002"}) is None
    first = session.start_zygote(OPTIONS)
    try:
        assert first and session.start_zygote(OPTIONS) == first  # reused
        proc = session._ZYGOTE["proc"]
        other = session.start_zygote({**OPTIONS, "spark.task.cpus": "2"})  # OMP_NUM_THREADS=2
        assert other and other != first
        assert proc.wait(timeout=20) == 0, "the replaced zygote exits"
        assert not os.path.exists(first.split("#")[0])
    finally:
        session._stop_zygote()
    os.environ[session.ZYGOTE_ENV] = "0"
    try:
        assert session.start_zygote(OPTIONS) is None
    finally:
        del os.environ[session.ZYGOTE_ENV]
