"""MLflow as a model source, for real: a local MLflow store (sqlite backend + local artifact
root), a tiny transformers model logged with ``mlflow.transformers.log_model`` and registered,
then run by ``models:/name/1`` and ``models:/name@champion`` in a job and in SQL.

The Spark JVM (local[1]) starts *before* ``MLFLOW_TRACKING_URI`` is set in this process, so its Python
workers only know the tracking URI from ``spark.executorEnv`` (as executors on a cluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("mlflow")
pytestmark = pytest.mark.filterwarnings("ignore")
NAME = "tiny-sentiment"
TEXTS = ["I love this movie, it is great.", "Terrible, boring and bad.", "Hello world!"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Paths of the MLflow store and hfspark's model cache (cache set for the JVM to inherit)."""
    root = tmp_path_factory.mktemp("mlflow")
    keys = ("HFSPARK_CACHE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["HFSPARK_CACHE_DIR"] = str(root / "cache")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    yield {
        "uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifacts": (root / "artifacts").as_uri(),
        "cache": str(root / "cache"),
    }
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def spark(store: dict[str, str]) -> Iterator[Any]:
    from hfspark.session import local_spark

    # local[1]: each model UDF of a query runs in its own Python worker per task, and every
    # worker imports torch and transformers once; one task at a time keeps that cost down.
    session = local_spark(
        "local[1]",
        app_name="hfspark-test-mlflow",
        conf={
            "spark.sql.shuffle.partitions": "1",
            "spark.executorEnv.MLFLOW_TRACKING_URI": store["uri"],
            "spark.executorEnv.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def registry(spark, store: dict[str, str], tiny_models: dict[str, Path]) -> dict[str, Any]:
    """Version 1 logged with mlflow.transformers.log_model (components), version 2 the same
    artifacts; aliases ``champion`` -> 1 and ``challenger`` -> 2."""
    import mlflow
    import mlflow.transformers
    import transformers

    os.environ["MLFLOW_TRACKING_URI"] = store["uri"]  # after the JVM started (see the docstring)
    folder = str(tiny_models["text-classification"])
    parts = {
        "model": transformers.AutoModelForSequenceClassification.from_pretrained(folder),
        "tokenizer": transformers.AutoTokenizer.from_pretrained(folder),
    }
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("hfspark-sql", artifact_location=store["artifacts"])
    with mlflow.start_run(experiment_id=experiment) as run:
        logged = mlflow.transformers.log_model(
            parts,
            name="model",
            task="text-classification",
            registered_model_name=NAME,
            pip_requirements=["transformers", "torch"],
        )  # skips the slow requirement inference
    v1 = client.get_model_version(NAME, logged.registered_model_version)
    v2 = client.create_model_version(NAME, v1.source, run_id=run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", v1.version)
    client.set_registered_model_alias(NAME, "challenger", v2.version)
    return {"client": client, "run_id": run.info.run_id, "v1": v1.version, "v2": v2.version}


def _sidecars(store: dict[str, str]) -> dict[str, str]:
    """Cached remote model -> the URI it was fetched from (pinned to a version)."""
    return {
        p.stem: json.loads(p.read_text())["uri"]
        for p in (Path(store["cache"]) / "models").glob("*.json")
    }


def test_alias_resolves_to_a_version_before_the_cache_key(registry, store):
    from hfspark.errors import ModelStoreError
    from hfspark.flavor import read_info
    from hfspark.flavor.store import cache_dir_for, pin_uri

    client, v1, v2 = registry["client"], registry["v1"], registry["v2"]
    assert pin_uri(f"models:/{NAME}@champion") == f"models:/{NAME}/{v1}"
    assert pin_uri(f"models:/{NAME}/latest") == f"models:/{NAME}/{v2}"
    assert pin_uri(f"models:/{NAME}/{v1}") == f"models:/{NAME}/{v1}"  # no registry call needed
    first = read_info(f"models:/{NAME}@challenger")
    assert first.task == "text-classification" and first.flavor == "mlflow"
    assert first.root == cache_dir_for(f"models:/{NAME}/{v2}")
    client.set_registered_model_alias(NAME, "challenger", v1)  # the alias moves...
    try:
        moved = read_info(f"models:/{NAME}@challenger")  # ...to another cache folder
        assert moved.root == cache_dir_for(f"models:/{NAME}/{v1}") != first.root
        assert moved.content_hash == first.content_hash  # (the same artifacts)
        assert read_info(f"models:/{NAME}/{v1}").root == moved.root  # fetched once per machine
    finally:
        client.set_registered_model_alias(NAME, "challenger", v2)
    assert read_info(f"runs:/{registry['run_id']}/model").content_hash == first.content_hash
    with pytest.raises(ModelStoreError, match="@nope: not found"):
        read_info(f"models:/{NAME}@nope")
    with pytest.raises(ModelStoreError, match="not found"):
        read_info("models:/no-such-model/1")


def test_job_by_version_and_alias(spark, registry, store, tmp_path: Path):
    from hfspark.jobs import parse_config, run_job

    data, out = tmp_path / "in.jsonl", tmp_path / "out"
    data.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS)))
    conf = yaml.safe_dump(
        {
            "spark": {"conf": {"spark.executorEnv.MLFLOW_TRACKING_URI": "${MLFLOW_TRACKING_URI}"}},
            "input": {"format": "json", "path": str(data)},
            "models": [
                {"name": "by_version", "uri": f"models:/{NAME}/{registry['v1']}", "inputs": "text"},
                # the executors resolve the alias themselves: they need the tracking URI
                {
                    "name": "by_alias",
                    "uri": f"models:/{NAME}@champion",
                    "inputs": "text",
                    "options": {"errors": "column"},
                },
            ],
            "output": {"format": "delta", "path": str(out)},
            "run": {"progress": "off", "report_path": str(tmp_path / "reports")},
        }
    )
    job = parse_config(conf)
    assert job.spark.conf["spark.executorEnv.MLFLOW_TRACKING_URI"] == store["uri"]
    report = run_job(job, spark)
    assert report.status == "succeeded" and report.rows["written"] == len(TEXTS)
    assert report.models[0]["content_hash"] == report.models[1]["content_hash"]
    rows = spark.read.format("delta").load(str(out)).collect()
    assert all(r.by_version.label in ("NEGATIVE", "POSITIVE") for r in rows)
    assert all(r.by_alias.label == r.by_version.label and r.by_alias.error is None for r in rows)
    assert f"models:/{NAME}/{registry['v1']}" in _sidecars(store).values()


def test_sql_function_by_alias(spark, registry, store, tmp_path: Path):
    from hfspark.sql import execute, register_all

    spark.createDataFrame(list(enumerate(TEXTS)), "id long, text string").createOrReplaceTempView(
        "t"
    )
    udfs = register_all(
        spark,
        {
            "champion": {"uri": f"models:/{NAME}@champion", "errors": "column"},
            "by_version": {"uri": f"models:/{NAME}/{registry['v2']}"},
        },
    )
    # pinned on the driver: every executor runs the version the alias named at registration
    assert udfs["champion"].ref.uri == f"models:/{NAME}/{registry['v1']}"
    assert udfs["by_version"].ref.uri == f"models:/{NAME}/{registry['v2']}"
    out = tmp_path / "scored"
    results = list(
        execute(
            spark,
            f"""
        CREATE TABLE mlflow_scored USING delta LOCATION '{out}' AS
          SELECT id, champion(text) AS a, by_version(text).label AS b FROM t;
        SELECT count(*) AS n, count_if(a.label = b) AS same FROM mlflow_scored""",
        )
    )
    assert results[-1].rows[0].asDict() == {"n": len(TEXTS), "same": len(TEXTS)}
    spark.sql("DROP TABLE mlflow_scored")


def test_missing_mlflow_is_a_clear_error(tmp_path: Path):
    code = """if True:
        import sys
        sys.modules["mlflow"] = None  # as if mlflow were not installed
        from hfspark.errors import MissingDependencyError
        from hfspark.sql import register_all
        from hfspark.udfs import model_udf
        for call in (lambda: model_udf("models:/sentiment@champion"),
                     lambda: model_udf("runs:/0123456789abcdef/model"),
                     lambda: register_all(None, {"f": {"uri": "models:/sentiment/1"}})):
            try:
                call()
            except MissingDependencyError as e:
                print("MISSING:", e)
    """
    env = {**os.environ, "HFSPARK_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MISSING:")]
    assert len(lines) == 3, proc.stdout + proc.stderr[-3000:]
    assert all(
        "is an MLflow URI: install mlflow (pip install 'hfspark[mlflow]')" in ln for ln in lines
    )
    assert "SQL function 'f'" in lines[2]
