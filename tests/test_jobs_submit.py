"""``spark-submit jobs/run_job.py conf.yaml`` against local[2], hfspark shipped as a zip (--py-files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.jobs import ROOT, SAMPLE, job_conf, save_tiny, write_conf


def _zip_package(dest: Path) -> Path:
    """hfspark's sources as a zip for --py-files (what `zip -r hfspark.zip hfspark` gives)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "hfspark").rglob("*.py")):
            zf.write(path, path.relative_to(ROOT).as_posix())
    return dest


@pytest.mark.slow
def test_spark_submit_runs_the_job(tiny_models, tmp_path) -> None:
    import pyspark

    from hfspark.jars import delta_jars

    models = save_tiny(tiny_models, tmp_path / "models")
    out = tmp_path / "out"
    conf = job_conf(
        {"format": "json", "path": str(SAMPLE), "id_column": "id", "limit": 24},
        models["text-classification"],
        {"path": str(out)},
        run={"chunk_rows": 12, "report_path": str(tmp_path / "reports")},
    )
    conf["spark"] = {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": 2}}
    path = write_conf(tmp_path / "job.yaml", conf)
    package = _zip_package(tmp_path / "hfspark.zip")
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    cmd = [
        str(submit),
        "--master",
        "local[2]",
        "--py-files",
        str(package),
        "--jars",
        ",".join(str(j) for j in delta_jars()),
        "--conf",
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf",
        "spark.ui.enabled=false",
        "--driver-memory",
        "1g",
        str(ROOT / "jobs" / "run_job.py"),
        str(path),
        "--set",
        "run.progress=log",
    ]
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"wrote 24 rows to delta {out}" in proc.stdout
    report = json.loads(next((tmp_path / "reports").glob("*/report.json")).read_text())
    assert report["status"] == "succeeded" and len(report["chunks"]) == 2
    assert report["spark"]["master"] == "local[2]"  # spark-submit's master, not the conf's
    assert report["spark"]["hfspark_from"].startswith(str(package))  # imported from the zip
    from deltalake import DeltaTable

    rows = DeltaTable(str(out)).to_pyarrow_table().to_pylist()
    assert sorted(r["id"] for r in rows) == list(range(1, 25))

    # a failing job: exit code 2 (invalid configuration) with a one-line reason
    bad = subprocess.run(
        [*cmd[:-4], str(ROOT / "jobs" / "run_job.py"), str(path), "--set", "run.chunk_row=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # spark-submit's PythonRunner passes the driver's stderr on through its stdout
    assert bad.returncode == 2 and "did you mean 'chunk_rows'" in bad.stdout, (
        bad.stdout + bad.stderr
    )
