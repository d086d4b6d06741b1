"""Ctrl-C and SIGTERM during a job: cancel the Spark jobs, stop cleanly, keep the report.

PySpark's own SIGINT handler raises ``KeyboardInterrupt`` wherever the driver happens to be,
often inside a Py4J socket read, which then fails again (``reentrant call inside
<_io.BufferedReader>``) and prints several tracebacks. While a job runs, :class:`StopOnSignal`
replaces it: the first SIGINT or SIGTERM only records the signal and cancels the running
Spark jobs from another thread; the blocked Spark call then returns with an error, and the
runner marks the run ``interrupted`` (exit code 130 for SIGINT, 143 for SIGTERM). A second
signal falls back to Python's default behaviour.

Example:
    >>> with StopOnSignal(spark) as stop:
    ...     for chunk in chunks:
    ...         stop.check()            # raises JobInterrupted after a signal
    ...         process(chunk)
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from hfspark.errors import JobInterrupted

__all__ = ["StopOnSignal"]

log = logging.getLogger("hfspark.jobs")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """A context manager that turns SIGINT/SIGTERM into a clean stop of the Spark work.

    Outside the main thread (where Python does not deliver signals) it does nothing.
    """

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def stopped(self) -> bool:
        """Whether a signal arrived."""
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`~hfspark.errors.JobInterrupted` if a signal arrived."""
        if self.signum is not None:
            raise JobInterrupted(f"stopped by {signal.Signals(self.signum).name}", self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # a second signal: stop waiting for a clean stop
            signal.signal(
                signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler
            )
            signal.raise_signal(signum)
            return
        self.signum = signum
        log.warning(
            "hfspark: %s received: cancelling the Spark jobs (send it again to force)",
            signal.Signals(signum).name,
        )
        threading.Thread(target=self._cancel, name="hfspark-cancel", daemon=True).start()

    def _cancel(self) -> None:
        try:
            self.spark.sparkContext.cancelAllJobs()
        except Exception:  # noqa: BLE001 - Spark Connect: interrupt the session's operations
            try:
                self.spark.interruptAll()
            except Exception:  # noqa: BLE001
                log.debug("could not cancel the Spark jobs", exc_info=True)
