"""Driver-side progress: a tqdm bar on a terminal, plain periodic log lines otherwise.

Rows are counted when a chunk commits; while a chunk runs, the share of its Spark tasks
that finished (from the status tracker) moves the bar or the log line in between.

Example:
    >>> with Progress(total=1000, initial=200, mode="log") as p:
    ...     p.advance(rows=300, errors=2)
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "spark_task_fraction"]

log = logging.getLogger("hfspark.jobs")


class Progress:
    """Rows done out of a total, with rows/s, ETA and errors so far.

    Args:
        total: every input row (already written ones included).
        initial: rows written before this run (a resumed run starts there).
        mode: ``bar`` (tqdm), ``log`` (a line every ``log_every_s``), ``off``, or ``auto``
            (a bar when stderr is a terminal, else log lines).
        log_every_s: seconds between log lines.
        live: returns the running chunk's finished share (0..1) for in-chunk updates.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        mode: str = "auto",
        log_every_s: float = 10.0,
        live: Callable[[], float | None] | None = None,
    ) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.total, self.initial = total, initial
        self.done, self.errors = initial, 0
        self.chunk_rows = 0
        self.log_every_s = log_every_s
        self.live = live
        self.started = time.monotonic()
        self._last_log = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="rows",
                dynamic_ncols=True,
                file=sys.stderr,
                desc="inference",
            )
            self._bar.set_postfix(errors=0)
        self._thread: threading.Thread | None = None
        if mode != "off" and live is not None:
            self._thread = threading.Thread(target=self._poll, name="hfspark-progress", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ updates
    def start_chunk(self, rows: int) -> None:
        """A chunk of ``rows`` rows starts (for in-chunk estimates)."""
        with self._lock:
            self.chunk_rows = rows

    def advance(self, rows: int, errors: int = 0) -> None:
        """A chunk committed ``rows`` rows with ``errors`` row errors."""
        with self._lock:
            self.done += rows
            self.errors += errors
            self.chunk_rows = 0
            if self._bar is not None:
                self._bar.n = self.done
                self._bar.set_postfix(errors=self.errors)
                self._bar.refresh()
            elif self.mode == "log":
                self._log(self.done, force=True)

    def rate(self) -> float:
        """Rows per second in this run."""
        elapsed = time.monotonic() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self, done: int | None = None) -> str:
        """The text of a progress log line."""
        done = self.done if done is None else done
        rate = (done - self.initial) / max(time.monotonic() - self.started, 1e-9)
        left = self.total - done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        pct = 100.0 * done / self.total if self.total else 100.0
        return (
            f"progress: {done}/{self.total} rows ({pct:.1f}%), {rate:.1f} rows/s, "
            f"ETA {eta}, errors {self.errors}"
        )

    def _log(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.info(self.line(done))

    def _poll(self) -> None:
        interval = 1.0 if self.mode == "bar" else self.log_every_s
        while not self._stop.wait(interval):
            try:
                share = self.live() if self.live else None
            except Exception:  # noqa: BLE001 - progress must never break a job
                share = None
            with self._lock:
                estimate = self.done + int((share or 0.0) * self.chunk_rows)
                if self._bar is not None:
                    self._bar.n = estimate
                    self._bar.refresh()
                elif self.mode == "log":
                    self._log(estimate)

    def close(self) -> None:
        """Stop updates; a last log line in ``log`` mode."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            elif self.mode == "log":
                self._log(self.done, force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spark_task_fraction(spark: Any, group: Callable[[], str | None]) -> Callable[[], float | None]:
    """A ``live`` function: finished share of the tasks of the current job group's stages."""
    try:
        tracker = spark.sparkContext.statusTracker()
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return lambda: None

    def share() -> float | None:
        name = group()
        if not name:
            return None
        done = total = 0
        for job_id in tracker.getJobIdsForGroup(name):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None:
                    done += stage.numCompletedTasks
                    total += stage.numTasks
        return min(done / total, 0.99) if total else None

    return share
