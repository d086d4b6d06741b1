"""Pieces every ``hfspark`` subcommand shares: job arguments, loading a job, one-line failures.

Example:
    >>> fail("models[0] (embed): unknown option 'batch_sise'")   # prints hfspark: error: ...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["job_args", "load_job", "fail"]


def job_args(p: argparse.ArgumentParser) -> None:
    """The job file and ``--set`` overrides of ``run`` and ``validate``."""
    p.add_argument("conf", help="job configuration (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set run.chunk_rows=500 (repeatable; "
        "values are YAML scalars)",
    )


def load_job(args: argparse.Namespace) -> Any:
    """The validated job configuration named by ``args.conf`` with its overrides."""
    from hfspark.jobs.loader import load_config

    return load_config(args.conf, args.overrides)


def fail(reason: str) -> None:
    """Print a failure as one line (multi-line configuration errors stay whole), secrets masked."""
    from hfspark.jobs.secrets import Redactor

    reason = Redactor.from_sources().text(reason)  # secret environment values never printed
    first, *rest = reason.strip().splitlines() or ["failed"]
    if rest and first.endswith(":"):  # multi-line config errors: keep them whole
        print(f"hfspark: error: {reason.strip()}", file=sys.stderr)
    else:
        print(f"hfspark: error: {first}", file=sys.stderr)
