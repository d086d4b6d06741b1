"""Jobs as MLflow runs: ``run.mlflow`` in a job conf logs the job to an MLflow tracking server.

What a run holds:

- **parameters**: the job conf (flattened, secrets already masked), and for each model step
  its URI (a ``models:/name@alias`` pinned to the version the job ran), task and weights hash;
- **metrics**: rows processed / written, errors, tokens, rows/s, tokens/s and time per phase,
  every ``log_every_s`` seconds while the job runs (``step`` = chunks committed) and at the end,
  plus per-chunk rows and rows/s;
- **artifacts**: ``report.json``, ``report.md``, ``throughput.png`` under ``report/``;
- **tags**: ``hfspark.status``, ``hfspark.run_id``, the output table (``hfspark.output.*``,
  with its Delta version), the job file and fingerprint.

The tracker never fails a job: a tracking server that cannot be reached at the start (checked
with a 5 s ``/health`` probe for http URIs), or that fails later, gives one warning and the
job goes on; its report still lands on disk. Every call runs in a background thread bounded by
``run.mlflow.timeout_s``.

Example:
    >>> tracker = JobTracker.start(job, report, redactor)   # None when run.mlflow is not set
    >>> ...                                                  # the job runs
    >>> tracker.finish(report)                               # metrics, artifacts, tags, status
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hfspark.jobs.config import JobConfig, MlflowSection
from hfspark.jobs.report import RunReport
from hfspark.jobs.secrets import Redactor

__all__ = ["JobTracker", "flatten_params", "STATUS"]

log = logging.getLogger("hfspark.jobs")

#: hfspark run status -> MLflow run status.
STATUS = {"succeeded": "FINISHED", "interrupted": "KILLED"}
_MAX_PARAM = 6000  # MLflow's limit on a parameter value


def flatten_params(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested conf -> ``{"input.format": "json", "models.0.uri": "..."}`` (MLflow parameters).

    Example:
        >>> flatten_params({"run": {"chunk_rows": 500}, "models": [{"name": "a"}]})
        {'run.chunk_rows': '500', 'models.0.name': 'a'}
    """
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for k, v in data.items():
            out.update(flatten_params(v, f"{prefix}{k}."))
    elif (
        isinstance(data, (list, tuple))
        and data
        and any(isinstance(v, (Mapping, list)) for v in data)
    ):
        for i, v in enumerate(data):
            out.update(flatten_params(v, f"{prefix}{i}."))
    else:
        text = "" if data is None else str(data)
        out[prefix.rstrip(".")] = text[:_MAX_PARAM]
    return out


def _reachable(uri: str) -> str | None:
    """None when an http(s) tracking server answers ``/health`` (else why not)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
            return None if r.status < 500 else f"HTTP {r.status}"
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(e).__name__}: {e}"


class JobTracker:
    """One job's MLflow run (see the module docstring). Build it with :meth:`start`."""

    def __init__(
        self, client: Any, run_id: str, conf: MlflowSection, redactor: Redactor, url: str | None
    ) -> None:
        self.client, self.run_id, self.conf, self.redactor = client, run_id, conf, redactor
        self.url = url
        self.failed = False
        self._logged_chunks = 0
        self._models_logged = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, job: JobConfig, report: RunReport, redactor: Redactor) -> JobTracker | None:
        """Create the MLflow run of a job (None when ``run.mlflow`` is not set or MLflow fails).

        Example:
            >>> tracker = JobTracker.start(job, report, Redactor())
            >>> tracker.run_id
            '6f1c...'
        """
        conf = job.run.mlflow
        if conf is None:
            return None
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError:
            log.warning(
                "run.mlflow is set but mlflow is not installed (pip install "
                "'hfspark[mlflow]'); the job runs without an MLflow run"
            )
            return None
        uri = conf.tracking_uri or mlflow.get_tracking_uri()
        shown = redactor.text(uri)
        if (why := _reachable(uri)) is not None:
            log.warning(
                "MLflow tracking server %s is not reachable (%s); the job runs without "
                "an MLflow run, its report is still written to disk",
                shown,
                why,
            )
            return None
        try:
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(conf.experiment)
            exp_id = found.experiment_id if found else client.create_experiment(conf.experiment)
            tags = {
                "hfspark.run_id": report.run_id,
                "hfspark.job": report.job,
                "hfspark.status": "running",
                **conf.tags,
            }
            run = client.create_run(
                exp_id,
                run_name=conf.run_name or f"hfspark-{report.run_id}",
                tags={k: redactor.text(str(v)) for k, v in tags.items()},
            )
            params = flatten_params({"conf": report.conf})
            _log_params(client, run.info.run_id, params)
        except Exception as e:  # noqa: BLE001 - tracking never fails the job
            log.warning(
                "could not start an MLflow run on %s (%s); the job runs without one",
                shown,
                redactor.text(str(e)).splitlines()[0][:300],
            )
            return None
        url = None
        if uri.startswith(("http://", "https://")):
            url = f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run.info.run_id}"
        tracker = cls(client, run.info.run_id, conf, redactor, url and redactor.text(url))
        report.tracking = {
            "mlflow_run_id": run.info.run_id,
            "experiment_id": exp_id,
            "experiment": conf.experiment,
            **({"url": tracker.url} if url else {}),
        }
        log.info(
            "MLflow run %s (experiment %r)%s",
            run.info.run_id,
            conf.experiment,
            f": {tracker.url}" if tracker.url else "",
        )
        tracker._thread = threading.Thread(
            target=tracker._loop, args=(report,), daemon=True, name="hfspark-mlflow"
        )
        tracker._thread.start()
        return tracker

    def finish(self, report: RunReport) -> None:
        """Final metrics, the report files as artifacts, output tags and the run's end status."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.conf.timeout_s)
        status = STATUS.get(report.status, "FAILED")

        def work() -> None:
            self._log_progress(report)
            self._log_models(report)
            self._log_totals(report)
            tags = {"hfspark.status": report.status, "hfspark.fingerprint": report.fingerprint}
            if report.reason:
                tags["hfspark.reason"] = report.reason[:5000]
            out = report.output or {}
            for key in ("format", "location", "version", "rows"):
                if key in out:
                    tags[f"hfspark.output.{key}"] = str(out[key])
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, self.redactor.text(str(value)))
            for path in (report.paths or {}).values():
                if Path(path).is_file():
                    self.client.log_artifact(self.run_id, path, artifact_path="report")
            self.client.set_terminated(self.run_id, status=status)

        if self._call(work, "finish the MLflow run"):
            log.info("MLflow run %s: %s", self.run_id, status)

    # ------------------------------------------------------------------ logging
    def _call(self, fn: Callable[[], None], what: str) -> bool:
        """Run ``fn`` bounded by ``timeout_s``; the first failure turns the tracker off."""
        if self.failed:
            return False
        error: list[BaseException] = []

        def target() -> None:
            try:
                with self._lock:
                    fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                error.append(e)

        worker = threading.Thread(target=target, daemon=True, name="hfspark-mlflow-call")
        worker.start()
        worker.join(self.conf.timeout_s)
        if worker.is_alive() or error:
            self.failed = True
            why = (
                f"no answer in {self.conf.timeout_s:.0f}s"
                if worker.is_alive()
                else self.redactor.text(str(error[0])).splitlines()[0][:300]
            )
            log.warning(
                "could not %s %s (%s); MLflow logging is off for the rest of the job, "
                "its report is still written to disk",
                what,
                self.run_id,
                why,
            )
            return False
        return True

    def _loop(self, report: RunReport) -> None:
        while not self._stop.wait(self.conf.log_every_s):

            def log_metrics() -> None:
                self._log_models(report)
                self._log_progress(report)

            if not self._call(log_metrics, "log metrics to the MLflow run"):
                return

    def _log_models(self, report: RunReport) -> None:
        if self._models_logged or not report.models:
            return
        params: dict[str, str] = {}
        for m in report.models:
            params.update(
                {
                    f"model.{m['name']}.uri": str(m.get("uri", "")),
                    f"model.{m['name']}.task": str(m.get("task", "")),
                    f"model.{m['name']}.hash": str(m.get("content_hash", "")),
                }
            )
        _log_params(self.client, self.run_id, params)
        self._models_logged = True

    def _log_progress(self, report: RunReport) -> None:
        """Per-chunk metrics of newly committed chunks, and the running totals."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        chunks = list(report.chunks)[self._logged_chunks :]
        metrics = []
        for i, c in enumerate(chunks, start=self._logged_chunks + 1):
            metrics += [
                Metric("chunk_rows", c.rows, now, i),
                Metric("chunk_rows_per_s", round(c.rows_per_s, 3), now, i),
                Metric("chunk_errors", c.errors, now, i),
            ]
        step = self._logged_chunks + len(chunks)
        rows = report.rows
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = rows.get("processed", 0)
        metrics += [
            Metric("rows_processed", done, now, step),
            Metric("rows_written", rows.get("written", 0), now, step),
            Metric("errors", rows.get("errors", 0), now, step),
            Metric("tokens", rows.get("tokens", 0), now, step),
            Metric("elapsed_s", round(elapsed, 3), now, step),
        ]
        if done:
            metrics.append(Metric("rows_per_s_so_far", round(done / elapsed, 3), now, step))
        self.client.log_batch(self.run_id, metrics=metrics)
        self._logged_chunks = step

    def _log_totals(self, report: RunReport) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = len(report.chunks)
        values: dict[str, float] = {
            "rows_input": report.rows.get("input", 0),
            "rows_already_done": report.rows.get("already_done", 0),
            "rows_per_s": report.rows_per_s,
            "duration_s": report.duration_s,
            **{f"time_{k}_s": v for k, v in report.timings_s.items()},
        }
        if report.tokens_per_s is not None:
            values["tokens_per_s"] = report.tokens_per_s
        if report.model_loads:
            values["model_loads"] = sum(report.model_loads.values())
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)


def _log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log parameters in batches of 100 (MLflow's limit per call)."""
    from mlflow.entities import Param

    items = [Param(k[:250], v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])
