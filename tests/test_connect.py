"""The UDF path from a Spark Connect client: model_udf, SQL functions, a Delta job and
``hfspark sql --remote``, against a local Spark Connect server (pyspark's, with Delta).

The server runs on this machine, so the model folders saved here are a path its executors
can read (a shared filesystem on a real cluster); nothing is shipped from the client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hfspark.errors import ConfigError
from hfspark.testing.cluster import ConnectServer

pytestmark = [pytest.mark.connect, pytest.mark.filterwarnings("ignore")]
ROWS = [
    (1, "I love this movie, it is great."),
    (2, "Terrible, boring and bad."),
    (3, None),
    (4, "Hello world!"),
]


@pytest.fixture(scope="module")
def model(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    from hfspark.flavor import save_model

    path = tmp_path_factory.mktemp("connect-models") / "sentiment"
    save_model(str(tiny_models["text-classification"]), path, task="text-classification")
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def _classic_mode_afterwards() -> Iterator[None]:
    """Undo pyspark's switch to Connect mode when the module ends (set up first, torn down last).

    ``SparkSession.builder.remote()`` (here and in the server's start-up check) sets
    ``SPARK_CONNECT_MODE_ENABLED`` for good; later classic sessions in this process would
    fail with [CONNECT_URL_NOT_SET].
    """
    before = os.environ.get("SPARK_CONNECT_MODE_ENABLED")
    yield
    if before is None:
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


@pytest.fixture(scope="module")
def remote(connect_server: ConnectServer) -> Iterator[Any]:
    """A Spark Connect client session."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(connect_server.url).getOrCreate()
    spark.createDataFrame(ROWS, "id long, text string").createOrReplaceTempView("reviews")
    yield spark
    spark.stop()


@pytest.fixture
def no_spark_context(remote: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every access to ``sparkContext`` on the Connect session class."""
    touched: list[str] = []

    def spy(self: Any) -> Any:
        touched.append("sparkContext")
        raise AssertionError("the UDF path touched sparkContext on Spark Connect")

    monkeypatch.setattr(type(remote), "sparkContext", property(spy), raising=False)
    return touched


def test_model_udf_and_sql_functions(remote, model, no_spark_context):
    from hfspark.sql import register_all
    from hfspark.udfs import model_udf, register

    assert type(remote).__module__.startswith("pyspark.sql.connect")
    udf = model_udf(model, errors="column", batch_size=2)
    df = remote.table("reviews")
    udf.check_input(df, "text")
    rows = {r.id: r.p for r in df.select("id", udf("text").alias("p")).collect()}
    assert {rows[i].label for i in (1, 2, 4)} <= {"NEGATIVE", "POSITIVE"} and rows[1].error is None

    register(remote, "sentiment", model, params={"top_k": 1})
    udfs = register_all(remote, {"sentiment_safe": {"uri": model, "errors": "column"}})
    assert "error" in udfs["sentiment_safe"].returnType.fieldNames()
    got = remote.sql(
        "SELECT id, sentiment(text).label AS label, size(sentiment(text).scores) AS k, "
        "sentiment_safe(text).error AS err FROM reviews WHERE text IS NOT NULL"
    ).collect()
    assert len(got) == 3 and all(r.k == 1 and r.err is None for r in got)
    assert {r.label for r in got} <= {"NEGATIVE", "POSITIVE"}

    with pytest.raises(ConfigError, match="Spark Connect client cannot ship model files"):
        model_udf(model, ship="always")
    assert no_spark_context == []


def test_job_writes_delta(remote, model, tmp_path: Path):
    from hfspark.jobs import parse_config, run_job

    data, out = tmp_path / "in.jsonl", tmp_path / "out"
    data.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in ROWS))
    job = parse_config(
        yaml.safe_dump(
            {
                "input": {"format": "json", "path": str(data), "id_column": "id"},
                "models": [
                    {
                        "name": "sentiment",
                        "uri": model,
                        "inputs": "text",
                        "options": {"errors": "column", "batch_size": 2},
                    }
                ],
                "output": {"format": "delta", "path": str(out)},
                "run": {
                    "chunk_rows": 2,
                    "progress": "off",
                    "report_path": str(tmp_path / "reports"),
                },
            }
        )
    )
    report = run_job(job, remote)  # a Connect session: the runner skips SparkContext-only extras
    assert report.status == "succeeded" and report.rows["written"] == 4
    rows = [r.asDict(recursive=True) for r in remote.read.format("delta").load(str(out)).collect()]
    assert sorted(r["id"] for r in rows) == [1, 2, 3, 4]
    assert {r["sentiment"]["label"] for r in rows if r["text"]} <= {"NEGATIVE", "POSITIVE"}
    # Read with Spark: a Connect client (pyspark 4.2) declares the UDF's string fields with an
    # explicit UTF8_BINARY collation, which Delta records as 'string collate UTF8_BINARY';
    # delta-rs (deltalake 1.x) refuses that type.


def test_hfspark_sql_remote(remote, model, connect_server, tmp_path: Path, capsys):
    from hfspark.cli import main

    functions = tmp_path / "models.yaml"
    functions.write_text(yaml.safe_dump({"sentiment": {"uri": model, "errors": "column"}}))
    out = tmp_path / "scored"
    sql = (
        f"CREATE TABLE scored USING delta LOCATION '{out}' AS "
        "SELECT id, sentiment(text) AS pred FROM reviews; "
        "SELECT id, pred.label AS label FROM scored WHERE pred.label IS NOT NULL ORDER BY id"
    )
    assert main(["sql", str(functions), "--remote", connect_server.url, "-e", sql]) == 0
    printed = capsys.readouterr().out
    assert "OK: CREATE TABLE scored USING delta" in printed
    assert "id | label" in printed and "(3 rows)" in printed
    remote.sql("DROP TABLE scored")
