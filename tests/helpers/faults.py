"""Helpers of the fault tests (tests/test_faults.py): inject faults, drive the fault apps, compare.

Nothing here starts a cluster. The pieces:

- :class:`AppControl`: the file handshake with ``tests/fault_apps/classify.py`` (phase
  ``ready``/``go``/``done`` files) and its per-batch markers (which Python worker runs which
  batch of which task attempt).
- Processes: drivers launched in their own process group (:func:`launch`, :func:`kill_group`)
  and /proc helpers: a process's command line, parent, whether it has torch loaded; SIGKILL.
- :class:`StoreProxy`: a TCP proxy in front of a moto S3 server that the test switches off
  (connections refused, open ones cut) and on again: the model store outage.
- :func:`small_tmpfs` (a full filesystem) and :func:`read_only_bind` (a read-only folder,
  which root cannot ignore as it ignores ``chmod``): unwritable outputs. Both need root.
- :func:`read_predictions` / :func:`assert_same_predictions`: Delta tables read back with
  ``deltalake`` (delta-rs, independent of Spark) and compared with a clean run.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parents[1] / "fault_apps"
TEXTS = ROOT / "data" / "texts.jsonl"


def wait_for(
    cond: Callable[[], Any],
    timeout: float,
    what: str,
    job: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); fail after ``timeout`` s.

    With ``job`` (a driver process), fail early when it exits first.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the driver exited ({job.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# The fault app: plan, handshake, markers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    """One Arrow batch seen by the pace UDF: phase, Python worker pid, partition, attempt."""

    phase: str
    pid: int
    partition: int
    attempt: int
    batch: int
    mtime: float


_MARKER = re.compile(r"^(?P<phase>\w+)-(?P<pid>\d+)-p(?P<part>\d+)-a(?P<att>\d+)-(?P<n>\d+)$")


class AppControl:
    """The test's side of ``fault_apps/classify.py``: its plan, phase handshake and markers.

    Example:
        >>> ctl = AppControl(tmp_path)
        >>> plan = ctl.write_plan(models={"m": uri}, phases=[{"name": "clean", ...}])
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ctl = root / "ctl"
        self.markers_dir = root / "markers"
        self.ctl.mkdir(parents=True, exist_ok=True)
        self.markers_dir.mkdir(parents=True, exist_ok=True)

    def write_plan(
        self, models: Mapping[str, str], phases: list[dict[str, Any]], *, partitions: int = 8
    ) -> Path:
        """Write the app's plan (JSON) and return its path (the app's only argument)."""
        plan = {
            "input": str(TEXTS),
            "partitions": partitions,
            "ctl": str(self.ctl),
            "markers": str(self.markers_dir),
            "models": dict(models),
            "phases": phases,
        }
        path = self.root / "plan.json"
        path.write_text(json.dumps(plan, indent=2))
        return path

    def wait_ready(self, phase: str, job: subprocess.Popen, timeout: float = 300) -> None:
        """Wait until the app waits for ``go`` before ``phase``."""
        wait_for(
            lambda: (self.ctl / f"{phase}.ready").exists(),
            timeout,
            f"phase {phase} to get ready",
            job,
            interval=0.1,
        )

    def go(self, phase: str) -> None:
        """Let the app start ``phase``."""
        (self.ctl / f"{phase}.go").touch()

    def done(self, phase: str) -> dict[str, Any] | None:
        """The outcome of ``phase`` (``ok``, ``error``, ``seconds``), or None while it runs."""
        path = self.ctl / f"{phase}.done"
        return json.loads(path.read_text()) if path.exists() else None

    def wait_done(self, phase: str, job: subprocess.Popen, timeout: float = 300) -> dict[str, Any]:
        """Wait for the outcome of ``phase``."""
        return wait_for(
            lambda: self.done(phase), timeout, f"phase {phase} to end", job, interval=0.1
        )

    def markers(self, phase: str) -> list[Marker]:
        """The batches of ``phase`` seen so far, oldest first."""
        found = []
        for entry in os.scandir(self.markers_dir):
            m = _MARKER.match(entry.name)
            if m and m["phase"] == phase:
                with contextlib.suppress(FileNotFoundError):
                    found.append(
                        Marker(
                            phase,
                            int(m["pid"]),
                            int(m["part"]),
                            int(m["att"]),
                            int(m["n"]),
                            entry.stat().st_mtime,
                        )
                    )
        return sorted(found, key=lambda mk: mk.mtime)


# ---------------------------------------------------------------------------------------------
# Processes (/proc, Linux)
# ---------------------------------------------------------------------------------------------
def cmdline(pid: int) -> str:
    """The command line of ``pid`` (arguments joined by spaces; empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def parent(pid: int) -> int | None:
    """The parent pid of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2 :].split()[1])


def has_torch(pid: int) -> bool:
    """Whether ``pid`` has torch's native library mapped (it imported torch: it runs a model)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def sigkill(pid: int) -> None:
    """SIGKILL one process (not its group)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def executor_logs(work_dir: Path) -> str:
    """Every executor's stderr under a standalone cluster's work dir (worker-*/app-*/N/stderr)."""
    texts = []
    for path in sorted(work_dir.glob("worker-*/app-*/*/stderr")):
        with contextlib.suppress(OSError):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def spark_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``hfspark.testing.cluster.submit`` gives a driver, for a driver we kill ourselves."""
    from hfspark.session import worker_env
    from hfspark.testing.cluster import LOOPBACK, spark_home

    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env.update(worker_env(), SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=LOOPBACK)
    env.update(extra or {})
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook: the child gets SIGTERM when this (main) thread dies (Linux)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return lambda: libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


def launch(cmd: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (one ``killpg`` takes the whole driver).

    Its output goes to ``log``; it gets SIGTERM if the test process dies first.
    """
    with open(log, "wb") as sink:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (the spark-submit JVM and its Python driver) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# The model store: moto S3 behind a proxy the test switches off and on
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """moto's S3 server on 127.0.0.1 (a real HTTP S3 API) with one bucket, as a context manager.

    Example:
        >>> with MotoS3("models") as s3:
        ...     save_model(folder, "s3://models/m", storage_options=s3.storage_options)
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options of this store."""
        return {
            "endpoint_url": self.url,
            "key": "testing",
            "secret": "testing",
            "skip_instance_cache": True,
        }

    def __enter__(self) -> MotoS3:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self._server._server.server_close()  # stop() leaves the listening socket open


class StoreProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port`` that is down (refusing) until :meth:`up`.

    :meth:`down` closes the listening socket *and* cuts every open connection, so clients
    with pooled keep-alive connections see the outage too. ``port`` stays the same.

    Example:
        >>> proxy = StoreProxy(s3.port)      # executors use http://127.0.0.1:{proxy.port}
        >>> proxy.up(); proxy.down(); proxy.close()
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The endpoint URL clients use."""
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Accept connections and forward them to the target."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    close = down

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                target = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                target.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    target.close()
                    return
                self._open |= {client, target}
                self.connections += 1
            for a, b in ((client, target), (target, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open -= {src, dst}


# ---------------------------------------------------------------------------------------------
# Unwritable outputs (root: mount a small tmpfs, or a read-only bind mount)
# ---------------------------------------------------------------------------------------------
def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False)


def can_mount() -> str | None:
    """None when this process may mount (root, mount allowed), else the reason it may not."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    probe = Path(f"/tmp/hfspark-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        got = _run("mount", "-t", "tmpfs", "-o", "size=64k", "hfspark-probe", str(probe))
        if got.returncode != 0:
            return f"cannot mount a tmpfs: {got.stderr.strip()}"
        _run("umount", str(probe))
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _umount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))  # lazily, if a process still has files open there


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` (created) for the block; unmount after."""
    path.mkdir(parents=True, exist_ok=True)
    got = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "hfspark-fault", str(path))
    if got.returncode != 0:
        raise OSError(f"mount -t tmpfs {path}: {got.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


def fill(folder: Path) -> int:
    """Write ``folder/filler`` until the filesystem is full; returns the bytes written."""
    written, chunk = 0, b"\0" * 4096
    with open(folder / "filler", "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    while True:  # the last partial block too
        try:
            with open(folder / f"filler-{written}", "wb", buffering=0) as f:
                written += f.write(b"\0")
        except OSError:
            return written


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[Path]:
    """Make ``path`` read-only for everyone, root included (a read-only bind mount on itself)."""
    got = _run("mount", "--bind", str(path), str(path))
    if got.returncode != 0:
        raise OSError(f"mount --bind {path}: {got.stderr.strip()}")
    try:
        got = _run("mount", "-o", "remount,bind,ro", str(path))
        if got.returncode != 0:
            raise OSError(f"remount read-only {path}: {got.stderr.strip()}")
        yield path
    finally:
        _umount(path)


# ---------------------------------------------------------------------------------------------
# Reading results back (delta-rs) and comparing with a clean run
# ---------------------------------------------------------------------------------------------
def read_predictions(path: Path | str, column: str = "pred") -> pd.DataFrame:
    """``id``, ``label``, ``score`` of a Delta table, sorted by id, read with ``deltalake``."""
    from deltalake import DeltaTable

    df = DeltaTable(str(path)).to_pandas(columns=["id", column])
    out = pd.DataFrame(
        {
            "id": df["id"].astype("int64"),
            "label": [p["label"] for p in df[column]],
            "score": [float(p["score"]) for p in df[column]],
        }
    )
    return out.sort_values("id", ignore_index=True)


def table_version(path: Path | str) -> int:
    """The latest version of a Delta table (read with ``deltalake``)."""
    from deltalake import DeltaTable

    return DeltaTable(str(path)).version()


def assert_same_predictions(
    got: pd.DataFrame, clean: pd.DataFrame, what: str, atol: float = 1e-5
) -> None:
    """Same ids (none twice, none missing) and the same label and score per id as ``clean``.

    Scores may differ in the last float bits when rows are batched (padded) differently.
    """
    dups = got["id"][got["id"].duplicated()].tolist()
    assert not dups, f"{what}: {len(dups)} ids written more than once, e.g. {dups[:5]}"
    missing = sorted(set(clean["id"]) - set(got["id"]))
    extra = sorted(set(got["id"]) - set(clean["id"]))
    assert not missing and not extra, (
        f"{what}: {len(missing)} ids missing (e.g. {missing[:5]}), "
        f"{len(extra)} unexpected (e.g. {extra[:5]})"
    )
    merged = clean.merge(got, on="id", suffixes=("_clean", "_got"))
    wrong = merged[merged["label_clean"] != merged["label_got"]]
    assert wrong.empty, f"{what}: {len(wrong)} labels differ from the clean run:\n{wrong.head()}"
    diff = (merged["score_clean"] - merged["score_got"]).abs()
    assert diff.max() <= atol, f"{what}: scores differ from the clean run by up to {diff.max()}"


def job_reason(error: str) -> str:
    """The one-line reason ``hfspark run`` prints for an error the fault app recorded.

    ``error`` is ``"<ExceptionType>: <str(exception)>"`` (as the app writes it); the exception
    is rebuilt with the same type name and text and given to ``hfspark.jobs.runner.one_line``.
    """
    from hfspark.jobs.runner import one_line

    name, _, text = error.partition(": ")
    return one_line(type(name, (Exception,), {})(text))
