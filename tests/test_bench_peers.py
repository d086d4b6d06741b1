"""Unit tests of the benchmark's peers section: its table, targets and vector check (no Spark,
no peers environment; the section itself runs in ``make bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import peers, peers_report


def _row(system: str, parts: int | None, cold_s: float | None, warm: float | None = None) -> dict:
    kind = "hfspark" if system.startswith("hfspark") else "peer"
    row = {**peers._row(peers.Peer(system, "x", parts is not None), parts), "kind": kind}
    if cold_s is not None:
        row.update(
            rows=100,
            cold_s=cold_s,
            warm_s=100 / (warm or 50.0),
            cold_rows_per_s=100 / cold_s,
            warm_rows_per_s=warm or 50.0,
            cosine_min=0.99999,
            cosine_mean=1.0,
            config=f"{system} settings",
            versions={"torch": "2"},
        )
    else:
        row["note"] = "RuntimeError: exit 1: ImportError: no | such module"
    return row


def _section(**over: Any) -> dict[str, Any]:
    p = {
        "rows": [
            _row("hfspark", 2, 10.0, warm=60.0),
            _row("hfspark", 32, 12.0, warm=48.0),
            _row("MLflow", 2, 20.0),
            _row("MLflow", 32, 30.0),
            _row("Daft", None, 11.5),
            _row("Ray", None, None),
        ],
        "ceiling": [
            {"mode": "sorted8", "rows_per_s": 55.0, "all_seconds": [1.0, 1.1], "processes": 2},
            {"mode": "row", "rows_per_s": 40.0, "all_seconds": [1.0, 1.1], "processes": 2},
        ],
        "partitions": [2, 32],
        "cores": 2,
        "n_rows": 100,
        "max_length": 256,
        "reference": "sentence-transformers encode(normalize_embeddings=True)",
    }
    return {**p, **over}


def test_targets_compare_with_the_fastest_peer_at_each_partition_count() -> None:
    lines = peers_report.targets(_section())
    # 2 partitions: Daft (no partitions) is the fastest peer: 10 vs 8.7 rows/s -> 1.15x, pass
    ok, line = lines[0]
    assert ok and "at 2 partitions: 1.15x the fastest, Daft (" in line
    assert "not measured: Ray" in line
    # warm vs ceiling: 60 / 55 = 1.09x passes at 2 partitions, 48 / 55 = 0.87x fails at 32
    assert lines[1][0] and "1.09x" in lines[1][1]
    assert not lines[2][0] and "0.96x the fastest, Daft" in lines[2][1]
    assert not lines[3][0] and "0.87x" in lines[3][1]
    assert lines[-1][0] and "5 of 6 rows checked" in lines[-1][1]


def test_a_failed_hfspark_row_is_a_failed_target() -> None:
    p = _section()
    p["rows"][0] = _row("hfspark", 2, None)
    ok, line = peers_report.targets(p)[0]
    assert not ok and "hfspark at 2 partitions not measured: RuntimeError" in line


def test_section_table_has_every_row_the_ceiling_and_the_reasons() -> None:
    lines = peers_report.section(_section())
    table = [ln for ln in lines if ln.startswith("| ")]
    assert len(table) == 1 + 6 + 2  # header, rows, ceiling modes
    ray = next(ln for ln in table if ln.startswith("| Ray "))
    assert "ImportError: no / such module" in ray  # a pipe in a reason cannot break the table
    daft = next(ln for ln in table if ln.startswith("| Daft "))
    assert "1.15x | 0.96x" in daft  # hfspark cold over Daft cold at 2 and at 32 partitions
    mlflow_32 = next(ln for ln in table if ln.startswith("| MLflow | 32"))
    assert "| - | 2.50x |" in mlflow_32
    assert any(ln.startswith("- hfspark: hfspark settings (torch 2)") for ln in lines)
    assert peers_report.targets({}) == []


def test_cosines_of_both_queries_against_the_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "cold.npy", 3 * ref)  # scale does not matter
    warm = ref.copy()
    warm[2] = -warm[2]
    np.save(tmp_path / "warm.npy", warm)
    low, mean = peers._cosines(tmp_path, ref)
    assert low == pytest.approx(-1.0) and mean == pytest.approx((1.0 + 0.6) / 2)
    assert peers._cosines(tmp_path, None) == (None, None)
    np.save(tmp_path / "warm.npy", ref[:3])
    with pytest.raises(RuntimeError, match="shape"):
        peers._cosines(tmp_path, ref)


def test_last_error_picks_the_exception_line() -> None:
    text = "INFO starting\nTraceback (most recent call last):\n  File x\nValueError: bad\nbye\n"
    assert peers._last_error(text) == "ValueError: bad"
    assert peers._last_error("") == "no output"
