"""Run documentation code blocks one after another in one Python interpreter.

Started by ``tests/test_docs.py`` as ``python block_runner.py`` in the clean folder. It reads
block numbers on stdin, one a line; for each it runs ``block_<n>.py`` of the current folder as
``python block_<n>.py`` would (``__name__ == "__main__"``, a fresh module namespace, the
script's ``sys.argv`` and ``sys.path[0]``). Everything written to file descriptors 1 and 2
(the blocks', Spark's JVM and its workers') is appended to ``blocks.log``, each block's part
opened by a ``##### block <n>`` line. After a block the process is put back as a fresh one
would find it, except for what a process keeps by design (imported modules, the one
SparkSession ``local_spark()`` returns, models cached in its Python workers): the environment
and the working folder are restored, and the session's temporary views and functions are
dropped, so a block can never use names another block defined. It answers on its original
stdout: ``<n> ok`` or ``<n> failed``.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

MARK = "##### block"


def _reset_spark() -> None:
    """Drop the temporary views and functions the block left in the active session."""
    if "pyspark" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        return
    for table in spark.catalog.listTables():
        if table.isTemporary:
            spark.catalog.dropTempView(table.name)
    for row in spark.sql("SHOW USER FUNCTIONS").collect():
        name = row[0].split(".")[-1]
        spark.sql(f"DROP TEMPORARY FUNCTION IF EXISTS `{name}`")


def _run(n: int, work: Path) -> bool:
    script = work / f"block_{n}.py"
    env, argv = dict(os.environ), list(sys.argv)
    print(f"{MARK} {n}", flush=True)
    ok = False
    try:
        sys.argv = [str(script)]
        runpy.run_path(str(script), run_name="__main__")
        ok = True
    except SystemExit as e:
        ok = e.code in (None, 0)
        if not ok:
            traceback.print_exc()
    except BaseException:  # noqa: BLE001 - reported as this block's failure
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(work)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = argv
    try:
        _reset_spark()
    except Exception:  # noqa: BLE001 - the next block would see leftovers
        traceback.print_exc()
        ok = False
    sys.stdout.flush()
    sys.stderr.flush()
    return ok


def main() -> None:
    work = Path.cwd()
    sys.path[0] = str(work)  # as for `python block_<n>.py` run in the clean folder
    control = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(work / "blocks.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    for line in sys.stdin:
        n = int(line)
        control.write(f"{n} {'ok' if _run(n, work) else 'failed'}\n")


if __name__ == "__main__":
    main()
