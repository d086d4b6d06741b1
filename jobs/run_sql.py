"""spark-submit entry point: SQL statements with models as SQL functions (``hfspark sql``).

    spark-submit --master spark://host:7077 --py-files hfspark.zip \
        --packages io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
        jobs/run_sql.py conf/models.yaml query.sql [more.sql ...] [--set key=value] [--json]

Arguments ending in ``.sql`` are SQL files, run in order; the other one is the functions
file. The session is spark-submit's (its --master wins); the file's ``spark.conf`` is added.
Query results are printed; exit codes are the ``hfspark`` ones (0 done, 1 failed, 2 invalid).
See docs/sql-connect-mlflow.md.
"""

import sys

from hfspark.cli import main


def cli_args(argv: list[str]) -> list[str]:
    """``models.yaml a.sql b.sql --set k=v`` -> ``sql models.yaml -f a.sql -f b.sql --set k=v``."""
    out, valued = ["sql"], {"--set", "--limit", "-e", "--execute", "-f", "--file", "--remote"}
    args = iter(argv)
    for arg in args:
        if arg in valued:
            out += [arg, next(args, "")]
        elif arg.endswith(".sql") and not arg.startswith("-"):
            out += ["-f", arg]
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main(cli_args(sys.argv[1:]), embedded=False))
