"""Prompts from several columns: binding by name (columns, a struct, SQL in field order, a
job's ``inputs:``), nulls, every binding error on the driver, system prompts and chat templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfspark.errors import ConfigError, InputSchemaError
from hfspark.tasks.seq2seq import Summarization
from hfspark.tasks.text_generation import TextGeneration
from tests.helpers.adapter_runner import load, run_adapter
from tests.helpers.llm_models import build_bart, build_gpt, with_chat_template

TEMPLATE = "Title: {title}\nReview: {body}\nSentiment:"
ROWS = [
    ("Great", "I love this movie"),
    ("Bad", "boring and bad"),
    ("Paris", "sunny today"),
    ("Great", "I love this movie"),
    (None, "no title"),
    ("Spark", None),
]


@pytest.fixture(scope="session")
def llm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.getbasetemp() / "llm-models"
    gpt = build_gpt(root / "gpt")
    return {
        "gpt": gpt,
        "bart": build_bart(root / "bart"),
        "chat": with_chat_template(gpt, root / "gpt-chat"),
    }


@pytest.fixture(scope="module")
def reviews(spark):
    return spark.createDataFrame(
        [(i, t, b) for i, (t, b) in enumerate(ROWS)], "id int, title string, body string"
    ).coalesce(1)


def _by_id(rows, col: str = "out") -> dict[int, dict | None]:
    return {r["id"]: (r[col].asDict(recursive=True) if r[col] is not None else None) for r in rows}


def test_template_options() -> None:
    a = TextGeneration({"prompt_template": "{title} {body} {title}"})
    assert a.input_fields == ("title", "body") and a.binds_by_name
    assert TextGeneration({"prompt_template": "Q: {prompt}"}).input_fields == ("prompt",)
    assert Summarization({"prompt_template": TEMPLATE}).input_fields == ("title", "body")
    for bad, msg in [
        ("no field", "at least one field"),
        ("{prompt} {prompt}", "exactly once"),
        ("{} {x}", "plain column name"),
        ("{a.b}", "plain column name"),
        ("{x", "not a valid format string"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            TextGeneration({"prompt_template": bad})


@pytest.mark.parametrize("task", ["text-generation", "summarization"])
def test_columns_struct_and_order_bind_by_name(spark, reviews, llm_models, task) -> None:
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf

    folder = llm_models["gpt" if task == "text-generation" else "bart"]
    f = model_udf(
        str(folder),
        task=task,
        device="cpu",
        params={"prompt_template": TEMPLATE, "max_new_tokens": 4},
    )
    got = reviews.select(
        "id",
        f("title", "body").alias("a"),
        f("body", "title").alias("b"),
        f(F.struct("body", "title")).alias("c"),
    ).collect()
    # the same prompts rendered by hand, through the plain one-column function
    plain = model_udf(str(folder), task=task, device="cpu", params={"max_new_tokens": 4})
    rendered = reviews.select(
        "id", F.format_string("Title: %s\nReview: %s\nSentiment:", "title", "body").alias("p")
    )
    ref = _by_id(rendered.select("id", plain("p").alias("out")).collect())
    for col in "abc":
        out = _by_id(got, col)
        assert out[4] is None and out[5] is None  # a null in any bound column: a null result
        assert {k: v for k, v in out.items() if k < 4} == {k: ref[k] for k in range(4)}
    assert ref[0]["prompt_tokens"] > 5


def test_binding_errors_on_the_driver(spark, reviews, llm_models) -> None:
    from pyspark.sql import functions as F

    from hfspark.udfs import model_udf

    f = model_udf(
        str(llm_models["gpt"]),
        task="text-generation",
        device="cpu",
        params={"prompt_template": TEMPLATE},
    )
    df = reviews.withColumnRenamed("body", "bodyy")
    with pytest.raises(InputSchemaError, match=r"\{body\} has no input \(nearest: 'bodyy'\)"):
        f.check_input(df, "title", "bodyy")
    with pytest.raises(InputSchemaError, match=r"\{body\} has no input \(nearest: 'bodyy'\)"):
        f.transform(df, "title", "bodyy")
    with pytest.raises(InputSchemaError, match="'id' is used by no prompt_template field"):
        f.check_input(reviews, "title", "body", "id")
    with pytest.raises(InputSchemaError, match="takes 2 inputs"):
        f.adapter.check_input([reviews.schema["title"].dataType])
    with pytest.raises(InputSchemaError, match="no input"):
        f.check_input(reviews.select(F.struct("title").alias("s")), "s")
    arr = reviews.select("title", F.array("body").alias("body"))
    with pytest.raises(InputSchemaError, match="must be a string or number"):
        f.check_input(arr, "title", "body")
    f.check_input(reviews.withColumn("body", F.col("id")), "title", "body")  # numbers render


def test_sql_binds_positional_args_in_field_order(spark, reviews, llm_models) -> None:
    from hfspark.sql import register_all
    from hfspark.udfs import model_udf

    params = {"prompt_template": TEMPLATE, "max_new_tokens": 4}
    register_all(
        spark,
        {
            "review": {
                "uri": str(llm_models["gpt"]),
                "task": "text-generation",
                "device": "cpu",
                "params": params,
            }
        },
    )
    reviews.createOrReplaceTempView("reviews")
    sql = _by_id(spark.sql("SELECT id, review(title, body) AS out FROM reviews").collect())
    f = model_udf(str(llm_models["gpt"]), task="text-generation", device="cpu", params=params)
    assert sql == _by_id(reviews.select("id", f("title", "body").alias("out")).collect())
    register_all(
        spark,
        {
            "item": {
                "uri": str(llm_models["gpt"]),
                "task": "text-generation",
                "device": "cpu",
                "params": {"prompt_template": "Item {id}: {body}", "max_new_tokens": 2},
            }
        },
    )
    got = _by_id(spark.sql("SELECT id, item(id, body) AS out FROM reviews").collect())
    assert got[5] is None and all(got[i]["completion_tokens"] == 2 for i in range(5))


def test_job_inputs_bind_by_name_and_errors_name_the_step(
    spark, reviews, llm_models, tmp_path
) -> None:
    from hfspark.jobs import load_config, run_job
    from tests.helpers.jobs import job_conf, write_conf

    reviews.write.parquet(str(tmp_path / "in"))
    conf = job_conf(
        {"format": "parquet", "path": str(tmp_path / "in")},
        str(llm_models["gpt"]),
        {"format": "delta", "path": str(tmp_path / "out")},
        task="text-generation",
        inputs=["body", "title"],
        params={"prompt_template": TEMPLATE, "max_new_tokens": 4},
    )
    report = run_job(load_config(write_conf(tmp_path / "job.yaml", conf)), spark)
    assert report.rows["written"] == len(ROWS)
    conf["models"][0]["inputs"] = ["title", "bodyy"]
    with pytest.raises(Exception, match="bodyy"):
        run_job(load_config(write_conf(tmp_path / "bad.yaml", conf)), spark)
    conf["models"][0]["inputs"] = ["title", "id"]
    with pytest.raises(Exception, match=r"models\[0\] \(pred\).*\{body\} has no input"):
        run_job(load_config(write_conf(tmp_path / "bad2.yaml", conf)), spark)


def test_system_prompt_uses_the_chat_template_when_there_is_one(llm_models) -> None:
    import transformers

    row = {"title": "Great", "body": "I love it"}
    user = "Title: Great\nReview: I love it\nSentiment:"
    chat = TextGeneration({"prompt_template": TEMPLATE, "system_prompt": "Be brief."})
    loaded = load(chat, llm_models["chat"])
    tok = transformers.AutoTokenizer.from_pretrained(llm_models["chat"])
    expected = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    assert chat.prepare(loaded, [chat.convert(row)])[0]["input_ids"] == list(expected)
    plain = TextGeneration({"prompt_template": TEMPLATE, "system_prompt": "Be brief."})
    loaded = load(plain, llm_models["gpt"])
    assert (
        plain.prepare(loaded, [plain.convert(row)])[0]["input_ids"]
        == loaded.tokenizer(f"Be brief.\n\n{user}")["input_ids"]
    )
    s2s = Summarization({"system_prompt": "Summarize."})
    assert s2s.convert("text") == "Summarize.\n\ntext"
    # the MLflow single-input template is unchanged: no chat template without a system prompt
    mlflow = TextGeneration({"prompt_template": "Q: {prompt}"})
    out = run_adapter(mlflow, llm_models["chat"], ["hi"])
    assert out[0]["prompt_tokens"] == len(tok("Q: hi")["input_ids"])
