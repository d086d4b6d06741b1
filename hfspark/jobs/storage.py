"""Read a job's input and write its output (Delta, Parquet, CSV, JSON lines, catalog tables).

Example:
    >>> from hfspark.jobs.config import InputSection
    >>> df = read_input(spark, InputSection(format="csv", path="data/reviews.csv"))
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, InputSchemaError
from hfspark.jobs.config import InputSection, OutputSection

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "read_input",
    "read_output",
    "output_exists",
    "write_frame",
    "describe_output",
    "check_columns",
    "require_delta",
]

DELTA_HINT = (
    "Delta Lake is not available in this Spark session. Build your session with "
    "hfspark.with_hfspark(SparkSession.builder...).getOrCreate() (adds the Delta jars and "
    "settings), or with spark-submit add --packages io.delta:delta-spark_4.2_2.13:4.4.0 "
    "--conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension "
    "--conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog"
)


def require_delta(spark: SparkSession) -> None:
    """Raise a ConfigError saying how to add Delta Lake when the session cannot read Delta.

    Example:
        >>> require_delta(local_spark())      # fine: local_spark() has Delta
    """
    try:
        spark.read.format("delta").load("/nonexistent/hfspark-delta-probe").schema  # noqa: B018
    except Exception as e:  # noqa: BLE001 - only the missing data source matters here
        if "DATA_SOURCE_NOT_FOUND" in str(e) or "ClassNotFoundException" in str(e):
            raise ConfigError(DELTA_HINT) from e


_READ_DEFAULTS: dict[str, dict[str, str]] = {
    "csv": {"header": "true", "inferSchema": "true", "multiLine": "true", "escape": '"'},
    "json": {},
}


def _analysis_error() -> tuple[type[BaseException], ...]:
    from pyspark.errors import AnalysisException

    return (AnalysisException,)


def check_columns(df: DataFrame, wanted: list[str], what: str) -> None:
    """Raise InputSchemaError naming the nearest column for each missing one."""
    for c in wanted:
        if c not in df.columns:
            close = difflib.get_close_matches(c, df.columns, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputSchemaError(
                f"{what}: column {c!r} not found{hint}; columns: {', '.join(df.columns)}"
            )


def read_input(spark: SparkSession, inp: InputSection) -> DataFrame:
    """The input DataFrame: read, columns selected, filter (a Spark SQL expression) and limit.

    ``limit`` keeps the first rows by ``id_column`` when one is set, so reruns see the same rows.
    """
    from pyspark.sql import functions as F

    try:
        if inp.format == "table":
            df = spark.read.table(inp.name or "")
        else:
            reader = spark.read.format(inp.format)
            opts: dict[str, Any] = dict(_READ_DEFAULTS.get(inp.format, {}))
            if inp.format == "binaryFile":
                if inp.glob:
                    opts["pathGlobFilter"] = inp.glob
                if inp.recursive:
                    opts["recursiveFileLookup"] = "true"
            opts.update(inp.options)
            for key, value in opts.items():
                reader = reader.option(
                    key, str(value).lower() if isinstance(value, bool) else str(value)
                )
            df = reader.load(inp.path)
    except _analysis_error() as e:
        raise ConfigError(
            f"input: cannot read {inp.format} {inp.name or inp.path!r}: {_first_line(e)}"
        ) from e
    if inp.columns:
        wanted = list(dict.fromkeys([*([inp.id_column] if inp.id_column else []), *inp.columns]))
        check_columns(df, wanted, "input.columns")
        df = df.select(*wanted)
    if inp.id_column:
        check_columns(df, [inp.id_column], "input.id_column")
    if inp.filter:
        try:
            df = df.filter(F.expr(inp.filter))
            df.schema  # noqa: B018 - analyse the expression now, on the driver
        except Exception as e:  # ParseException is not an AnalysisException
            raise ConfigError(
                f"input.filter {inp.filter!r} is not a valid Spark SQL condition: {_first_line(e)}"
            ) from e
    if inp.limit is not None:
        df = (df.orderBy(inp.id_column) if inp.id_column else df).limit(inp.limit)
    return df


def output_exists(spark: SparkSession, out: OutputSection) -> bool:
    """Whether the output table or folder holds data already."""
    if out.format == "table":
        return spark.catalog.tableExists(out.target)
    if out.format == "delta" and out.path and _holds_foreign_files(out.path):
        raise ConfigError(
            f"Output path {out.path} is not a Delta table but is not empty: choose an empty "
            f"folder or an existing Delta table (hfspark never writes into another table's files)."
        )
    return read_output(spark, out) is not None


def _holds_foreign_files(path: str) -> bool:
    """True when a local output folder has files but no ``_delta_log`` (another table's data)."""
    from pathlib import Path

    local = Path(path.removeprefix("file://"))
    if "://" in path and not path.startswith("file://"):
        return False
    if not local.is_dir() or (local / "_delta_log").is_dir():
        return False
    return any(not p.name.startswith((".", "_")) for p in local.iterdir())


def read_output(spark: SparkSession, out: OutputSection) -> DataFrame | None:
    """The rows written so far (None when the output does not exist yet)."""
    try:
        if out.format == "table":
            return spark.read.table(out.target) if spark.catalog.tableExists(out.target) else None
        reader = spark.read.format(out.format)
        if out.format == "csv":
            reader = (
                reader.option("header", "true").option("multiLine", "true").option("escape", '"')
            )
        df = reader.load(out.path)
        df.schema  # noqa: B018
        return df
    except _analysis_error():
        return None


def write_frame(
    df: DataFrame, out: OutputSection, mode: str, txn: tuple[str, int] | None = None
) -> None:
    """Write one chunk; for Delta with ``txn`` = (app id, version) the commit is idempotent.

    Delta skips a write whose ``txnVersion`` is not above the last one committed under the
    same ``txnAppId``, so a retried chunk is never applied twice.
    """
    if out.format == "csv":
        df = _flatten_for_csv(df)
    writer = df.write.mode(mode)
    fmt = "delta" if out.format == "table" else out.format
    writer = writer.format(fmt)
    if out.format == "csv":
        writer = writer.option("header", "true").option("escape", '"')
    if out.is_delta:
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        if mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
    for key, value in out.options.items():
        writer = writer.option(key, str(value).lower() if isinstance(value, bool) else str(value))
    if out.partition_by:
        writer = writer.partitionBy(*out.partition_by)
    if out.format == "table":
        if out.path:
            writer = writer.option("path", out.path)
        writer.saveAsTable(out.target)
    else:
        writer.save(out.path)


def _flatten_for_csv(df: DataFrame) -> DataFrame:
    """CSV holds no structs or arrays: write those columns as JSON strings."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    cols = []
    for f in df.schema.fields:
        if isinstance(f.dataType, (StructType, ArrayType, MapType)):
            cols.append(F.to_json(F.col(f.name)).alias(f.name))
        else:
            cols.append(F.col(f.name))
    return df.select(*cols)


def describe_output(spark: SparkSession, out: OutputSection) -> dict[str, Any]:
    """Where the output is and what it holds: rows, columns, Delta version."""
    location = out.target
    if out.format != "table" and "://" not in location and not location.startswith("/"):
        location = os.path.abspath(location)
    info: dict[str, Any] = {"format": out.format, "location": location}
    df = read_output(spark, out)
    if df is None:
        return {**info, "rows": 0, "columns": {}}
    info["rows"] = df.count()
    info["columns"] = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    if out.is_delta:
        try:
            from delta.tables import DeltaTable

            table = (
                DeltaTable.forName(spark, out.target)
                if out.format == "table"
                else DeltaTable.forPath(spark, out.target)
            )
            last = table.history(1).collect()[0]
            info["version"] = int(last["version"])
            if out.format == "table":
                detail = table.detail().collect()[0]
                info["location"] = f"{out.table} ({detail['location']})"
        except Exception:  # noqa: BLE001 - informative only
            pass
    return info


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    if "DATA_SOURCE_NOT_FOUND" in text and "delta" in text.lower():
        return DELTA_HINT
    return text.splitlines()[0] if text else type(e).__name__
