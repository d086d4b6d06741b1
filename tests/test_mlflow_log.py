"""log_model against a real MLflow tracking server (``mlflow server`` on loopback, sqlite backend,
local artifact root): log, register, alias, then load with mlflow.transformers, mlflow.pyfunc
and hfspark's model_udf by ``runs:/``, ``models:/name/1`` and ``models:/name@champion``.
Also ``hfspark save`` / ``hfspark log`` on the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("mlflow")
pytestmark = pytest.mark.filterwarnings("ignore")
TEXTS = ["I love this movie, it is great.", "Terrible, boring and bad.", "Hello world!"]


@pytest.fixture(scope="module")
def spark(mlflow_tracking: dict[str, Any]) -> Iterator[Any]:
    from hfspark.session import local_spark

    session = local_spark(
        "local[1]",
        app_name="hfspark-test-mlflow-log",
        conf={"spark.sql.shuffle.partitions": "1", **mlflow_tracking["spark_conf"]},
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def logged(mlflow_tracking: dict[str, Any], tiny_models: dict[str, Path]) -> dict[str, Any]:
    """A tiny classifier logged from its folder, registered as ``tiny-log`` v1, alias champion."""
    import mlflow

    from hfspark.flavor import log_model

    mlflow.set_experiment("hfspark-log")
    with mlflow.start_run() as run:
        info = log_model(
            str(tiny_models["text-classification"]),
            "model",
            task="text-classification",
            registered_model_name="tiny-log",
            alias="champion",
            input_example=TEXTS[:2],
            metadata={"team": "search"},
            tags={"stage": "test"},
        )
    return {"run_id": run.info.run_id, "info": info}


def test_logged_model_is_a_complete_mlflow_model(logged):
    import mlflow

    info = logged["info"]
    assert str(info.registered_model_version) == "1" and info.run_id == logged["run_id"]
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("tiny-log", "champion").version == "1"
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{logged['run_id']}/model"))
    doc = yaml.safe_load((local / "MLmodel").read_text())
    assert doc["run_id"] == logged["run_id"] and doc["model_id"] == info.model_id
    assert doc["flavors"]["transformers"]["task"] == "text-classification"
    assert doc["flavors"]["python_function"]["loader_module"] == "mlflow.transformers"
    assert json.loads(doc["signature"]["inputs"]) == [{"type": "string", "required": True}]
    assert [c["name"] for c in json.loads(doc["signature"]["outputs"])] == ["label", "score"]
    assert doc["metadata"]["team"] == "search"
    assert doc["metadata"]["hfspark"]["task"] == "text-classification"
    assert doc["metadata"]["hfspark"]["content_hash"]
    assert doc["saved_input_example_info"]["artifact_path"] == "input_example.json"
    reqs = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("mlflow==") for r in reqs) and any(
        r.startswith("transformers==") for r in reqs
    )
    assert (local / "model_card.md").read_text().strip()
    assert not list(local.rglob("*.bin"))  # safetensors only
    assert client.get_logged_model(info.model_id).tags.get("stage") == "test"


def test_loads_with_mlflow_transformers_pyfunc_and_model_udf(logged, spark):
    import mlflow.pyfunc
    import mlflow.transformers

    from hfspark.udfs import model_udf

    pipe = mlflow.transformers.load_model("models:/tiny-log@champion")
    expected = [r["label"] for r in pipe(TEXTS)]
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{logged['run_id']}/model")
    assert list(pyfunc.predict(TEXTS)["label"]) == expected
    assert list(mlflow.pyfunc.load_model("models:/tiny-log/1").predict(TEXTS)["label"]) == expected
    df = spark.createDataFrame(list(enumerate(TEXTS)), "id long, text string")
    uris = {
        "run": f"runs:/{logged['run_id']}/model",
        "version": "models:/tiny-log/1",
        "alias": "models:/tiny-log@champion",
    }
    udfs = {k: model_udf(u) for k, u in uris.items()}
    assert udfs["alias"].ref.uri == "models:/tiny-log/1"  # pinned on the driver
    rows = df.select("id", *[udfs[k]("text").alias(k) for k in uris]).orderBy("id").collect()
    for k in uris:
        assert [r[k].label for r in rows] == expected, k
    assert [round(r["alias"].score, 5) for r in rows] == [round(r["score"], 5) for r in pipe(TEXTS)]


def test_log_model_starts_a_run_when_none_is_active(mlflow_tracking, tiny_models):
    import mlflow
    import transformers

    from hfspark.errors import ConfigError
    from hfspark.flavor import log_model, read_info

    assert mlflow.active_run() is None
    folder = str(tiny_models["text-generation"])
    pipe = transformers.pipeline("text-generation", model=folder)
    info = log_model(pipe, "gen", validate_serving_input=False)
    assert mlflow.active_run() is None  # the run it started is ended
    run = mlflow.get_run(info.run_id)
    assert run.info.status == "FINISHED"
    got = read_info(f"runs:/{info.run_id}/gen")
    assert got.task == "text-generation" and got.flavor == "hfspark"
    assert read_info(info.model_uri).content_hash == got.content_hash  # models:/m-<id>
    with pytest.raises(ConfigError, match="alias needs registered_model_name"):
        log_model(pipe, "gen", alias="champion")


def test_cli_save_and_log(mlflow_tracking, tiny_models, tmp_path, capsys):
    import mlflow

    from hfspark.cli import main
    from hfspark.flavor import read_info

    folder = str(tiny_models["text-classification"])
    dest = tmp_path / "saved"
    assert main(["save", folder, str(dest), "--task", "text-classification"]) == 0
    assert read_info(dest).task == "text-classification"
    capsys.readouterr()
    code = main(
        [
            "log",
            folder,
            "--task",
            "text-classification",
            "--tracking-uri",
            mlflow_tracking["url"],
            "--experiment",
            "hfspark-cli",
            "--registered-model-name",
            "tiny-cli",
            "--alias",
            "champion",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["alias"] == "models:/tiny-cli@champion" and out["version"] == "models:/tiny-cli/1"
    assert mlflow.get_run(out["run"]).info.experiment_id == (
        mlflow.get_experiment_by_name("hfspark-cli").experiment_id
    )
    assert read_info("models:/tiny-cli@champion").content_hash == read_info(dest).content_hash
    assert main(["log", folder, "--alias", "champion"]) == 2  # a ConfigError: exit code 2
