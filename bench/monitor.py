"""What a job costs besides time: peak memory of each Python worker, and model loads.

* :class:`WorkerMemory` polls ``/proc`` for PySpark Python workers (processes running
  ``pyspark.daemon``/``pyspark.worker`` whose parent is one too, or ``pyspark.worker``
  alone) and keeps each one's ``VmHWM`` (peak resident set). Polling also catches workers
  that exit before the job ends.
* :class:`FileOpens` counts ``open()`` calls on a weights file with Linux inotify: every
  model load opens its ``model.safetensors`` once, whoever loads it (hfspark, MLflow or
  a tutorial pipeline), so the count is measured the same way for every system.

Example:
    >>> with WorkerMemory() as mem, FileOpens(weights) as opens:
    ...     df.write.format("noop").mode("overwrite").save()
    >>> mem.peak_mib(), len(mem.pids), opens.count
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time
from pathlib import Path
from types import TracebackType

__all__ = ["FileOpens", "WorkerMemory", "proc_hwm_mib", "proc_pss_mib", "python_workers"]

_IN_OPEN = 0x20
_IN_CLOSE = 0x08 | 0x10  # IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
_IN_NONBLOCK = 0o4000


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        )
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


#: daemon modules whose forked children are the workers (PySpark's and hfspark's).
_DAEMONS = ("pyspark.daemon", "hfspark.udfs.daemon")
#: hfspark's zygote (hfspark.udfs.zygote): its forks are the daemons, their forks the workers
_ZYGOTE = "hfspark.udfs.zygote"


def _python_tree(root: int | None) -> tuple[list[int], list[int]]:
    """(workers, daemon side) of the PySpark Python processes under ``root``.

    A worker is a fork of a daemon (``pyspark.daemon`` or ``hfspark.udfs.daemon``, one
    command line for both), or a ``pyspark.worker`` started without one. With hfspark's
    zygote the daemon is the zygote's fork and the workers its forks (all three with the
    zygote's command line), while the process Spark launched only stands in. The daemon side
    (what the workers' shared pages belong to): daemons, the zygote, stand-ins.
    """
    root = os.getpid() if root is None else root
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    parent = {p: _ppid(p) for p in pids}
    cmd = {p: _cmdline(p) for p in pids}

    def under_root(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == root:
                return True
            pid, seen = parent.get(pid, -1), seen + 1
        return False

    def depth(pid: int, names: tuple[str, ...]) -> int:
        """How many of ``pid``'s ancestors in a row have one of ``names`` in their command."""
        k, up = 0, parent.get(pid, -1)
        while up > 1 and k < 64 and any(n in cmd.get(up, "") for n in names):
            k, up = k + 1, parent.get(up, -1)
        return k

    workers, daemons = [], []
    for pid in pids:
        line = cmd[pid]
        if _ZYGOTE in line:  # 0: the zygote, 1: a daemon, 2: a worker
            kind = "worker" if depth(pid, (_ZYGOTE,)) >= 2 else "daemon"
        elif any(n in line for n in _DAEMONS):
            kind = "worker" if depth(pid, _DAEMONS) else "daemon"
        elif "-m pyspark.worker" in line:
            kind = "worker"
        else:
            continue
        if under_root(pid):
            (workers if kind == "worker" else daemons).append(pid)
    return sorted(workers), sorted(daemons)


def python_workers(root: int | None = None) -> list[int]:
    """PIDs of PySpark Python worker processes under ``root`` (default: this process).

    In daemon mode the workers are forked children of ``pyspark.daemon`` or hfspark's
    ``hfspark.udfs.daemon`` (same command line), or of a daemon forked from hfspark's zygote;
    the daemons themselves only fork, so they are left out.
    """
    return _python_tree(root)[0]


def python_daemons(root: int | None = None) -> list[int]:
    """PIDs of the daemon side under ``root``: the PySpark daemons (plain or hfspark's), the
    zygote and the stand-ins Spark launched for its forks: what the workers fork from, which
    holds the pages the workers share."""
    return _python_tree(root)[1]


_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


def proc_hwm_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a process in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def proc_pss_mib(pid: int) -> tuple[float, float] | None:
    """(PSS, RSS) of a process now, in MiB, from ``/proc/<pid>/smaps_rollup`` (None: gone).

    PSS splits each shared page between the processes that map it, so the PSS of N workers
    adds up to the memory they really take together; RSS counts shared pages in full.
    """
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                values[key] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    if "Pss" not in values:
        return None
    return values["Pss"], values.get("Rss", 0.0)


class WorkerMemory:
    """Poll PySpark Python workers while a job runs; keep each one's peak RSS."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peaks: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-rss")

    @property
    def pids(self) -> list[int]:
        """Every worker seen during the job."""
        return sorted(self.peaks)

    def _poll(self) -> None:
        with self._lock:
            for pid in python_workers():
                hwm, cpu = proc_hwm_mib(pid), proc_cpu_s(pid)
                if hwm is not None:
                    self.peaks[pid] = max(hwm, self.peaks.get(pid, 0.0))
                if cpu is not None:
                    self.cpu[pid] = cpu

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds per worker now (for :meth:`cpu_since`)."""
        self._poll()
        with self._lock:
            return dict(self.cpu)

    def cpu_since(self, snapshot: dict[int, float]) -> float:
        """Worker CPU seconds used since ``snapshot`` (workers that exited count up to their
        last poll)."""
        self._poll()
        with self._lock:
            return sum(cpu - snapshot.get(pid, 0.0) for pid, cpu in self.cpu.items())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll()

    def peak_mib(self) -> float:
        """The largest peak RSS of any one worker (MiB), 0 if none was seen."""
        return max(self.peaks.values(), default=0.0)

    def __enter__(self) -> WorkerMemory:
        self._poll()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()


class FileOpens:
    """Count opens of one file with inotify (Linux); ``count`` is None where unsupported.

    A reader thread drains events as they come, and close events are watched too: inotify
    merges an event with an identical unread one just before it, so without both several
    opens in a row would count as one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count: int | None = None
        self._fd = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _drain(self, timeout: float) -> None:
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        pos, opened = 0, 0
        while pos + 16 <= len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, pos)
            opened += bool(mask & _IN_OPEN)
            pos += 16 + length
        with self._lock:
            self.count = (self.count or 0) + opened

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain(0.05)

    def __enter__(self) -> FileOpens:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK)
            if fd < 0:
                return self
            if libc.inotify_add_watch(fd, str(self.path).encode(), _IN_OPEN | _IN_CLOSE) < 0:
                os.close(fd)
                return self
        except (OSError, AttributeError):
            return self
        self._fd, self.count = fd, 0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-opens")
        self._thread.start()
        return self

    def poll(self) -> int | None:
        """The count so far (after reading pending events)."""
        if self._fd >= 0:
            time.sleep(0.1)  # let the reader thread catch up
        with self._lock:
            return self.count

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.poll()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
