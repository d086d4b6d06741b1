"""Run a batch job: read -> infer (model steps) -> write in chunks, resumable and observable.

Example:
    >>> from hfspark.jobs import load_config, run_job
    >>> report = run_job(load_config("conf/embeddings.yaml"), source="conf/embeddings.yaml")
    >>> report.status, report.rows["written"]
    ('succeeded', 300)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hfspark.errors import (
    ConfigError,
    ErrorBudgetExceeded,
    HfSparkError,
    JobFailed,
    JobInterrupted,
    exit_code,
)
from hfspark.jobs.config import JobConfig
from hfspark.jobs.interrupt import StopOnSignal
from hfspark.jobs.models import (
    Step,
    apply_steps,
    build_steps,
    error_columns,
    error_condition,
    token_columns,
)
from hfspark.jobs.progress import Progress, spark_task_fraction
from hfspark.jobs.report import ChunkStat, RunReport, versions
from hfspark.jobs.resume import (
    InputStats,
    Plan,
    input_stats,
    job_fingerprint,
    n_chunks_for,
    plan_chunks,
    verify_output,
)
from hfspark.jobs.secrets import Redactor
from hfspark.jobs.startup import load_counts, summarize, worker_probe
from hfspark.jobs.storage import (
    check_columns,
    describe_output,
    output_exists,
    read_input,
    read_output,
    require_delta,
    write_frame,
)
from hfspark.jobs.tracking import JobTracker
from hfspark.jobs.usage import add_usage, finalize_usage, input_tokens, usage_aggs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["JobFailed", "job_session", "new_run_id", "run_job", "one_line", "model_load_counts"]

log = logging.getLogger("hfspark.jobs")


def new_run_id() -> str:
    """A sortable, unique run id: ``20261125-101500-ab12cd``."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def job_session(job: JobConfig, embedded: bool = True) -> SparkSession:
    """The job's SparkSession: embedded local Spark with Delta, or the spark-submit one."""
    if embedded:
        from hfspark.session import local_spark

        return local_spark(job.spark.master, job.spark.app_name, job.spark.conf)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(job.spark.app_name)
    for key, value in job.spark.conf.items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def one_line(exc: BaseException, redactor: Redactor | None = None) -> str:
    """A one-line reason for a failure: the innermost Python error inside a Spark error.

    A Python worker's traceback is cut to its error line (``RowError: models[0] (pred) on
    'text': Row 3 ...``: the step and its columns are in hfspark's own messages); a JVM
    error to its innermost ``Caused by``.

    Example:
        >>> one_line(ValueError("bad\nmore"))
        'ValueError: bad'
    """
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    picked = lines[0] if lines else text
    if not isinstance(exc, HfSparkError):
        python = _python_error(text)
        if python is not None:
            picked = python.removeprefix("hfspark.errors.")
        else:  # a JVM error (Py4J): its innermost cause, else the exception under "calling oN.x"
            java = [ln for ln in lines if ln.startswith("Caused by: ")] or [
                ln.removeprefix(": ") for ln in lines[1:2] if ln.startswith(": ")
            ]
            if java:
                picked = java[-1]
            if not picked.startswith(type(exc).__name__):
                picked = f"{type(exc).__name__}: {picked}"
        if "No module named 'hfspark'" in picked:
            picked += (
                " (the Spark workers' Python cannot import hfspark: set spark.pyspark.python"
                " / PYSPARK_PYTHON to a Python that has it, or ship it with --py-files)"
            )
    picked = redactor.text(picked) if redactor else picked
    return picked if len(picked) <= 400 else picked[:397] + "..."


def _python_error(text: str) -> str | None:
    """The error line of the last Python traceback in ``text`` (None: there is none)."""
    lines = text.splitlines()
    starts = [
        i
        for i, ln in enumerate(lines)
        if ln.rstrip().endswith("Traceback (most recent call last):")
    ]
    if not starts:
        return None
    for ln in lines[starts[-1] + 1 :]:
        if ln.strip() and not ln[:1].isspace():
            return ln.strip()
    return None


def model_load_counts(spark: SparkSession) -> dict[str, int]:
    """Models loaded per Python worker (``host:pid``) on the executors, from a tiny probe.

    The probe is a ``mapInPandas`` job, so it runs in the same pool of (reused) Python
    workers as the model UDFs and sees the workers that ran the job's inference, as long
    as they are still alive (idle workers exit after about a minute).
    """
    return load_counts(worker_probe(spark))


@dataclass
class _Run:
    """State shared by the phases of one run."""

    job: JobConfig
    spark: Any
    report: RunReport
    redactor: Redactor
    steps: list[Step] = field(default_factory=list)
    input_df: Any = None
    resume: bool = False
    written_any: bool = False
    group: str | None = None
    started: float = field(default_factory=time.monotonic)
    stop: StopOnSignal | None = None


def run_job(
    job: JobConfig,
    spark: SparkSession | None = None,
    *,
    source: str = "<config>",
    embedded: bool = True,
    raise_on_error: bool = True,
) -> RunReport:
    """Run a job end to end and write its report.

    Args:
        job: the validated configuration.
        spark: a session to use (default: :func:`job_session`).
        source: the configuration file, for the report.
        embedded: without ``spark``, start the embedded local Spark (else use spark-submit's).
        raise_on_error: raise :class:`JobFailed` when the job fails or exceeds its error
            budget (else return the report with ``status`` ``failed`` / ``error_budget_exceeded``).

    Example:
        >>> report = run_job(cfg, spark, raise_on_error=False)
        >>> report.status
        'succeeded'
    """
    dumped = job.model_dump(mode="json")
    redactor = Redactor.from_sources(dumped)
    report = RunReport(
        run_id=new_run_id(),
        job=source,
        conf=redactor.data(dumped),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    state = _Run(job=job, spark=spark, report=report, redactor=redactor)
    tracker = JobTracker.start(job, report, redactor)  # run.mlflow: the job as an MLflow run
    progress: Progress | None = None
    try:
        state.spark = spark or job_session(job, embedded)
        state.stop = StopOnSignal(state.spark).__enter__()  # after Spark set its own handler
        report.versions = versions(state.spark)
        report.spark = _spark_info(state.spark)
        plan, stats = _prepare(state)
        report.rows.update(input=stats.rows, already_done=stats.rows - plan.rows, pending=plan.rows)
        log.info(
            "run %s: %d input rows, %d already written, %d to process in %d chunk(s)",
            report.run_id,
            stats.rows,
            stats.rows - plan.rows,
            plan.rows,
            len(plan.counts),
        )
        progress = Progress(
            stats.rows,
            stats.rows - plan.rows,
            job.run.progress,
            job.run.log_every_s,
            live=spark_task_fraction(state.spark, lambda: state.group),
        )
        _process(state, plan, progress, report.txn_app_id)
        _finish(state, plan, progress)
        report.status = "succeeded"
    except ErrorBudgetExceeded as e:
        report.status, report.reason = "error_budget_exceeded", one_line(e, redactor)
        report.exit_code = exit_code(e)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure ends up in the report
        if state.stop is not None and state.stop.stopped or isinstance(e, KeyboardInterrupt):
            signum = state.stop.signum if state.stop and state.stop.signum else 2
            _interrupted(state, JobInterrupted(str(e), signum))
        else:
            report.status, report.reason = "failed", one_line(e, redactor)
            report.exit_code = exit_code(e)
            log.debug("job failed: %s", redactor.text(traceback.format_exc()))
    finally:
        if state.stop is not None:
            state.stop.__exit__(None, None, None)
        if progress is not None:
            progress.close()
        _close(state)
        if tracker is not None:
            tracker.finish(report)  # after the report files are written
    if report.status != "succeeded" and raise_on_error:
        raise JobFailed(report.reason or report.status, report)
    return report


def _interrupted(state: _Run, exc: JobInterrupted) -> None:
    """Mark the run interrupted by a signal, with what it got done and how to go on."""
    report, job = state.report, state.job
    rows = report.rows
    then = (
        "rerun the same command to resume"
        if state.resume
        else "rerun the same command to start again (set input.id_column to resume instead)"
    )
    report.status = "interrupted"
    report.reason = (
        f"interrupted after {rows['written']} rows"
        + (
            f" ({rows['already_done'] + rows['written']} of {rows['input']} in the output)"
            if job.input.id_column
            else ""
        )
        + f"; {then}"
    )
    report.exit_code = exit_code(exc)


def _spark_info(spark: Any) -> dict[str, Any]:
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "__init__.py"  # which hfspark ran the job
    info: dict[str, Any] = {"version": spark.version, "hfspark_from": str(here)}
    try:
        sc = spark.sparkContext
        info.update(
            master=sc.master, app_id=sc.applicationId, default_parallelism=sc.defaultParallelism
        )
    except Exception:  # noqa: BLE001 - Spark Connect
        pass
    return info


def output_frame(df: DataFrame, steps: list[Step], job: JobConfig, run_id: str) -> DataFrame:
    """The rows to write: chosen columns, step outputs and the provenance columns."""
    from pyspark.sql import functions as F

    outputs = [s.config.output_column for s in steps]
    if job.output.columns is not None:
        base = ([job.input.id_column] if job.input.id_column else []) + list(job.output.columns)
        cols = list(dict.fromkeys(base))
    else:
        skip = {"content"} if job.input.format == "binaryFile" else set()
        cols = [c for c in df.columns if c not in skip and c not in outputs] + outputs
    check_columns(df, [c for c in cols if "." not in c], "output.columns")
    names = ",".join(s.config.name for s in steps)
    hashes = ",".join(s.info.content_hash for s in steps)
    return df.select(
        *[F.col(c) for c in cols],
        F.lit(names).alias("_model_name"),
        F.lit(hashes).alias("_model_hash"),
        F.lit(run_id).alias("_run_id"),
        F.current_timestamp().alias("_inferred_at"),
    )


def _prepare(state: _Run) -> tuple[Plan, InputStats]:
    """Read the input, check models and output on the driver, and plan the chunks."""
    job, spark, report = state.job, state.spark, state.report
    t0 = time.monotonic()
    state.steps = build_steps(job)
    report.models = [
        {
            "name": s.config.name,
            "uri": s.uri,
            "task": s.info.task,
            "content_hash": s.info.content_hash,
            "output": s.config.output_column,
        }
        for s in state.steps
    ]
    if job.input.format == "delta" or job.output.is_delta:
        require_delta(spark)
    df = read_input(spark, job.input)
    state.input_df = df
    shaped = output_frame(apply_steps(df, state.steps), state.steps, job, report.run_id)
    check_columns(shaped, job.output.partition_by, "output.partition_by")
    output_exists(spark, job.output)  # refuses a folder that holds another table's files
    existing = read_output(spark, job.output)
    if job.output.mode == "error" and existing is not None:
        raise ConfigError(
            f"output {job.output.target!r} exists and output.mode is 'error': "
            f"set mode append (resume) or overwrite"
        )
    state.resume = job.run.resume_enabled(job)
    report.resume = state.resume
    done = existing if state.resume else None
    if done is not None and job.input.id_column:
        check_columns(done, [job.input.id_column], f"output {job.output.target!r} (to resume)")
    stats = input_stats(df, job.input.id_column)
    n = n_chunks_for(stats.rows, job.run.chunk_rows)
    report.fingerprint = job_fingerprint(job, [s.info.content_hash for s in state.steps], stats, n)
    report.txn_app_id = (
        report.fingerprint if state.resume else f"{report.fingerprint}-{report.run_id}"
    )
    plan = plan_chunks(df, job.input.id_column, n, done, _partitions(spark, job))
    report.timings_s["read"] += time.monotonic() - t0
    return plan, stats


def _partitions(spark: Any, job: JobConfig) -> int | None:
    """Partitions per chunk: ``run.partitions``, else Spark's default parallelism."""
    if job.run.partitions:
        return job.run.partitions
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect: keep the input's partitioning
        return None


def _process(state: _Run, plan: Plan, progress: Progress, app_id: str) -> None:
    """Infer, check the error budget and commit each chunk in order."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    job, report = state.job, state.report
    cond = error_condition(state.steps)
    err_cols = error_columns(state.steps)
    tokens = token_columns(state.steps)
    for k, rows in plan.counts.items():
        if state.stop is not None:
            state.stop.check()
        state.group = f"hfspark-{report.run_id}-{k}"
        _set_group(state.spark, state.group, f"hfspark chunk {k}/{plan.n_chunks}")
        progress.start_chunk(rows)
        t0 = time.monotonic()
        out = output_frame(
            apply_steps(plan.chunk(k), state.steps, check=False), state.steps, job, report.run_id
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            aggs = [F.count(F.lit(1)).alias("rows")]
            if cond is not None:
                aggs.append(F.sum(F.when(cond, 1).otherwise(0)).alias("errors"))
            aggs += [
                F.sum(F.coalesce(F.col(c), F.lit(0))).alias(f"t{i}") for i, c in enumerate(tokens)
            ]
            aggs += usage_aggs(state.steps)
            got = out.agg(*aggs).collect()[0]
            n_rows, n_err = int(got["rows"]), int(got["errors"] or 0) if cond is not None else 0
            report.rows["tokens"] = report.rows.get("tokens", 0) + sum(
                int(got[f"t{i}"] or 0) for i in range(len(tokens))
            )
            if n_err and len(report.error_samples) < 5:
                _sample_errors(state, out, cond, err_cols)
            infer_s = time.monotonic() - t0
            _usage(state, plan.chunk(k), got)  # (encoders' input tokens: not inference time)
            report.rows["processed"] += n_rows
            report.rows["errors"] += n_err
            _check_budget(job, report.rows["errors"], report.rows["processed"])
            t1 = time.monotonic()
            write_frame(out, job.output, _mode(state), (app_id, k) if job.output.is_delta else None)
            state.written_any = True
            write_s = time.monotonic() - t1
        finally:
            out.unpersist()
        report.rows["written"] += n_rows
        report.timings_s["infer"] += infer_s
        report.timings_s["write"] += write_s
        report.chunks.append(
            ChunkStat(
                k,
                n_rows,
                n_err,
                round(infer_s, 3),
                round(write_s, 3),
                round(time.monotonic() - state.started, 3),
            )
        )
        progress.advance(n_rows, n_err)
    state.group = None


def _usage(state: _Run, chunk: Any, got: Any) -> None:
    """Add a chunk's token usage per step to the report (encoders: their input tokens)."""
    usage = state.report.usage
    add_usage(usage, state.steps, got)
    try:
        counted = input_tokens(chunk, state.steps)
    except Exception:  # noqa: BLE001 - informative only (e.g. a tokenizer executors cannot read)
        log.debug("input token count failed", exc_info=True)
        counted = {}
    for name, n in counted.items():
        usage.setdefault(name, {"input_tokens": 0})["input_tokens"] += n
        state.report.rows["tokens"] = state.report.rows.get("tokens", 0) + n


def _mode(state: _Run) -> str:
    if state.written_any:
        return "append"
    return {"append": "append", "overwrite": "overwrite", "error": "errorifexists"}[
        state.job.output.mode
    ]


def _set_group(spark: Any, group: str, description: str) -> None:
    try:
        spark.sparkContext.setJobGroup(group, description)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        pass


def _sample_errors(state: _Run, out: Any, cond: Any, err_cols: list[str]) -> None:
    from pyspark.sql import functions as F

    id_col = state.job.input.id_column
    picks = ([F.col(id_col).cast("string").alias("id")] if id_col else []) + [
        F.col(c).alias(c.split(".")[0]) for c in err_cols
    ]
    for row in out.filter(cond).select(*picks).limit(5 - len(state.report.error_samples)).collect():
        sample = {
            k: (state.redactor.text(str(v))[:300] if v is not None else None)
            for k, v in row.asDict().items()
        }
        state.report.error_samples.append(sample)


def _check_budget(job: JobConfig, errors: int, processed: int) -> None:
    run = job.run
    if run.max_errors is not None and errors > run.max_errors:
        raise ErrorBudgetExceeded(
            f"error budget exceeded: {errors} rows with errors > run.max_errors {run.max_errors} "
            f"(after {processed} rows)"
        )
    if run.max_error_rate is not None and processed and errors / processed > run.max_error_rate:
        raise ErrorBudgetExceeded(
            f"error budget exceeded: error rate {errors / processed:.2%} > run.max_error_rate "
            f"{run.max_error_rate:.2%} ({errors} of {processed} rows)"
        )


def _finish(state: _Run, plan: Plan, progress: Progress) -> None:
    """Create an empty output if nothing was written, verify ids, repair if needed, describe."""
    job, spark, report = state.job, state.spark, state.report
    if not state.written_any and not output_exists(spark, job.output):
        empty = output_frame(
            apply_steps(state.input_df.limit(0), state.steps, check=False),
            state.steps,
            job,
            report.run_id,
        )
        write_frame(empty, job.output, _mode(state))
    id_col = job.input.id_column
    if id_col and job.run.verify and (state.resume or job.output.mode != "append"):
        t0 = time.monotonic()
        check = verify_output(state.input_df, read_output(spark, job.output), id_col)
        if check["missing"] and state.resume:
            # Rows removed from the output after an earlier run would be skipped by Delta's
            # idempotent writes under the same fingerprint: write them under a fresh app id.
            log.warning(
                "%d input ids missing from the output; writing them again", check["missing"]
            )
            plan.pending.unpersist()
            repair = plan_chunks(
                state.input_df,
                id_col,
                plan.n_chunks,
                read_output(spark, job.output),
                _partitions(spark, job),
            )
            progress.total = max(progress.total, progress.done + repair.rows)
            _process(state, repair, progress, f"{report.fingerprint}-repair-{report.run_id}")
            repair.pending.unpersist()
            check = verify_output(state.input_df, read_output(spark, job.output), id_col)
        report.verification = check
        report.timings_s["verify"] = round(time.monotonic() - t0, 3)
        if check["missing"] or (check["duplicates"] and state.resume):
            raise HfSparkError(
                f"output check failed: {check['missing']} input ids missing, "
                f"{check['duplicates']} ids written more than once"
            )
    plan.pending.unpersist()
    report.output = describe_output(spark, job.output)


def _close(state: _Run) -> None:
    """Fill the report's totals and write it (never raises)."""
    report = state.report
    report.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report.duration_s = round(time.monotonic() - state.started, 3)
    busy = report.timings_s["infer"] + report.timings_s["write"]
    report.rows_per_s = round(report.rows["processed"] / busy, 3) if busy > 0 else 0.0
    finalize_usage(report.usage, report.timings_s["infer"])
    if report.rows.get("tokens") and report.timings_s["infer"] > 0:
        report.tokens_per_s = round(report.rows["tokens"] / report.timings_s["infer"], 3)
    report.timings_s = {k: round(v, 3) for k, v in report.timings_s.items()}
    if state.spark is not None and report.rows["processed"] and report.status != "interrupted":
        try:
            probe = worker_probe(state.spark)  # one probe: loads and startup per worker
            report.model_loads = load_counts(probe)
            report.startup = summarize(probe)
        except Exception:  # noqa: BLE001 - informative only
            log.debug("model load probe failed", exc_info=True)
    if not report.output and state.spark is not None:
        try:
            report.output = describe_output(state.spark, state.job.output)
        except Exception:  # noqa: BLE001
            report.output = {"format": state.job.output.format, "location": state.job.output.target}
    if state.job.run.report_path:
        try:
            report.write(state.job.run.report_path)
        except OSError as e:
            log.warning("could not write the run report: %s", e)
