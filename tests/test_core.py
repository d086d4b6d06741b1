"""The core's promises on real Spark: null in -> null out for every task family, invalid
UTF-8 as one row's error through every call path, result columns named after the task, one
options model everywhere, and the import layers (checked by import-linter, and by what an
executor actually imports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.badmedia import INVALID_UTF8
from tests.helpers.jobs import job_conf, write_conf

pytestmark = pytest.mark.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
BAD_HEX = INVALID_UTF8.hex()


@pytest.fixture(scope="module")
def saved(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from hfspark.flavor import save_model

    root = tmp_path_factory.mktemp("core-saved")
    tasks = {
        "text-classification": "text-classification",
        "token-classification": "ner",
        "feature-extraction": "feature-extraction",
        "question-answering": "question-answering",
        "text2text-generation": "summarization",
        "image-classification": "image-classification",
        "asr-ctc": "automatic-speech-recognition",
    }
    out = {}
    for name, task in tasks.items():
        save_model(str(tiny_models[name]), root / name, task=task)
        out[name] = str(root / name)
    return out


#: model -> (input DDL, a good row's value, params): one per task family (struct, array,
#: generative, media, several columns).
FAMILIES = {
    "text-classification": ("text string", "I love this movie", {}),
    "token-classification": ("text string", "John works for Google in Berlin.", {}),
    "feature-extraction": ("text string", "hello world", {}),
    "text2text-generation": ("text string", "the quick brown fox", {"max_new_tokens": 3}),
    "image-classification": ("image binary", None, {"top_k": 2}),
    "asr-ctc": ("audio binary", None, {}),
}


@pytest.mark.parametrize("errors", ["raise", "column"])
@pytest.mark.parametrize("model", list(FAMILIES))
def test_null_input_gives_null_result(spark, saved, model, errors) -> None:
    """A null row is a null result (a null struct / array), so ``IS NULL`` finds it."""
    from hfspark.udfs import model_udf
    from tests.helpers.badmedia import image, tone, wav

    ddl, good, params = FAMILIES[model]
    if model == "image-classification":
        good = image("RGB", "PNG", 32, 32)
    elif model == "asr-ctc":
        good = wav(tone(0.5), 16000)
    col = ddl.split()[0]
    df = spark.createDataFrame([(1, good), (2, None)], f"id long, {ddl}")
    f = model_udf(saved[model], errors=errors, device="cpu", params=params)
    out = df.withColumn("pred", f(col))
    rows = {r.id: r.pred for r in out.collect()}
    assert rows[2] is None and rows[1] is not None
    assert out.where("pred IS NULL").count() == 1
    if errors == "column":
        assert rows[1].error is None


def test_null_struct_and_null_first_column(spark, saved) -> None:
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf

    qa = model_udf(saved["question-answering"], errors="column")
    df = spark.createDataFrame(
        [(1, "What is it?", "It is a cat."), (2, None, "ctx")],
        "id long, question string, context string",
    )
    two = {r.id: r.a for r in df.select("id", qa("question", "context").alias("a")).collect()}
    assert two[2] is None and two[1].answer is not None
    structs = df.select("id", F.when(F.col("id") == 1, F.struct("question", "context")).alias("s"))
    one = {r.id: r.a for r in structs.select("id", qa("s").alias("a")).collect()}
    assert one[2] is None and one[1].error is None  # a null struct column -> a null result


def _bad_text(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame(
        [(1, "good movie"), (2, "x"), (3, "bad movie")], "id long, text string"
    )
    return df.withColumn(
        "text",
        F.when(F.col("id") == 2, F.unhex(F.lit(BAD_HEX)).cast("string")).otherwise(F.col("text")),
    )


def test_invalid_utf8_is_one_rows_error_however_called(spark, saved, tmp_path) -> None:
    from pyspark.errors import PythonException
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf, register

    df = _bad_text(spark)
    f = model_udf(saved["text-classification"], errors="column")
    calls = {
        "f(name)": df.select("id", f("text").alias("p")),
        "f(Column)": df.select("id", f(F.col("text")).alias("p")),
        "transform": f.transform(df, "text", output="p").select("id", "p"),
    }
    register(spark, "sentiment_c", saved["text-classification"], errors="column")
    df.createOrReplaceTempView("bad_texts")
    calls["SQL"] = spark.sql("SELECT id, sentiment_c(text) AS p FROM bad_texts")
    for how, frame in calls.items():
        rows = {r.id: r.p for r in frame.collect()}
        assert rows[2].label is None and "invalid UTF-8" in rows[2].error, how
        assert "make_valid_utf8" in rows[2].error, how
        assert rows[1].error is None and rows[3].error is None, how  # the others are predicted
    strict = model_udf(saved["text-classification"])
    register(spark, "sentiment_r", saved["text-classification"])
    for _how, frame in {
        "f(name)": df.select(strict("text")),
        "SQL": spark.sql("SELECT sentiment_r(text) FROM bad_texts"),
    }.items():
        with pytest.raises(
            PythonException, match=r"Row \d+ of this batch failed: RowError: invalid UTF-8"
        ):
            frame.collect()
    # a job writing Delta: the row's error lands in the table, the other rows are predicted
    src = tmp_path / "bad.parquet"
    df.write.parquet(str(src))
    from hfspark.jobs import load_config, run_job

    conf = write_conf(
        tmp_path / "job.yaml",
        job_conf(
            {"format": "parquet", "path": str(src), "id_column": "id"},
            saved["text-classification"],
            {"path": str(tmp_path / "out")},
            run={"report_path": str(tmp_path / "reports")},
        ),
    )
    report = run_job(load_config(conf), spark, raise_on_error=False)
    assert report.status == "succeeded" and report.rows["errors"] == 1
    out = {r.id: r.pred for r in spark.read.format("delta").load(str(tmp_path / "out")).collect()}
    assert "invalid UTF-8" in out[2].error and out[1].label is not None


def test_result_columns_are_named_after_the_task(spark, saved) -> None:
    from hfspark.udfs import model_udf, register

    df = spark.createDataFrame([(1, "a")], "id long, text string")
    assert df.select(model_udf(saved["text-classification"])("text")).columns == [
        "text_classification(text)"
    ]
    assert df.select(model_udf(saved["feature-extraction"])("text")).columns == [
        "feature_extraction(text)"
    ]
    register(spark, "embed_fn", saved["feature-extraction"])
    df.createOrReplaceTempView("named")
    assert spark.sql("SELECT embed_fn(text) FROM named").columns == ["embed_fn(text)"]


def test_model_reference_is_resolved_once_on_the_driver(saved) -> None:
    """The reference carries the pinned URI, the info, task options and cache key, pickles,
    and the executor loads from it without reading the model's metadata again."""
    import pickle

    from hfspark.udfs import UdfOptions, resolve_model
    from hfspark.udfs.executor import _local_info

    ref = resolve_model(saved["text-classification"], options=UdfOptions(params={"top_k": 2}))
    assert ref.task == "text-classification" and ref.task_options == {"top_k": 2}
    assert ref.uri == saved["text-classification"] and ref.cache_key.startswith(ref.content_hash)
    back = pickle.loads(pickle.dumps(ref))
    assert back == ref and _local_info(back) == ref.info  # same folder here: used as it is
    moved = ref.info.relocated(Path("/elsewhere"))
    assert moved.model_dir == Path("/elsewhere") / Path(ref.info.model_dir).relative_to(
        ref.info.root
    )


def test_import_layers() -> None:
    """import-linter's contracts (pyproject.toml) hold, and a Python worker importing the
    executor side loads none of sql, jobs, the CLI, YAML, MLflow or pandas."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout
    probe = (
        "import sys, json, hfspark.udfs.engine, hfspark.udfs.executor, hfspark.udfs.arrow, "
        "hfspark.udfs.reference; print(json.dumps(sorted(sys.modules)))"
    )
    mods = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    )
    ours = [m for m in mods if m.startswith("hfspark")]
    assert not [m for m in ours if m.startswith(("hfspark.jobs", "hfspark.sql", "hfspark.cli"))]
    assert not {"yaml", "mlflow", "pandas"} & set(mods), ours
    assert len(ours) <= 16, ours
