"""The model UDF engine on real local Spark (local[2]) with tiny models and the real MiniLM."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from hfspark.errors import ConfigError, InputSchemaError, UnknownTaskError

pytestmark = pytest.mark.filterwarnings("ignore")

TEXTS = [
    "I love this movie, it is great and wonderful.",
    "This film was terrible, boring and bad.",
    "",
    "   ",
    None,
    "The weather in Paris is sunny today. " * 12,
    "John works for Google in Berlin.",
    "Hello world!",
] * 6


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stats")


@pytest.fixture(scope="module")
def spark(stats_dir: Path):
    from hfspark.session import local_spark

    session = local_spark(
        "local[2]",
        app_name="hfspark-test-udfs",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.executorEnv.HFSPARK_STATS_DIR": str(stats_dir),
            "spark.sql.execution.arrow.maxRecordsPerBatch": "16",
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def saved(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from hfspark.flavor import save_model

    root = tmp_path_factory.mktemp("saved")
    out = {}
    for task in ("text-classification", "feature-extraction", "question-answering"):
        save_model(str(tiny_models[task]), root / task, task=task)
        out[task] = str(root / task)
    return out


def _loads(stats_dir: Path) -> list[tuple[str, str]]:
    log = stats_dir / "loads.log"
    if not log.exists():
        return []
    return [tuple(line.split("\t")[:2]) for line in log.read_text().splitlines()]


def _text_df(spark, n_partitions: int = 4):
    rows = [(i, t) for i, t in enumerate(TEXTS)]
    return spark.createDataFrame(rows, "id long, text string").repartition(n_partitions, "id")


def test_return_type_known_on_driver(saved):
    from hfspark.udfs import model_udf

    udf = model_udf(saved["text-classification"], errors="column")
    names = [f.name for f in udf.returnType.fields]
    assert names == ["label", "score", "scores", "error"]
    emb = model_udf(saved["feature-extraction"])
    assert emb.returnType.simpleString() == "array<float>"


def test_classification_nulls_order_and_single_load(spark, saved, stats_dir):
    from hfspark.udfs import model_udf

    before = len(_loads(stats_dir))
    udf = model_udf(saved["text-classification"], batch_size=3)
    df = _text_df(spark, n_partitions=8).withColumn("pred", udf("text"))
    rows = {r.id: r for r in df.collect()}
    assert len(rows) == len(TEXTS)
    for i, text in enumerate(TEXTS):
        if text is None:
            assert rows[i].pred is None or rows[i].pred.label is None
        else:
            assert rows[i].pred.label in ("NEGATIVE", "POSITIVE")
            assert 0.0 <= rows[i].pred.score <= 1.0
    # Same text -> same prediction, wherever it sat in its batch (order restored after sorting).
    by_text: dict[str, set] = {}
    for i, text in enumerate(TEXTS):
        if text is not None:
            by_text.setdefault(text, set()).add(round(rows[i].pred.score, 5))
    assert all(len(v) == 1 for v in by_text.values())
    # Run again over many partitions: the workers reuse their cached model.
    df2 = _text_df(spark, n_partitions=16).withColumn("pred", udf("text"))
    assert df2.count() == len(TEXTS)
    df2.write.format("noop").mode("overwrite").save()
    loads = _loads(stats_dir)[before:]
    pids = {pid for pid, _ in loads}
    assert 1 <= len(loads) == len(pids) <= 2, loads


def test_matches_single_process_and_batch_independence(spark, saved):
    import numpy as np

    from hfspark.udfs import model_udf

    texts = [t for t in TEXTS[:8] if t is not None]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string")
    results = []
    for bs in (1, 2, 7):
        udf = model_udf(saved["feature-extraction"], batch_size=bs)
        rows = sorted(df.withColumn("v", udf("text")).collect(), key=lambda r: r.id)
        results.append(np.array([r.v for r in rows], dtype=np.float32))
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
    np.testing.assert_allclose(results[0], results[2], atol=1e-5)


def test_errors_column_and_raise(spark, saved):
    from pyspark.errors import PythonException

    from hfspark.udfs import model_udf

    df = spark.createDataFrame(
        [(1, "What is it?", "It is a cat."), (2, "Where?", None), (3, None, "ctx")],
        "id long, question string, context string",
    )
    qa = model_udf(saved["question-answering"], errors="column")
    rows = {r.id: r.a for r in df.select("id", qa("question", "context").alias("a")).collect()}
    assert rows[1].error is None and isinstance(rows[1].answer, str)
    assert rows[3] is None  # null input -> a null result (not a struct of nulls), no model call
    assert rows[2].answer is None and rows[2].error  # missing context -> an error value
    strict = model_udf(saved["question-answering"])
    with pytest.raises(PythonException, match="Row"):
        df.select(strict("question", "context")).collect()


def test_two_models_in_one_query_and_sql(spark, saved):
    from hfspark.udfs import model_udf, register

    cls = model_udf(saved["text-classification"])
    emb = model_udf(saved["feature-extraction"])
    df = _text_df(spark, 2).select("id", cls("text").alias("c"), emb("text").alias("e"))
    rows = [r for r in df.collect() if r.c is not None and r.c.label is not None]
    assert rows and all(len(r.e) == 32 for r in rows)

    register(spark, "sentiment", saved["text-classification"], errors="column")
    _text_df(spark, 2).createOrReplaceTempView("reviews")
    out = spark.sql(
        "SELECT id, sentiment(text).label AS label, sentiment(text).error AS err FROM reviews"
    ).collect()
    assert len(out) == len(TEXTS)
    assert {r.label for r in out if r.label} <= {"NEGATIVE", "POSITIVE"}


def test_driver_side_validation(spark, saved):
    from hfspark.udfs import model_udf, register

    udf = model_udf(saved["text-classification"])
    df = spark.createDataFrame([(1, b"x")], "id long, blob binary")
    with pytest.raises(InputSchemaError, match="string"):
        udf.check_input(df, "blob")
    with pytest.raises(InputSchemaError, match="Did you mean 'blob'"):
        udf.check_input(df, "blobb")
    with pytest.raises(ConfigError, match="batch_size"):
        model_udf(saved["text-classification"], batch_sise=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="did you mean 'top_k'"):
        model_udf(saved["text-classification"], params={"topk": 3})
    with pytest.raises(UnknownTaskError, match="Valid tasks"):
        model_udf(saved["text-classification"], task="sentiment-analysys")
    with pytest.raises(ConfigError, match="SQL function name"):
        register(spark, "drop table x;--", saved["text-classification"])


def _threads(x: pd.Series) -> pd.Series:
    from hfspark.udfs.executor import set_torch_threads

    return pd.Series([set_torch_threads()] * len(x))


def test_torch_threads_follow_task_cpus(spark):
    from pyspark.sql.functions import pandas_udf

    threads = pandas_udf(_threads, "int")  # type: ignore[call-overload]
    got = {r[0] for r in spark.range(4).select(threads("id")).collect()}
    assert got == {int(spark.conf.get("spark.task.cpus", "1"))}


def test_real_minilm_through_spark(spark, minilm_dir, tmp_path):
    import numpy as np

    from hfspark.flavor import save_model
    from hfspark.udfs import model_udf

    path = tmp_path / "minilm"
    save_model(str(minilm_dir), path, task="feature-extraction")
    sents = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
    ]
    df = spark.createDataFrame(list(enumerate(sents)), "id long, text string")
    rows = sorted(df.withColumn("v", model_udf(str(path))("text")).collect(), key=lambda r: r.id)
    v = np.array([r.v for r in rows])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]


def test_env_is_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
