"""``hfspark run JOB.yaml``: read -> infer -> write, resumable, with a report.

Example:
    >>> from hfspark.cli import main
    >>> main(["run", "conf/embeddings.yaml", "--set", "input.limit=50"])
    0
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hfspark.cli._common import fail, job_args, load_job
from hfspark.errors import EXIT_FAILED, EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(sub: Any) -> None:
    """Add ``run`` to the ``hfspark`` subcommands."""
    run = sub.add_parser("run", help="run a batch job (read -> infer -> write)")
    job_args(run)
    run.add_argument(
        "--progress",
        choices=["auto", "bar", "log", "off"],
        help="progress display (default: the conf's run.progress)",
    )


def command(args: argparse.Namespace, embedded: bool) -> int:
    """Run a batch job; the exit code says how it ended (see hfspark.errors.exit_code)."""
    from hfspark.jobs.runner import job_session, run_job

    job = load_job(args)
    if args.progress:
        job = job.model_copy(update={"run": job.run.model_copy(update={"progress": args.progress})})
    spark = job_session(job, embedded)
    report = run_job(job, spark, source=args.conf, raise_on_error=False)
    if report.status != "succeeded":
        fail(report.reason or report.status)
        if report.paths:
            print(f"report: {report.paths.get('markdown')}", file=sys.stderr)
        return report.exit_code or EXIT_FAILED
    _print_result(spark, job, report)
    return EXIT_OK


def _print_result(spark: Any, job: Any, report: Any) -> None:
    out, rows = report.output, report.rows
    version = f" (Delta version {out['version']})" if "version" in out else ""
    print(f"wrote {rows['written']} rows to {out.get('format')} {out.get('location')}{version}")
    print(
        f"the output holds {out.get('rows', '?')} rows; {rows['already_done']} were there "
        f"before this run; {rows['errors']} rows with errors; {report.rows_per_s:.1f} rows/s"
    )
    if report.startup:
        from hfspark.jobs.startup import describe

        print(f"worker startup: {describe(report.startup)}")
    cols = out.get("columns") or {}
    if cols:
        print("columns:")
        for name, dtype in cols.items():
            print(f"  {name}: {dtype if len(dtype) <= 100 else dtype[:97] + '...'}")
    try:
        from hfspark.jobs.storage import read_output

        df = read_output(spark, job.output)
        if df is not None and cols:
            keep = [c for c in df.columns if not c.startswith("_")][:4]
            print("sample:")
            for row in df.select(*keep).limit(3).collect():
                print("  " + ", ".join(f"{k}={_short(v)}" for k, v in row.asDict().items()))
    except Exception:  # noqa: BLE001 - the sample is only a courtesy
        pass
    if report.paths:
        print(f"report: {report.paths.get('markdown')}")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value.asDict(recursive=True) if hasattr(value, "asDict") else value)
    return text if len(text) <= width else text[: width - 3] + "..."
