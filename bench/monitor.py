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
from pathlib import Path
from types import TracebackType

__all__ = ["FileOpens", "WorkerMemory", "proc_hwm_mib", "python_workers"]

_IN_OPEN = 0x20
_IN_NONBLOCK = 0o4000


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def python_workers(root: int | None = None) -> list[int]:
    """PIDs of PySpark Python worker processes under ``root`` (default: this process).

    In daemon mode the workers are forked children of ``pyspark.daemon`` (same command line);
    the daemon itself only forks, so it is left out.
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

    out = []
    for pid in pids:
        line = cmd[pid]
        if "pyspark.worker" in line or (
            "pyspark.daemon" in line and "pyspark.daemon" in cmd.get(parent[pid], "")
        ):
            if under_root(pid):
                out.append(pid)
    return sorted(out)


def proc_hwm_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a process in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class WorkerMemory:
    """Poll PySpark Python workers while a job runs; keep each one's peak RSS."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-rss")

    @property
    def pids(self) -> list[int]:
        """Every worker seen during the job."""
        return sorted(self.peaks)

    def _poll(self) -> None:
        for pid in python_workers():
            hwm = proc_hwm_mib(pid)
            if hwm is not None:
                self.peaks[pid] = max(hwm, self.peaks.get(pid, 0.0))

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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()


class FileOpens:
    """Count opens of one file with inotify (Linux); ``count`` is None where unsupported."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count: int | None = None
        self._fd = -1
        self._libc = None

    def _drain(self) -> int:
        n = 0
        while True:
            ready, _, _ = select.select([self._fd], [], [], 0)
            if not ready:
                return n
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return n
            pos = 0
            while pos + 16 <= len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, pos)
                if mask & _IN_OPEN:
                    n += 1
                pos += 16 + length

    def __enter__(self) -> FileOpens:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK)
            if fd < 0 or libc.inotify_add_watch(fd, str(self.path).encode(), _IN_OPEN) < 0:
                return self
        except (OSError, AttributeError):
            return self
        self._fd, self._libc, self.count = fd, libc, 0
        self._drain()
        return self

    def poll(self) -> int | None:
        """Read pending events; returns the count so far."""
        if self._fd >= 0 and self.count is not None:
            self.count += self._drain()
        return self.count

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.poll()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
