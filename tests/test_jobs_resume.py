"""Exactly once for real: SIGKILL a running job after its first commits, rerun, compare with a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfspark.cli import main
from tests.helpers.jobs import ROOT, SAMPLE, job_conf, save_tiny, write_conf


@pytest.fixture(scope="module")
def models(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return save_tiny(tiny_models, tmp_path_factory.mktemp("saved"))


N = 120  # input rows (8 chunks of 15)


def _rows(path: Path) -> list[tuple]:
    from deltalake import DeltaTable

    table = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return sorted((r["id"], r["pred"]["label"], round(r["pred"]["score"], 5)) for r in table)


@pytest.mark.slow
def test_rerun_after_sigkill_writes_every_id_exactly_once(spark, tmp_path, models, capsys) -> None:
    out = tmp_path / "out"
    conf = job_conf(
        {"format": "json", "path": str(SAMPLE), "id_column": "id", "limit": N},
        models["text-classification"],
        {"path": str(out)},
        run={
            "chunk_rows": 15,
            "report_path": str(tmp_path / "reports"),
            "progress": "log",
            "log_every_s": 1,
        },
    )
    path = write_conf(tmp_path / "job.yaml", conf)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfspark.cli", "run", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    first_commit = out / "_delta_log" / f"{0:020d}.json"
    deadline = time.monotonic() + 400
    try:
        while not first_commit.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no chunk committed in time"
            time.sleep(0.2)
        time.sleep(1.0)  # maybe a second commit
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
        proc.wait()
    log = proc.stdout.read().decode()
    assert f"{N} input rows, 0 already written, {N} to process in 8 chunk(s)" in log
    assert "progress: " in log  # plain log lines when not on a terminal
    partial = _rows(out)
    assert 1 <= len(partial) < N, "the job must die in the middle"

    assert main(["run", str(path)]) == 0  # the rerun resumes
    printed = capsys.readouterr().out
    assert f"wrote {N - len(partial)} rows to delta {out}" in printed
    assert f"{len(partial)} were there before this run" in printed

    clean = tmp_path / "clean"
    assert (
        main(["run", str(path), "--set", f"output.path={clean}", "--set", "run.chunk_rows=1000"])
        == 0
    )
    resumed, expected = _rows(out), _rows(clean)
    ids = [r[0] for r in resumed]
    assert len(ids) == len(set(ids)) == N  # none twice, none missing
    assert resumed == expected  # same rows as a clean run
    assert set(partial) <= set(resumed)
