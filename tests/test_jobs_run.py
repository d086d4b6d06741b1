"""Batch jobs end to end on local[2] Spark with tiny models: every input and output format,
chained steps, error column and budget, the run report, and resume with idempotent commits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfspark.jobs import JobFailed, load_config, run_job
from tests.helpers.jobs import AUDIO, NULL_IDS, job_conf, sample_rows, save_tiny, write_conf

# A struct input whose first field is set on every row: the rows with a null ``text`` reach
# the adapter and become row errors ("input 'text' must be a string") instead of null rows.
PAIR_FIRST = {"text_pair": "source", "text": "text"}


@pytest.fixture(scope="module")
def models(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return save_tiny(tiny_models, tmp_path_factory.mktemp("saved"))


@pytest.fixture(scope="module")
def inputs(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The same 63 rows (3 with a null text) as parquet, csv, json, delta and a catalog table."""
    import pandas as pd

    root = tmp_path_factory.mktemp("inputs")
    pdf = pd.DataFrame(sample_rows(60))
    df = spark.createDataFrame(pdf, "id long, source string, text string").coalesce(1)
    for fmt in ("parquet", "json", "delta"):
        df.write.format(fmt).save(str(root / fmt))
    pdf.to_csv(root / "in.csv", index=False)  # written by pandas: an independent CSV writer
    spark.sql(f"CREATE TABLE jobs_input USING delta LOCATION '{root / 'delta'}'")
    return {
        "parquet": {"format": "parquet", "path": str(root / "parquet")},
        "csv": {"format": "csv", "path": str(root / "in.csv")},
        "json": {"format": "json", "path": str(root / "json")},
        "delta": {"format": "delta", "path": str(root / "delta")},
        "table": {"format": "table", "name": "jobs_input"},
    }


def _run(tmp_path: Path, conf: dict, spark, **kw):
    path = write_conf(tmp_path / "job.yaml", conf)
    return run_job(load_config(path), spark, source=str(path), **kw)


def _delta_rows(path: str) -> list[dict]:
    """Rows of a Delta table read with delta-rs (an independent reader)."""
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_table().to_pylist()


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("parquet", "delta"),
        ("csv", "parquet"),
        ("json", "json"),
        ("delta", "csv"),
        ("table", "table"),
    ],
)
def test_input_and_output_formats(spark, tmp_path, models, inputs, src, dst) -> None:
    target = tmp_path / "out"
    out = (
        {"format": "table", "table": f"jobs_out_{src}", "path": str(target)}
        if dst == "table"
        else {"format": dst, "path": str(target)}
    )
    conf = job_conf(
        {**inputs[src], "id_column": "id"},
        models["text-classification"],
        out,
        inputs=PAIR_FIRST,
        run={"chunk_rows": 40, "report_path": str(tmp_path / "rep")},
    )
    report = _run(tmp_path, conf, spark)
    assert report.status == "succeeded"
    assert report.rows["input"] == report.rows["written"] == 63
    assert report.rows["errors"] == 3 and len(report.chunks) == 2
    assert report.verification == {"missing": 0, "duplicates": 0}
    if dst == "table":
        back = spark.read.table(f"jobs_out_{src}")
    elif dst == "csv":
        back = (
            spark.read.option("header", True)
            .option("multiLine", True)
            .option("escape", '"')
            .csv(str(target))
        )
    else:
        back = spark.read.format(dst).load(str(target))
    rows = {int(r["id"]): r for r in back.collect()}
    assert len(rows) == 63 and set(rows) == {r["id"] for r in sample_rows(60)}
    for col in ("_model_name", "_model_hash", "_run_id", "_inferred_at"):
        assert col in back.columns
    pred = rows[1]["pred"]
    label = json.loads(pred)["label"] if dst == "csv" else pred["label"]
    assert label in ("NEGATIVE", "POSITIVE")
    bad = rows[NULL_IDS[0]]["pred"]
    error = json.loads(bad)["error"] if dst == "csv" else bad["error"]
    assert "must be a string" in error
    if dst in ("delta", "table"):
        independent = _delta_rows(str(target))
        assert sorted(r["id"] for r in independent) == sorted(int(i) for i in rows)
        assert {r["_run_id"] for r in independent} == {report.run_id}


def test_binary_files_speech_to_text(spark, tmp_path, models) -> None:
    conf = load_config(
        Path(__file__).resolve().parents[1] / "conf" / "speech_to_text.yaml",
        [
            f"input.path={AUDIO}",
            f"models.transcript.uri={models['automatic-speech-recognition']}",
            f"output.path={tmp_path / 'asr'}",
            "run.progress=off",
            f"run.report_path={tmp_path}",
            "models.transcript.options.device=cpu",
        ],
    )
    report = run_job(conf, spark)
    assert report.status == "succeeded" and report.rows["written"] == 4
    rows = _delta_rows(str(tmp_path / "asr"))
    assert sorted(Path(r["path"]).name for r in rows) == [f"utt0{i}.wav" for i in range(1, 5)]
    assert "content" not in rows[0]  # audio bytes are not copied to the output
    assert all(
        r["transcript"]["error"] is None and isinstance(r["transcript"]["text"], str) for r in rows
    )


def test_chained_steps_filter_limit_columns(spark, tmp_path, models, inputs) -> None:
    conf = job_conf(
        {
            **inputs["parquet"],
            "id_column": "id",
            "filter": "text IS NOT NULL",
            "limit": 12,
            "columns": ["text"],
        },
        models["summarization"],
        {"path": str(tmp_path / "out"), "partition_by": ["_run_id"]},
        name="summary",
        params={"max_new_tokens": 4, "truncate_prompt": True},
    )
    conf["models"].append(
        {
            "name": "label",
            "uri": models["text-classification"],
            "inputs": "summary.generated_text",
            "options": {"device": "cpu"},
        }
    )
    conf["output"]["columns"] = ["summary", "label"]
    report = _run(tmp_path, conf, spark)
    assert report.status == "succeeded" and report.rows["written"] == 12
    rows = _delta_rows(str(tmp_path / "out"))
    assert sorted(r["id"] for r in rows) == list(range(1, 13))  # limit keeps the first ids
    assert set(rows[0]) == {
        "id",
        "summary",
        "label",
        "_model_name",
        "_model_hash",
        "_run_id",
        "_inferred_at",
    }
    assert rows[0]["_model_name"] == "summary,label" and "," in rows[0]["_model_hash"]
    assert rows[0]["label"]["label"] in ("NEGATIVE", "POSITIVE"), rows[0]["summary"]["error"]
    assert report.rows["tokens"] == sum(
        r["summary"]["prompt_tokens"] + r["summary"]["completion_tokens"] for r in rows
    )
    assert report.tokens_per_s and report.tokens_per_s > 0


def test_error_budget_stops_the_job(spark, tmp_path, models, inputs) -> None:
    conf = job_conf(
        {**inputs["json"], "id_column": "id"},
        models["text-classification"],
        {"path": str(tmp_path / "out")},
        inputs=PAIR_FIRST,
        run={"max_errors": 1, "chunk_rows": 1000, "report_path": str(tmp_path / "rep")},
    )
    with pytest.raises(
        JobFailed, match=r"error budget exceeded: 3 rows with errors > run.max_errors 1"
    ) as e:
        _run(tmp_path, conf, spark)
    report = e.value.report
    assert report.status == "error_budget_exceeded"
    assert report.rows["written"] == 0 and len(report.error_samples) == 3
    saved = json.loads(Path(report.paths["json"]).read_text())
    assert saved["status"] == "error_budget_exceeded" and "max_errors" in saved["reason"]
    conf["run"] = {**conf["run"], "max_errors": None, "max_error_rate": 0.10}
    assert _run(tmp_path, conf, spark).status == "succeeded"  # 3/63 = 4.8% <= 10%


def test_report_contents_and_secrets(spark, tmp_path, models, inputs, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test_secret_token_value")
    conf = job_conf(
        {**inputs["parquet"], "id_column": "id"},
        models["feature-extraction"],
        {"path": str(tmp_path / "emb")},
        task="feature-extraction",
        errors="raise",
        run={"chunk_rows": 25, "report_path": str(tmp_path / "rep")},
    )
    conf["input"]["filter"] = "text IS NOT NULL"
    conf["spark"]["conf"] = {"spark.hadoop.fs.s3a.secret.key": "s3-secret-value-123"}
    report = _run(tmp_path, conf, spark)
    folder = Path(report.paths["json"]).parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "report.json",
        "report.md",
        "throughput.png",
    ]
    data = json.loads((folder / "report.json").read_text())
    assert data["status"] == "succeeded" and data["rows"]["written"] == 60
    assert [c["rows"] for c in data["chunks"]] and sum(c["rows"] for c in data["chunks"]) == 60
    assert data["rows_per_s"] > 0 and set(data["timings_s"]) >= {"read", "infer", "write"}
    assert sum(data["model_loads"].values()) >= 1
    assert {"spark", "pyspark", "delta-spark", "transformers", "torch", "hfspark"} <= set(
        data["versions"]
    )
    assert data["models"][0]["content_hash"] and data["output"]["rows"] == 60
    text = "\n".join(p.read_text() for p in (folder / "report.json", folder / "report.md"))
    assert "s3-secret-value-123" not in text and "hf_test_secret_token_value" not in text
    assert data["conf"]["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert (folder / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "hfspark run" in (folder / "report.md").read_text()
    vectors = _delta_rows(str(tmp_path / "emb"))
    assert len(vectors[0]["pred"]) == 32  # tiny BERT hidden size


def test_resume_skips_written_ids_and_repairs_gaps(spark, tmp_path, models, inputs) -> None:
    out = str(tmp_path / "out")
    conf = job_conf(
        {**inputs["delta"], "id_column": "id"},
        models["text-classification"],
        {"path": out},
        inputs=PAIR_FIRST,
        run={"chunk_rows": 20, "report_path": None},
    )
    first = _run(tmp_path, conf, spark)
    assert first.rows["written"] == 63 and len(first.chunks) == 4
    again = _run(tmp_path, conf, spark)  # nothing left to do
    assert again.rows["already_done"] == 63 and again.rows["written"] == 0 and not again.chunks
    assert again.fingerprint == first.fingerprint == again.txn_app_id
    # Remove some rows: their chunks' txnVersions are already committed under the same
    # fingerprint, so Delta would skip them; the run notices the gap and writes them again.
    spark.sql(f"DELETE FROM delta.`{out}` WHERE id <= 5")
    repaired = _run(tmp_path, conf, spark)
    assert repaired.verification == {"missing": 0, "duplicates": 0}
    ids = [r["id"] for r in _delta_rows(out)]
    assert len(ids) == len(set(ids)) == 63


def test_idempotent_commit_is_not_applied_twice(spark, tmp_path, models, inputs) -> None:
    from hfspark.jobs.config import OutputSection
    from hfspark.jobs.storage import write_frame

    out = OutputSection(path=str(tmp_path / "t"))
    df = spark.range(5)
    write_frame(df, out, "append", ("job-fp", 0))
    write_frame(df, out, "append", ("job-fp", 0))  # a retried commit of chunk 0
    write_frame(df, out, "append", ("job-fp", 1))
    assert len(_delta_rows(out.path)) == 10
