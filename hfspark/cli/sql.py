"""``hfspark sql [FUNCTIONS.yaml] -e SQL | -f FILE``: SQL with models as SQL functions.

Example:
    >>> from hfspark.cli import main
    >>> main(["sql", "conf/models.yaml", "-e", "SELECT size(embed('hello')) AS dims"])
    0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from hfspark.errors import ConfigError
from hfspark.sql import (
    execute,
    format_table,
    load_functions,
    register_all,
    split_statements,
    sql_session,
)

__all__ = ["add_parser", "command"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``hfspark sql [FUNCTIONS] -e SQL | -f FILE`` to the ``hfspark`` command."""
    p = subparsers.add_parser("sql", help="run SQL statements with models as SQL functions")
    p.add_argument("functions", nargs="?", help="functions file (YAML): name -> model uri, options")
    p.add_argument(
        "-e",
        "--execute",
        dest="scripts",
        action="append",
        metavar="SQL",
        type=lambda s: ("-e", s),
        help="SQL statements (';'-separated; repeatable)",
    )
    p.add_argument(
        "-f",
        "--file",
        dest="scripts",
        action="append",
        metavar="FILE",
        type=lambda s: ("-f", s),
        help="a file of SQL statements ('-': stdin)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set sentiment.batch_size=8",
    )
    p.add_argument(
        "--remote",
        default=os.environ.get("SPARK_REMOTE"),
        metavar="URL",
        help="a Spark Connect server, sc://host:port (default: $SPARK_REMOTE)",
    )
    p.add_argument("--limit", type=int, default=20, help="most rows printed per query (20)")
    p.add_argument("--json", action="store_true", help="print query rows as JSON lines")
    return p


def _read_scripts(scripts: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for kind, value in scripts:
        if kind == "-f" and value != "-" and not Path(value).is_file():
            raise ConfigError(f"SQL file {value!r} not found")
        out.append(
            ("-e", value)
            if kind == "-e"
            else ("<stdin>", sys.stdin.read())
            if value == "-"
            else (value, Path(value).read_text(encoding="utf-8"))
        )
    for _, text in out:
        split_statements(text)  # unterminated quotes fail before Spark starts
    return out


def command(args: argparse.Namespace, embedded: bool = True, out: TextIO | None = None) -> int:
    """Run ``hfspark sql``: register the functions, run every statement, print query results."""
    out = out or sys.stdout
    if not args.scripts:
        raise ConfigError("hfspark sql: give statements with -e 'SELECT ...' or a file with -f")
    config = load_functions(args.functions or {}, args.overrides)
    scripts = _read_scripts(args.scripts)
    spark = sql_session(config, embedded=embedded, remote=args.remote)
    register_all(spark, config)
    for source, text in scripts:
        for result in execute(spark, text, limit=args.limit, source=source):
            lines = (
                [
                    json.dumps(r.asDict(recursive=True), default=str, ensure_ascii=False)
                    for r in result.rows
                ]
                if args.json
                else [format_table(result), ""]
            )
            if lines:
                print("\n".join(lines), file=out, flush=True)
    return 0
