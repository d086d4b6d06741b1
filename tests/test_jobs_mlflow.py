"""Jobs as MLflow runs (``run.mlflow``), on real Spark and a real ``mlflow server`` on loopback:
parameters, metrics at intervals and at the end, report artifacts, output tags; a server that
is down does not fail the job.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("mlflow")
pytestmark = pytest.mark.filterwarnings("ignore")
TEXTS = [
    "I love this movie, it is great.",
    "Terrible, boring and bad.",
    "Hello world!",
    "The weather in Paris is sunny today.",
] * 2  # 8 rows, 2 chunks of about 4


@pytest.fixture(scope="module")
def sentiment(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    from hfspark.flavor import save_model

    dest = tmp_path_factory.mktemp("jobs-mlflow") / "sentiment"
    save_model(str(tiny_models["text-classification"]), dest, task="text-classification")
    return str(dest)


def _conf(tmp_path: Path, model: str, mlflow: dict[str, Any] | None) -> str:
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS)))
    run: dict[str, Any] = {
        "progress": "off",
        "chunk_rows": 4,
        "report_path": str(tmp_path / "reports"),
    }
    if mlflow is not None:
        run["mlflow"] = mlflow
    return yaml.safe_dump(
        {
            "input": {"format": "json", "path": str(data), "id_column": "id"},
            "models": [
                {
                    "name": "sentiment",
                    "uri": model,
                    "inputs": "text",
                    "options": {"errors": "column"},
                }
            ],
            "output": {"format": "delta", "path": str(tmp_path / "out")},
            "run": run,
        }
    )


def test_job_is_logged_as_an_mlflow_run(spark, mlflow_server, sentiment, tmp_path):
    from mlflow.tracking import MlflowClient

    from hfspark.jobs import parse_config, run_job

    job = parse_config(
        _conf(
            tmp_path,
            sentiment,
            {
                "experiment": "hfspark-jobs-test",
                "tracking_uri": mlflow_server.url,
                "log_every_s": 0.2,
                "tags": {"team": "search"},
            },
        )
    )
    report = run_job(job, spark)
    assert report.status == "succeeded" and report.rows["written"] == len(TEXTS)
    run_id = report.tracking["mlflow_run_id"]
    saved = json.loads(Path(report.paths["json"]).read_text())
    assert saved["tracking"]["mlflow_run_id"] == run_id
    assert run_id in Path(report.paths["markdown"]).read_text()

    client = MlflowClient(mlflow_server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "hfspark-jobs-test"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["conf.input.format"] == "json" and params["conf.run.chunk_rows"] == "4"
    assert params["model.sentiment.uri"] == sentiment
    assert params["model.sentiment.hash"] == report.models[0]["content_hash"]
    assert params["model.sentiment.task"] == "text-classification"
    assert metrics["rows_processed"] == len(TEXTS) and metrics["rows_written"] == len(TEXTS)
    assert metrics["errors"] == 0 and metrics["rows_per_s"] > 0
    assert metrics["time_infer_s"] > 0 and metrics["time_write_s"] > 0 and metrics["duration_s"] > 0
    chunks = client.get_metric_history(run_id, "chunk_rows")
    assert sorted(m.step for m in chunks) == [1, 2] == [c.chunk + 1 for c in report.chunks]
    assert sum(m.value for m in chunks) == len(TEXTS)
    assert len(client.get_metric_history(run_id, "rows_processed")) >= 2  # at intervals + the end
    assert tags["hfspark.status"] == "succeeded" and tags["team"] == "search"
    assert tags["hfspark.run_id"] == report.run_id
    assert tags["hfspark.output.format"] == "delta"
    assert tags["hfspark.output.location"] == report.output["location"]
    assert tags["hfspark.output.version"] == str(report.output["version"])
    names = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/report.json", "report/report.md", "report/throughput.png"} <= names


def test_failed_job_ends_its_run_failed(spark, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from hfspark.jobs import parse_config, run_job

    job = parse_config(
        _conf(
            tmp_path,
            str(tmp_path / "no-such-model"),
            {"experiment": "hfspark-jobs-test", "tracking_uri": mlflow_server.url},
        )
    )
    report = run_job(job, spark, raise_on_error=False)
    assert report.status == "failed"
    run = MlflowClient(mlflow_server.url).get_run(report.tracking["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert "no-such-model" in run.data.tags["hfspark.reason"]


def test_a_tracking_server_that_is_down_does_not_fail_the_job(spark, sentiment, tmp_path, caplog):
    from hfspark.jobs import parse_config, run_job
    from tests.helpers.servers import _free_port

    down = f"http://127.0.0.1:{_free_port()}"
    job = parse_config(_conf(tmp_path, sentiment, {"tracking_uri": down}))
    with caplog.at_level(logging.WARNING, logger="hfspark.jobs"):
        report = run_job(job, spark)
    assert report.status == "succeeded" and report.rows["written"] == len(TEXTS)
    assert report.tracking == {}
    assert any(
        "is not reachable" in r.getMessage() and down in r.getMessage() for r in caplog.records
    )
    assert Path(report.paths["json"]).is_file() and Path(report.paths["markdown"]).is_file()


def test_mlflow_is_off_unless_configured_and_its_keys_are_checked(tmp_path, sentiment):
    from hfspark.errors import ConfigError
    from hfspark.jobs import parse_config

    assert parse_config(_conf(tmp_path, sentiment, None)).run.mlflow is None
    with pytest.raises(ConfigError, match="experimnt"):
        parse_config(_conf(tmp_path, sentiment, {"experimnt": "x"}))
