"""Check a job without running inference: configuration, input schema, models, output.

Example:
    >>> from hfspark.jobs import load_config, validate_job
    >>> summary = validate_job(load_config("conf/embeddings.yaml"), spark)
    >>> summary["steps"][0]["task"]
    'feature-extraction'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError
from hfspark.jobs.config import JobConfig
from hfspark.jobs.models import apply_steps, build_steps
from hfspark.jobs.runner import output_frame
from hfspark.jobs.storage import (
    check_columns,
    output_exists,
    read_input,
    read_output,
    require_delta,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["validate_job", "format_summary"]


def validate_job(job: JobConfig, spark: SparkSession) -> dict[str, Any]:
    """Read the input schema, the models' metadata and the output table; check they fit.

    Nothing is inferred and no model weights are loaded. Returns a summary of the input,
    steps and output schemas.

    Raises:
        ConfigError / InputSchemaError / ModelValidationError: what does not fit, and why.
    """
    if job.input.format == "delta" or job.output.is_delta:
        require_delta(spark)
    df = read_input(spark, job.input)
    steps = build_steps(job)
    shaped = output_frame(apply_steps(df, steps), steps, job, "validate")
    check_columns(shaped, job.output.partition_by, "output.partition_by")
    exists = output_exists(spark, job.output)
    resume = job.run.resume_enabled(job)
    if exists and job.output.mode == "error":
        raise ConfigError(f"output {job.output.target!r} exists and output.mode is 'error'")
    if exists and resume:
        done = read_output(spark, job.output)
        if done is not None and job.input.id_column:
            check_columns(done, [job.input.id_column], f"output {job.output.target!r} (to resume)")
    return {
        "input": {f.name: f.dataType.simpleString() for f in df.schema.fields},
        "steps": [
            {
                "name": s.config.name,
                "task": s.info.task,
                "uri": s.uri,
                "content_hash": s.info.content_hash,
                "output": s.config.output_column,
                "type": s.udf.returnType.simpleString(),
            }
            for s in steps
        ],
        "output": {f.name: f.dataType.simpleString() for f in shaped.schema.fields},
        "target": {
            "format": job.output.format,
            "location": job.output.target,
            "exists": exists,
            "mode": job.output.mode,
            "resume": resume,
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The validation summary as text for the terminal."""
    lines = ["input columns:"]
    lines += [f"  {k}: {v}" for k, v in summary["input"].items()]
    lines.append("model steps:")
    for s in summary["steps"]:
        lines.append(f"  {s['name']} [{s['task']}] {s['uri']} (hash {s['content_hash'][:12]})")
        lines.append(f"    -> {s['output']}: {s['type']}")
    t = summary["target"]
    lines.append(
        f"output ({t['format']} {t['location']}, mode {t['mode']}, "
        f"{'exists' if t['exists'] else 'new'}, resume {'on' if t['resume'] else 'off'}):"
    )
    lines += [f"  {k}: {v}" for k, v in summary["output"].items()]
    return "\n".join(lines)
