"""Smoke tests of ``make bench`` (``python -m bench.run``) in quick mode.

They check that the run finishes, prints the tables and the PASS/FAIL target lines, and
writes ``latest.md``, ``latest.json`` and ``latest.png``. No timing is asserted: the
numbers of a quick run on a shared machine mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.bench]

ROOT = Path(__file__).resolve().parents[1]


def _run_bench(tmp_path: Path, **env: str) -> tuple[str, Path]:
    out = tmp_path / "results"
    full_env = {
        **os.environ,
        "HFSPARK_BENCH_QUICK": "1",
        "HFSPARK_BENCH_OUT": str(out),
        "HFSPARK_BENCH_WORK": str(tmp_path / "work"),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout, out


def _check_files(out: Path) -> dict:
    md = (out / "latest.md").read_text()
    assert "# hfspark benchmark" in md and "## Targets" in md
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return json.loads((out / "latest.json").read_text())


@pytest.mark.timeout(1500)  # ~2-3 min on a quiet 2-core machine, 10.5 min seen at load 10
def test_bench_quick_classification(tmp_path: Path) -> None:
    """hfspark, MLflow default, ceiling and int8/bf16 on 60 rows at 2 and 32 partitions."""
    stdout, out = _run_bench(
        tmp_path,
        HFSPARK_BENCH_ROWS="60",
        HFSPARK_BENCH_TASKS="classification",
        HFSPARK_BENCH_SYSTEMS="hfspark,mlflow default",
    )
    assert "## text-classification" in stdout
    assert "compute ceiling (row)" in stdout and "compute ceiling (sorted16)" in stdout
    for line in (
        "hfspark >= 0.95x compute ceiling at 2 partitions",
        "hfspark >= 1.1x MLflow best at 32 partitions",
        "hfspark model loads = Python workers at 32 partitions",
    ):
        assert any(x.startswith(("PASS", "FAIL")) and line in x for x in stdout.splitlines()), line
    data = _check_files(out)
    systems = {(r["system"], r["partitions"]) for r in data["spark"]}
    assert systems == {(s, p) for s in ("hfspark", "mlflow default") for p in (2, 32)}
    hf = [r for r in data["spark"] if r["system"] == "hfspark"]
    assert all(r["rows"] == 60 and r["rows_per_s"] > 0 and r["workers"] >= 1 for r in hf)
    assert all(r["loads_total"] is not None and r["loads_total"] >= 1 for r in hf)
    assert {q["variant"] for q in data["quant"]} == {
        "fp32",
        "fp32 oneDNN kernels (default)",
        "fp32 pruned last layer",
        "fp32 pruned + oneDNN (default)",
        "int8 dynamic",
        "bf16",
        "onnx fp32 (ONNX Runtime)",
        "onnx fp32, hfspark's graph",
    }
    for q in data["quant"]:
        if q["variant"].startswith(("fp32 pruned", "fp32 oneDNN")):
            assert q["label_agreement"] == 1.0 and q["max_abs_score_diff"] < 1e-5, q
    ceiling = data["ceiling"]["text-classification"]  # one round beside each timed hfspark job
    assert {(c["mode"], c["partitions"]) for c in ceiling} == {
        (m, p)
        for m in ("row", "sorted8", "sorted16", "onnx-sorted8", "onnx-sorted16")
        for p in (2, 32)
    }
    assert all(len(c["all_seconds"]) == 1 and c["rows"] == 60 for c in ceiling)
    assert "compute ceiling (sorted8) | beside 32" in stdout
    assert not data["failures"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bench_quick_all_tasks(tmp_path: Path) -> None:
    """The whole quick run: every system, embeddings and Whisper speech too."""
    stdout, out = _run_bench(tmp_path)
    assert "## feature-extraction" in stdout
    data = _check_files(out)
    assert {r["task"] for r in data["spark"]} >= {"text-classification", "feature-extraction"}
    assert data["speech"] or any("espeak" in f for f in data["failures"])
