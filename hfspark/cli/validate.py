"""``hfspark validate JOB.yaml``: the conf, the input schema and the models, no inference.

Example:
    >>> from hfspark.cli import main
    >>> main(["validate", "conf/embeddings.yaml"])
    0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hfspark.cli._common import job_args, load_job
from hfspark.errors import EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(sub: Any) -> None:
    """Add ``validate`` to the ``hfspark`` subcommands."""
    val = sub.add_parser(
        "validate", help="check a job: conf, input schema and models, no inference"
    )
    job_args(val)
    val.add_argument("--json", action="store_true", help="print the summary as JSON")


def command(args: argparse.Namespace, embedded: bool) -> int:
    """Check a job without inference; prints the summary (or JSON)."""
    from hfspark.jobs.runner import job_session
    from hfspark.jobs.validate import format_summary, validate_job

    job = load_job(args)
    spark = job_session(job, embedded)
    summary = validate_job(job, spark)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if not args.json:
        print(f"{args.conf}: OK")
    return EXIT_OK
