"""Batch jobs: a YAML configuration -> read -> infer -> write (Delta), resumable and observable.

Example:
    >>> from hfspark.jobs import load_config, run_job
    >>> report = run_job(load_config("conf/embeddings.yaml"))
    >>> report.output["location"], report.rows["written"]
"""

from hfspark.jobs.config import JobConfig
from hfspark.jobs.loader import load_config, parse_config
from hfspark.jobs.report import RunReport
from hfspark.jobs.runner import JobFailed, job_session, run_job
from hfspark.jobs.validate import validate_job

__all__ = [
    "JobConfig",
    "JobFailed",
    "RunReport",
    "job_session",
    "load_config",
    "parse_config",
    "run_job",
    "validate_job",
]
