"""Spark servers on loopback from the pyspark wheel: a standalone cluster, a Connect server, submit.

Everything runs the Spark inside the ``pyspark`` package, binds 127.0.0.1 only and lets the OS
pick every port (``--port 0``, read back from the logs: clusters side by side never collide).
Each process gets its own session (process group) and is stopped by group even when the caller
fails: context managers, an ``atexit`` fallback and (Linux, main thread) a parent-death signal.
Logs go to ``<work_dir>/logs/<name>.log``; start-up errors quote their tail. The Delta jars are
not on the workers' classpath: each driver passes them with ``--jars`` and Spark ships them.

Example:
    >>> from hfspark.testing.cluster import StandaloneCluster, submit
    >>> with StandaloneCluster(workers=2) as cluster:          # doctest: +SKIP
    ...     done = submit("job.py", ["/tmp/out"], master=cluster.master_url, check=True)
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import ctypes.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any, Self

from hfspark.errors import ClusterError

__all__ = [
    "QUICK_JVM_OPTS",
    "ClusterError",
    "StandaloneCluster",
    "ConnectServer",
    "submit",
    "submit_command",
    "spark_home",
    "process_tree",
    "still_running",
]

LOOPBACK = "127.0.0.1"
# C1 JIT only, one GC thread: half the CPU time of short runs on small machines (tests), slower
# long JVM-heavy jobs. Pass env={"JAVA_TOOL_OPTIONS": QUICK_JVM_OPTS}: executors inherit it too.
QUICK_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:CICompilerCount=1"
_CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
_LIVE: dict[int, subprocess.Popen] = {}  # pid (= process group id) -> process, for atexit


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package (has ``bin/`` and ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).parent


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """Environment of every Spark process: venv Python workers, loopback, this Spark home."""
    from hfspark.session import worker_env

    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env.update(worker_env(), SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=LOOPBACK)
    env.setdefault("SPARK_DAEMON_MEMORY", "512m")  # master and worker JVMs need little
    env.update(extra or {})
    return env


def _driver_conf(conf: Mapping[str, Any] | None) -> tuple[list[str], dict[str, str]]:
    """Jars and settings of a driver: hfspark's session conf, loopback, venv Python, user conf."""
    from hfspark.session import spark_conf

    user = {k: str(v) for k, v in (conf or {}).items()}
    user_jars = [j for j in user.pop("spark.jars", "").split(",") if j]
    merged = spark_conf(
        {
            "spark.driver.host": LOOPBACK,
            "spark.driver.bindAddress": LOOPBACK,
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
            **user,
        }
    )
    return merged.pop("spark.jars").split(",") + user_jars, merged


def _conf_args(conf: Mapping[str, str]) -> list[str]:
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook: the child gets SIGTERM when this thread dies (Linux, main thread only)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None  # PR_SET_PDEATHSIG fires when the *thread* that forked exits
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return lambda: libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


def _launch(cmd: Sequence[str], env: Mapping[str, str], log: Path | None) -> subprocess.Popen:
    """Start ``cmd`` in a new session; output to ``log`` (or pipes when None)."""
    with open(log, "ab") if log else nullcontext() as sink:  # the child keeps its own copy
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=sink or subprocess.PIPE,
            stderr=subprocess.STDOUT if sink else subprocess.PIPE,
            text=sink is None,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    if not _LIVE:  # (dict operations are atomic: no lock needed)
        atexit.unregister(_stop_leftovers)
        atexit.register(_stop_leftovers)
    _LIVE[proc.pid] = proc
    return proc


def _stop_leftovers() -> None:
    """atexit fallback: stop every process group this interpreter started and did not stop."""
    _stop(list(_LIVE.values()), grace=5.0)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process from /proc, or None when it is gone."""
    with suppress(OSError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (command name) "
        return fields[0], int(fields[1]), int(fields[19])
    return None


def process_tree(roots: Sequence[int]) -> dict[int, int]:
    """Every live process among ``roots`` and their descendants, as pid -> start time (Linux).

    Example:
        >>> tree = process_tree([os.getpid()])    # this process and its descendants
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit() and (st := _stat(int(entry.name))):
            children.setdefault(st[1], []).append(int(entry.name))
    tree: dict[int, int] = {}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if pid not in tree and st is not None and st[0] != "Z":
            tree[pid] = st[2]
            todo.extend(children.get(pid, []))
    return tree


def still_running(tree: Mapping[int, int]) -> list[int]:
    """The pids of ``tree`` (from :func:`process_tree`) still alive, not reused, not zombies.

    Example:
        >>> tree = cluster.process_tree(); cluster.stop()    # doctest: +SKIP
        >>> still_running(tree)                               # doctest: +SKIP
        []
    """
    return [
        pid
        for pid, started in tree.items()
        if (st := _stat(pid)) is not None and st[0] != "Z" and st[2] == started
    ]


def _killpg(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(proc: subprocess.Popen, timeout: float) -> None:
    with suppress(subprocess.TimeoutExpired):
        proc.wait(max(timeout, 0.1))


def _stop(procs: Sequence[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM each process group, SIGKILL after ``grace`` s, then any descendant that escaped."""
    tree = process_tree([p.pid for p in procs])
    live = [p for p in procs if p.poll() is None]  # a reaped leader's pid may belong to others
    for proc in live:
        _killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in live:
        _reap(proc, deadline - time.monotonic())
    for proc in live:
        _killpg(proc.pid, signal.SIGKILL)  # also members left in a group whose leader exited
        _reap(proc, 10.0)
    deadline = time.monotonic() + 5.0  # pyspark daemons (own group) exit when their JVM is gone
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in still_running(tree):
        os.kill(pid, signal.SIGKILL)
    for proc in procs:
        _LIVE.pop(proc.pid, None)


def _tail(text: str | Path | None, lines: int = 40) -> str:
    if isinstance(text, Path):
        text = text.read_text(errors="replace") if text.exists() else "(no log)"
    return "\n".join((text or "").splitlines()[-lines:])


def _wait_log(
    proc: subprocess.Popen, log: Path, pattern: str, what: str, timeout: float
) -> re.Match:
    """Wait until ``pattern`` shows up in ``log``; fail early when the process exits."""
    deadline = time.monotonic() + timeout
    while not (match := re.search(pattern, log.read_text(errors="replace"))):
        if proc.poll() is not None:
            raise ClusterError(
                f"{what} exited with code {proc.returncode} while starting; "
                f"log {log}:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not start in {timeout:.0f}s; log {log}:\n{_tail(log)}")
        time.sleep(0.2)
    return match


class _Servers:
    """What both servers share: work dir, launching, stopping, the context manager."""

    name = "spark"

    def __init__(
        self, work_dir: str | Path | None, start_timeout: float, env: Mapping[str, str] | None
    ) -> None:
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix=f"hfspark-{self.name}-"))
        self.start_timeout = start_timeout
        self.env = _env(env)
        self._procs: list[subprocess.Popen] = []
        self._failed = False

    def _launch(self, what: str, cmd: Sequence[str]) -> tuple[subprocess.Popen, Path]:
        log = self.work_dir / "logs" / f"{what}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        self._procs.append(_launch(cmd, self.env, log))
        return self._procs[-1], log

    def _start(self) -> None:  # start the processes, wait until ready
        raise NotImplementedError

    def start(self) -> Self:
        """Start every process and wait until ready; on failure stop them all and raise."""
        try:
            self._start()
        except BaseException:
            self._failed = True  # keep the logs of a failed start
            self.stop()
            raise
        return self

    def process_tree(self) -> dict[int, int]:
        """Every live process started here and its descendants (executors, Python workers)."""
        return process_tree([p.pid for p in self._procs])

    def stop(self) -> None:
        """Stop everything started here (process groups, then stray descendants); idempotent."""
        _stop(list(reversed(self._procs)))
        if self._own_dir and not self._failed:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandaloneCluster(_Servers):
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, as a context manager.

    Args:
        workers: number of worker processes.
        cores: cores each worker offers (one executor per worker and application).
        memory: memory each worker offers to executors (``spark.executor.memory`` is 1g).
        work_dir: logs and executor folders; a temporary folder (removed on stop) if None.
        start_timeout: seconds to wait for the master and until every worker is ALIVE.
        env: extra environment for the master, the workers and their executors.

    Example:
        >>> with StandaloneCluster(workers=2) as cluster:                  # doctest: +SKIP
        ...     print(cluster.master_url)               # spark://127.0.0.1:40123
        ...     cluster.kill_worker(0)                  # SIGKILL worker 0 and its executor
    """

    name = "cluster"

    def __init__(
        self,
        workers: int = 2,
        *,
        cores: int = 1,
        memory: str = "2g",
        work_dir: str | Path | None = None,
        start_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(work_dir, start_timeout, env)
        self.workers, self.cores, self.memory = workers, cores, memory
        self._url: str | None = None
        self.web_url = ""  # the master's web UI, http://127.0.0.1:PORT (/json/ is its state)
        self._workers: list[tuple[subprocess.Popen, Path, int]] = []  # process, log, RPC port

    def _start(self) -> None:
        klass = str(spark_home() / "bin" / "spark-class")
        opts = f"{self.env.get('SPARK_MASTER_OPTS', '')} -Dspark.master.rest.enabled=false"
        self.env["SPARK_MASTER_OPTS"] = opts.strip()  # else its REST server takes port 6066
        proc, log = self._launch(
            "master",
            [
                klass,
                "org.apache.spark.deploy.master.Master",
                "--host",
                LOOPBACK,
                "--port",
                "0",
                "--webui-port",
                "0",
            ],
        )
        match = _wait_log(
            proc,
            log,
            r"(?s)Spark master at (spark://\S+).*'MasterUI' on port (\d+)",
            "the Spark master",
            self.start_timeout,
        )
        self._url, self.web_url = match[1], f"http://{LOOPBACK}:{match[2]}"
        started = [
            self._launch(
                f"worker-{i}",
                [
                    klass,
                    "org.apache.spark.deploy.worker.Worker",
                    self._url,
                    "--host",
                    LOOPBACK,
                    "--port",
                    "0",
                    "--webui-port",
                    "0",
                    "--cores",
                    str(self.cores),
                    "--memory",
                    self.memory,
                    "--work-dir",
                    str(self.work_dir / f"worker-{i}"),
                ],
            )
            for i in range(self.workers)
        ]
        for i, (wproc, wlog) in enumerate(started):
            port = _wait_log(
                wproc,
                wlog,
                r"service 'sparkWorker' on port (\d+)",
                f"Spark worker {i}",
                self.start_timeout,
            )[1]
            self._workers.append((wproc, wlog, int(port)))
        deadline, want = time.monotonic() + self.start_timeout, {p for *_, p in self._workers}
        while True:  # until the master lists every worker ALIVE
            for i, (proc, log, _) in enumerate(self._workers):
                if proc.poll() is not None:
                    raise ClusterError(
                        f"Spark worker {i} exited with code {proc.returncode}; "
                        f"log {log}:\n{_tail(log)}"
                    )
            alive = {w["port"] for w in self.status()["workers"] if w["state"] == "ALIVE"}
            if want <= alive:
                return
            if time.monotonic() > deadline:
                log = self.work_dir / "logs" / "master.log"
                raise ClusterError(
                    f"only {len(want & alive)} of {len(want)} workers are ALIVE "
                    f"after {self.start_timeout:.0f}s; log {log}:\n{_tail(log)}"
                )
            time.sleep(0.25)

    @property
    def master_url(self) -> str:
        """The master's URL, ``spark://127.0.0.1:PORT`` (for ``--master``)."""
        if self._url is None:
            raise ClusterError("the cluster is not started: use it in a with block or call start()")
        return self._url

    def status(self) -> dict[str, Any]:
        """The master's JSON state: ``workers`` (``port``, ``state``...), ``completedapps``..."""
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"{self.web_url or self.master_url}/json/", timeout=10) as response:
            return json.load(response)

    def worker_pids(self) -> list[int]:
        """The process ids of the worker JVMs, in start order (also those already killed)."""
        return [proc.pid for proc, _, _ in self._workers]

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to worker ``index``'s process group: the worker and its executors.

        With SIGKILL this is a lost machine: its running tasks fail and Spark reschedules them
        on the other workers (the executors' Python workers exit when their JVM is gone).
        """
        proc = self._workers[index][0]
        if proc.poll() is None:  # not yet reaped: its pid is still its group's id
            _killpg(proc.pid, sig)
            _reap(proc, 10.0 if sig == signal.SIGKILL else 0.0)


class ConnectServer(_Servers):
    """A Spark Connect server on 127.0.0.1 with Delta Lake, as a context manager.

    Args:
        master: where the server runs its jobs (``local[2]`` or a ``spark://`` URL).
        port: the gRPC port; 0 lets the OS choose (read it back from :attr:`url`).
        conf: extra Spark settings for the server (over :func:`hfspark.session.spark_conf`).
        work_dir: the log folder; a temporary folder (removed on stop) if None.
        start_timeout: seconds to wait until a client session runs a query.
        env: extra environment for the server.

    Example:
        >>> with ConnectServer(conf={"spark.driver.memory": "1g"}) as server:  # doctest: +SKIP
        ...     spark = SparkSession.builder.remote(server.url).getOrCreate()
    """

    name = "connect"

    def __init__(
        self,
        *,
        master: str = "local[2]",
        port: int = 0,
        conf: Mapping[str, Any] | None = None,
        work_dir: str | Path | None = None,
        start_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(work_dir, start_timeout, env)
        self.master, self.port, self.conf = master, port, dict(conf or {})
        self._url: str | None = None

    def _start(self) -> None:
        jars, conf = _driver_conf(
            {
                "spark.connect.grpc.binding.address": LOOPBACK,
                "spark.connect.grpc.binding.port": self.port,
                **self.conf,
            }
        )
        proc, log = self._launch(
            "connect",
            [
                str(spark_home() / "bin" / "spark-submit"),
                "--class",
                _CONNECT_CLASS,
                "--master",
                self.master,
                "--name",
                "hfspark-connect",
                "--jars",
                ",".join(jars),
                *_conf_args(conf),
                "spark-internal",
            ],
        )
        match = _wait_log(
            proc,
            log,
            r"Spark Connect server started at: (\S+):(\d+)",
            "the Spark Connect server",
            self.start_timeout,
        )
        self.port, self._url = int(match[2]), f"sc://{LOOPBACK}:{match[2]}"
        from pyspark.sql import SparkSession

        deadline = time.monotonic() + self.start_timeout
        while True:  # until the port accepts connections and a fresh client session runs a query
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=2).close()
                saved_mode = os.environ.get("SPARK_CONNECT_MODE_ENABLED")
                try:  # a Connect client sets this for good: classic sessions would then fail
                    session = SparkSession.builder.remote(self.url).create()
                    try:
                        session.range(1).collect()
                    finally:
                        session.stop()
                finally:
                    if saved_mode is None:
                        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
                return
            except Exception as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(
                        f"the Spark Connect server at {self.url} does not answer "
                        f"({e}); log {log}:\n{_tail(log)}"
                    ) from e
                time.sleep(0.5)

    @property
    def url(self) -> str:
        """The client URL, ``sc://127.0.0.1:PORT`` (for ``SparkSession.builder.remote``)."""
        if self._url is None:
            raise ClusterError("the server is not started: use it in a with block or call start()")
        return self._url


def submit_command(
    app: str | Path,
    args: Sequence[str] = (),
    *,
    master: str = "local[2]",
    conf: Mapping[str, Any] | None = None,
    py_files: Sequence[str | Path] = (),
    name: str | None = None,
) -> list[str]:
    """The ``spark-submit`` command line that :func:`submit` runs (same arguments)."""
    jars, merged = _driver_conf(conf)
    cmd = [
        str(spark_home() / "bin" / "spark-submit"),
        "--master",
        master,
        "--name",
        name or Path(app).stem,
        "--jars",
        ",".join(jars),
    ]
    if py_files:
        cmd += ["--py-files", ",".join(str(p) for p in py_files)]
    return cmd + _conf_args(merged) + [str(app), *map(str, args)]


def submit(
    app: str | Path,
    args: Sequence[str] = (),
    *,
    master: str = "local[2]",
    conf: Mapping[str, Any] | None = None,
    py_files: Sequence[str | Path] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    name: str | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a PySpark application with pyspark's bundled ``spark-submit`` (client mode).

    The driver gets the Delta jars (``--jars``; Spark ships them to the executors), hfspark's
    session conf, loopback driver addresses and this interpreter as Python (driver and workers).

    Args:
        app: the Python file to run.
        args: its command-line arguments.
        master: ``local[N]`` or a cluster's ``master_url``.
        conf: extra Spark settings (a ``spark.jars`` here is added to the Delta jars).
        py_files: ``.py``/``.zip`` files shipped to the executors.
        env: extra environment for the driver.
        timeout: seconds before the driver's process group is killed and ClusterError raised.
        name: the application name (default: the file's stem).
        check: raise ClusterError, with the output tails, when the exit code is not 0.

    Returns:
        The finished process: ``stdout`` has the app's output *and* its Python tracebacks
        (Spark's PythonRunner merges them), ``stderr`` Spark's log.

    Example:
        >>> submit("job.py", ["/tmp/out"], master=cluster.master_url, check=True)  # doctest: +SKIP
    """
    cmd = submit_command(app, args, master=master, conf=conf, py_files=py_files, name=name)
    proc = _launch(cmd, _env(env), log=None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as e:
        _stop([proc], grace=5.0)
        out, err = proc.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise ClusterError(
                f"spark-submit {app} did not finish in {timeout:.0f}s; stdout "
                f"tail:\n{_tail(out, 20)}\nstderr tail:\n{_tail(err)}"
            ) from e
        raise
    finally:
        _LIVE.pop(proc.pid, None)
    if check and proc.returncode != 0:
        raise ClusterError(
            f"spark-submit {app} exited with code {proc.returncode}; stdout "
            f"tail:\n{_tail(out, 20)}\nstderr tail:\n{_tail(err)}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def main(argv: Sequence[str] | None = None) -> None:
    """Start a standalone cluster, print how to submit to it, and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m hfspark.testing.cluster", description=main.__doc__
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="2g", help="executor memory per worker")
    parser.add_argument("--work-dir", help="logs and executor folders (default: a temp folder)")
    parser.add_argument("--quick-jvm", action="store_true", help="JVM options for quick starts")
    opts = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and `kill` stop it (also in background)
        signal.signal(sig, signal.default_int_handler)
    env = {"JAVA_TOOL_OPTIONS": QUICK_JVM_OPTS} if opts.quick_jvm else None
    with StandaloneCluster(
        opts.workers, cores=opts.cores, memory=opts.memory, work_dir=opts.work_dir, env=env
    ) as cluster:
        command = shlex.join(submit_command("your_job.py", master=cluster.master_url))
        print(
            f"master:  {cluster.master_url}\nweb UI:  {cluster.web_url}\nlogs:    "
            f"{cluster.work_dir / 'logs'}\nsubmit:  {command}\nCtrl-C stops it",
            flush=True,
        )
        with suppress(KeyboardInterrupt):
            while cluster._procs[0].poll() is None:
                time.sleep(1)
        print("stopping the cluster", file=sys.stderr)


if __name__ == "__main__":
    main()
