"""A preloaded interpreter started beside the JVM, so a local session's daemon starts warm.

On a local master the Python daemon (:mod:`hfspark.udfs.daemon`) starts only after the JVM
is up and the first Python task is scheduled, and its ~7 s of imports (torch, transformers)
then sit on the first query's critical path. :func:`hfspark.session.local_spark` (and
:func:`hfspark.session.with_hfspark` on a local master) start this module as a process
*before* the JVM, with the environment Spark will give its daemons; it imports the same
modules while the JVM starts, then waits on a Unix socket the driver bound in a private
folder (a daemon that comes early waits in its backlog).

When Spark then launches ``python -m hfspark.udfs.daemon``, that process hands its stdin,
stdout and stderr (the JVM's pipes), environment, folder and arguments over the socket
(:func:`hfspark.udfs.daemon.hand_off`). The zygote forks a child that takes them over and runs PySpark's daemon
loop (``pyspark.daemon.manager()``, which forks the workers), already imported. The process
Spark started stays as a stand-in for its lifetime: it forwards SIGTERM to the real
daemon and exits when it does. Spark's protocol is untouched: the port goes out on the JVM's
stdout, worker kills and shutdown come in on its stdin.

The hand-off is refused, and the daemon preloads by itself as before, when anything an import
reads differs between the zygote and the daemon: the interpreter, or an environment variable
of the families torch, transformers, tokenizers, OpenMP/MKL, CUDA and Python's hash seed read
at import time (``HF_*``, ``TRANSFORMERS_*``, ``OMP_*``, ``PYTHONHASHSEED``, ...). The reason
goes to the workers' startup record (``fallback``). The zygote exits with the driver (a pipe
the driver holds), or after ``IDLE_S`` with no daemon to serve; ``HFSPARK_ZYGOTE=0`` turns
it off.

Example:
    >>> # started by hfspark.session; by hand:
    >>> #   python -m hfspark.udfs.zygote /tmp/hfspark-zygote-x/sock <token> <listen fd> <watch fd>
    >>> from hfspark.udfs.daemon import hand_off
    >>> hand_off()          # what the daemon calls first: False when there is no zygote to use
    False
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from hfspark.session import significant
from hfspark.udfs.daemon import HANDOFF_HEADER, preload, preload_modules, run_manager
from hfspark.udfs.startup import ZYGOTE_MARK_ENV

__all__ = ["IDLE_S", "main"]

#: seconds the zygote waits for a first daemon before it exits
IDLE_S = 300.0


def _refusal(req: dict[str, Any], fds: list[int], token: str, start_env: dict[str, str]) -> str | None:  # fmt: skip
    """Why the zygote will not become this daemon (None: it will)."""
    if req.get("token") != token:
        return "wrong token"
    if len(fds) != 3:
        return "no pipes"
    if req.get("executable") != sys.executable:
        return f"another Python ({req.get('executable')})"
    mine, theirs = significant(start_env), significant(req.get("env", {}))
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            return f"{key} differs (zygote {mine.get(key)!r}, daemon {theirs.get(key)!r})"
    return None


# ----------------------------------------------------------------------------- the zygote side
def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(conn, HANDOFF_HEADER.size, 3)
    if len(head) != HANDOFF_HEADER.size:
        raise ValueError("short header")
    (size,) = HANDOFF_HEADER.unpack(head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(min(65536, size - len(body)))
        if not chunk:
            raise ValueError("short request")
        body += chunk
    return json.loads(body), list(fds)


def _become_daemon(req: dict[str, Any], fds: list[int], modules: list[str], seconds: float) -> None:
    """In the forked child: take over the daemon's pipes and environment, run PySpark's loop."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ[ZYGOTE_MARK_ENV] = "1"
    os.chdir(req["cwd"])
    sys.argv = list(req["argv"])
    sys.path[:] = [*req["path"], *(p for p in sys.path if p not in req["path"])]
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    run_manager(modules, seconds)


def _serve(listener: socket.socket, watch_fd: int, token: str, start_env: dict[str, str], modules: list[str], seconds: float) -> None:  # fmt: skip
    served, started = 0, time.monotonic()
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        ready, _, _ = select.select([listener.fileno(), watch_fd], [], [], 1.0)
        if watch_fd in ready and not os.read(watch_fd, 1):
            return  # the driver is gone
        if not served and time.monotonic() - started > IDLE_S:
            return
        if listener.fileno() not in ready:
            continue
        conn, _ = listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(10)
            req, fds = _recv_request(conn)
            reason = _refusal(req, fds, token, start_env)
            if reason:
                conn.sendall(json.dumps({"refused": reason}).encode() + b"\n")
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child keeps conn open: its end closing tells the stand-in
                code = 0
                try:
                    listener.close()
                    os.close(watch_fd)
                    _become_daemon(req, fds, modules, seconds)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:  # noqa: BLE001 - never back into the zygote's loop
                    code = 1
                os._exit(code)
            served += 1
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except (OSError, ValueError):
            pass
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()


def main() -> None:
    """``python -m hfspark.udfs.zygote <socket path> <token> <listening fd> <watch fd>``."""
    path, token = sys.argv[1], sys.argv[2]
    listen_fd, watch_fd = int(sys.argv[3]), int(sys.argv[4])
    start_env = dict(os.environ)  # as started: imports add variables (torch's cache folders)
    listener = socket.socket(fileno=listen_fd)  # bound by the driver: early daemons wait in it
    code = 0
    try:
        modules = preload_modules()
        seconds = preload(modules)
        import pyspark.daemon  # noqa: F401 - what the forked daemon runs

        gc.collect()
        gc.freeze()  # keep the daemons' and workers' GC passes off the shared pages
        _serve(listener, watch_fd, token, start_env, modules, seconds)
    except BaseException as e:  # noqa: BLE001 - daemons that call find no zygote and preload
        sys.stderr.write(f"hfspark zygote: stopped ({type(e).__name__}: {e})\n")
        code = 1
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
        sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: some extension modules report "leaks" at exit


if __name__ == "__main__":
    main()
