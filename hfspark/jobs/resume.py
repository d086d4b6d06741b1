"""Exactly-once chunking: deterministic chunks, ids already written skipped, checks at the end.

Rows are split into ``n`` chunks by ``pmod(xxhash64(id), n)`` with ``n = ceil(rows /
chunk_rows)``, so the same input always gives the same chunks. A resumed run drops the ids
already in the output (left anti join), and each chunk is one Delta commit with
``txnAppId`` = the job fingerprint and ``txnVersion`` = the chunk number: a retried commit
of a chunk is skipped by Delta instead of being applied twice.

Example:
    >>> plan = plan_chunks(df, "id", total=1000, chunk_rows=250, done_ids=None)
    >>> plan.n_chunks, sorted(plan.counts)
    (4, [0, 1, 2, 3])
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hfspark.errors import InputSchemaError
from hfspark.jobs.config import JobConfig

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "CHUNK_COLUMN",
    "InputStats",
    "Plan",
    "input_stats",
    "job_fingerprint",
    "plan_chunks",
    "verify_output",
]

CHUNK_COLUMN = "__hfspark_chunk"


@dataclass(frozen=True)
class InputStats:
    """Row counts of the input (ids checked unique and non-null when there is an id column)."""

    rows: int
    distinct_ids: int | None = None


@dataclass
class Plan:
    """The rows still to process, tagged with their chunk, and the rows per chunk."""

    pending: DataFrame
    n_chunks: int
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows still to process."""
        return sum(self.counts.values())

    def chunk(self, k: int) -> DataFrame:
        """The rows of chunk ``k`` (without the chunk column)."""
        from pyspark.sql import functions as F

        return self.pending.filter(F.col(CHUNK_COLUMN) == k).drop(CHUNK_COLUMN)


def input_stats(df: DataFrame, id_column: str | None) -> InputStats:
    """Count the input; with an id column refuse null or repeated ids (one pass).

    Raises:
        InputSchemaError: ids are null or not unique (exactly-once needs unique ids).
    """
    from pyspark.sql import functions as F

    if not id_column:
        return InputStats(rows=df.count())
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.col(id_column)).alias("ids"),
        F.countDistinct(F.col(id_column)).alias("distinct"),
    ).collect()[0]
    rows, ids, distinct = int(row["rows"]), int(row["ids"]), int(row["distinct"])
    if ids < rows:
        raise InputSchemaError(
            f"input.id_column {id_column!r} is null in {rows - ids} of {rows} rows; drop them "
            f'(input.filter: "{id_column} IS NOT NULL") or pick another id column'
        )
    if distinct < rows:
        raise InputSchemaError(
            f"input.id_column {id_column!r} is not unique: {rows - distinct} repeated ids in "
            f"{rows} rows; exactly-once output needs one row per id"
        )
    return InputStats(rows=rows, distinct_ids=distinct)


def job_fingerprint(
    job: JobConfig, model_hashes: list[str], stats: InputStats, n_chunks: int
) -> str:
    """A stable id of what a job computes (input, models, output, chunking): the Delta txnAppId.

    Settings that do not change results (batch size, device, dtype, progress) are left out,
    so a rerun with a smaller batch after an out-of-memory crash still resumes.
    """
    steps = []
    for step, content_hash in zip(job.models, model_hashes, strict=True):
        opts = step.options
        steps.append(
            {
                "name": step.name,
                "uri": step.uri,
                "task": step.task,
                "hash": content_hash,
                "inputs": step.inputs,
                "output": step.output_column,
                "errors": opts.errors,
                "max_length": opts.max_length,
                "params": opts.params,
            }
        )
    payload: dict[str, Any] = {
        "input": job.input.model_dump(mode="json"),
        "models": steps,
        "output": job.output.model_dump(
            mode="json", include={"format", "path", "table", "columns"}
        ),
        "rows": stats.rows,
        "chunks": n_chunks,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"hfspark-{digest[:24]}"


def chunk_key(df: DataFrame, id_column: str | None) -> Column:
    """The hash that places a row in a chunk (the id, else the whole row)."""
    from pyspark.sql import functions as F

    cols = [F.col(id_column)] if id_column else [F.col(c) for c in df.columns]
    return F.xxhash64(*cols)


def n_chunks_for(rows: int, chunk_rows: int) -> int:
    """How many chunks of about ``chunk_rows`` rows (at least one)."""
    return max(1, math.ceil(rows / chunk_rows))


def plan_chunks(
    df: DataFrame,
    id_column: str | None,
    n_chunks: int,
    done_ids: DataFrame | None = None,
    partitions: int | None = None,
) -> Plan:
    """Tag rows not yet written with their chunk, cache them, and count rows per chunk.

    With ``partitions`` the rows are spread over that many partitions first, so every chunk
    keeps all executor cores busy (a small input file is often a single partition).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    pending = df
    if done_ids is not None and id_column:
        pending = pending.join(done_ids.select(id_column).distinct(), on=id_column, how="left_anti")
    pending = pending.withColumn(CHUNK_COLUMN, F.pmod(chunk_key(df, id_column), F.lit(n_chunks)))
    if partitions:
        pending = pending.repartition(partitions)
    pending = pending.persist(StorageLevel.MEMORY_AND_DISK)
    counts = {int(r[0]): int(r[1]) for r in pending.groupBy(CHUNK_COLUMN).count().collect()}
    return Plan(pending=pending, n_chunks=n_chunks, counts=dict(sorted(counts.items())))


def verify_output(
    input_df: DataFrame, output_df: DataFrame | None, id_column: str
) -> dict[str, int]:
    """Input ids missing from the output, and ids written more than once."""
    from pyspark.sql import functions as F

    if output_df is None:
        return {"missing": input_df.count(), "duplicates": 0}
    ids = output_df.select(id_column)
    missing = input_df.select(id_column).join(ids.distinct(), on=id_column, how="left_anti").count()
    duplicates = ids.groupBy(id_column).count().filter(F.col("count") > 1).count()
    return {"missing": int(missing), "duplicates": int(duplicates)}
