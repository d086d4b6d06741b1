"""Structured output: every row parses and fits its schema (DDL, JSON Schema, pydantic, choices,
regex), cut-off rows get an error value, the exact return type on the driver, batch-order
independence, schemas refused on the driver with the field named, SQL functions and a YAML job
writing typed Delta columns, with token usage in its report."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from hfspark.errors import ConfigError
from hfspark.tasks._schema import grammar_schema, normalize_schema
from hfspark.tasks.seq2seq import Summarization
from hfspark.tasks.text_generation import TextGeneration
from tests.helpers.adapter_runner import load, run_adapter
from tests.helpers.llm_models import build_bart, build_gpt

PROMPTS = [
    "I love this movie",
    "bad",
    "The cat sat on the mat",
    "Spark runs pandas",
    "Hello world! How",
    "What is the capital",
    "I love this movie",
    "0 1 2",
]
META = "finish_reason:string,prompt_tokens:int,completion_tokens:int"
NESTED = {  # enum, integer range, nested object, nullable, bounded strings and arrays
    "type": "object",
    "required": ["sentiment", "stars", "meta", "tags"],
    "properties": {
        "sentiment": {"enum": ["pos", "neg", "neutral"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "meta": {
            "type": "object",
            "required": ["lang", "ok"],
            "properties": {
                "lang": {"type": "string", "maxLength": 4},
                "ok": {"type": ["boolean", "null"]},
            },
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2},
    },
}
DDL = "ok boolean, sure boolean, inner struct<flag: boolean, other: boolean>"


class Review(BaseModel):
    sentiment: Literal["pos", "neg"]
    stars: int = Field(ge=1, le=5)
    checked: bool | None
    tags: list[Literal["a", "b"]] = Field(max_length=2)


KINDS = {"ddl": DDL, "json": NESTED, "pydantic": Review}
TYPES = {
    "ddl": "struct<ok:boolean,sure:boolean,inner:struct<flag:boolean,other:boolean>," + META + ">",
    "json": "struct<sentiment:string,stars:bigint,meta:struct<lang:string,ok:boolean>,"
    "tags:array<string>," + META + ">",
    "pydantic": "struct<sentiment:string,stars:bigint,checked:boolean,tags:array<string>,"
    + META
    + ">",
}


@pytest.fixture(scope="session")
def llm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.helpers.tiny_models import build_feature_extraction

    root = tmp_path_factory.getbasetemp() / "llm-models"
    bert = root / "bert"
    if not (bert / "config.json").exists():
        build_feature_extraction(bert)
    return {"gpt": build_gpt(root / "gpt"), "bart": build_bart(root / "bart"), "bert": bert}


def _valid(row: dict, schema: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    value = {
        k: v
        for k, v in row.items()
        if k not in ("finish_reason", "prompt_tokens", "completion_tokens", "error")
    }
    jsonschema.validate(value, grammar_schema(schema))
    assert row["finish_reason"] == "stop" and row["completion_tokens"] > 0


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("model", ["gpt", "bart"])
def test_every_row_fits_its_schema(llm_models, kind, model) -> None:
    cls = TextGeneration if model == "gpt" else Summarization
    adapter = cls({"output_schema": KINDS[kind], "max_new_tokens": 120, "repetition_penalty": 1.5})
    assert adapter.output_type().simpleString() == TYPES[kind]
    out = run_adapter(adapter, llm_models[model], PROMPTS, batch_size=3)
    schema = normalize_schema(KINDS[kind])
    for row in out:
        assert isinstance(row, dict), row
        _valid(row, schema)


def test_choices_and_regex(llm_models) -> None:
    for model, cls in (("gpt", TextGeneration), ("bart", Summarization)):
        choices = cls({"choices": ["positive", "negative", "mixed feelings"], "max_new_tokens": 24})
        assert choices.output_type().simpleString() == f"struct<label:string,{META}>"
        assert {r["label"] for r in run_adapter(choices, llm_models[model], PROMPTS)} <= {
            "positive",
            "negative",
            "mixed feelings",
        }
        regex = cls({"regex": r"[A-Z][a-z]{2,4}-[0-9]{2}", "max_new_tokens": 16})
        for row in run_adapter(regex, llm_models[model], PROMPTS):
            assert re.fullmatch(r"[A-Z][a-z]{2,4}-[0-9]{2}", row["generated_text"]), row


def test_cut_off_rows_get_an_error_never_a_partial_struct(spark, llm_models) -> None:
    from hfspark.udfs import model_udf

    f = model_udf(
        str(llm_models["gpt"]),
        task="text-generation",
        device="cpu",
        errors="column",
        params={"output_schema": "label string, score double", "max_new_tokens": 6},
    )
    assert f.returnType.simpleString() == f"struct<label:string,score:double,{META},error:string>"
    df = spark.createDataFrame([(p,) for p in PROMPTS[:3]] + [(None,)], "text string")
    rows = df.select(f("text").alias("o")).collect()
    assert rows[-1]["o"] is None
    for r in rows[:-1]:
        assert r["o"]["label"] is None and r["o"]["finish_reason"] is None
        assert "cut off at max_new_tokens=6 before the JSON closed" in r["o"]["error"]
        assert "raise max_new_tokens" in r["o"]["error"]


def test_batch_order_independent_in_spark(spark, llm_models) -> None:
    from hfspark.udfs import model_udf

    params = {"output_schema": NESTED, "max_new_tokens": 120, "repetition_penalty": 1.5}
    df = spark.createDataFrame([(i, p) for i, p in enumerate(PROMPTS)], "id int, text string")
    outs = []
    for seed, batch_size in ((0, 1), (1, 3), (2, 8)):
        order = list(range(len(PROMPTS)))
        random.Random(seed).shuffle(order)
        shuffled = spark.createDataFrame([(i, PROMPTS[i]) for i in order], "id int, text string")
        f = model_udf(
            str(llm_models["gpt"]),
            task="text-generation",
            device="cpu",
            batch_size=batch_size,
            params=params,
        )
        outs.append(
            {
                r["id"]: r["o"].asDict(recursive=True)
                for r in shuffled.repartition(2).select("id", f("text").alias("o")).collect()
            }
        )
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0]) == df.count()


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("m map<string,int>", "type 'map' has no JSON form"),
        ("when date", "'when'.*no JSON form"),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            },
            "field 'a': anyOf of several types",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "additionalProperties": {"type": "integer"}}
                },
            },
            "field 'a'.*additionalProperties|field 'a'.*needs 'properties'",
        ),
        (
            {"type": "object", "properties": {"x": {"type": "array"}}},
            "field 'x': an array needs 'items'",
        ),
        ({"type": "string"}, "an object with properties"),
        ("finish_reason string", "clashes"),
        ("a string,", "expected more"),
        (42, "Spark DDL string, a JSON Schema or a pydantic"),
    ],
)
def test_bad_schemas_refused_on_the_driver(llm_models, schema, message) -> None:
    from hfspark.udfs import model_udf

    with pytest.raises(ConfigError, match=message):
        model_udf(str(llm_models["gpt"]), task="text-generation", params={"output_schema": schema})


def test_option_conflicts() -> None:
    for options, message in [
        ({"choices": ["a", "a"]}, "distinct"),
        ({"choices": []}, "non-empty"),
        ({"choices": ["a"], "regex": "b"}, "only one"),
        ({"regex": "a", "num_beams": 2}, "num_beams=1"),
        ({"choices": ["a"], "stop": ["x"]}, "drop 'stop'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TextGeneration(options)
    assert normalize_schema("n int, x float, b tinyint, s smallint, v varchar(3)")["properties"][
        "n"
    ] == {"type": "integer", "x-spark-type": "int"}
    assert (
        TextGeneration({"output_schema": "n int, x float, b tinyint, s smallint, l bigint"})
        .output_type()
        .simpleString()
        .startswith("struct<n:int,x:float,b:tinyint,s:smallint,l:bigint,")
    )


def test_pydantic_class_shipped_as_json_schema(spark, llm_models) -> None:
    import pickle

    from hfspark.udfs import model_udf

    f = model_udf(
        str(llm_models["gpt"]),
        task="text-generation",
        device="cpu",
        params={"output_schema": Review, "max_new_tokens": 120, "repetition_penalty": 1.5},
    )
    assert isinstance(f.ref.task_options["output_schema"], dict)
    assert isinstance(f.ref.options.params["output_schema"], dict)
    pickle.dumps(f.ref)  # no class in what executors receive
    df = spark.createDataFrame([(p,) for p in PROMPTS], "text string")
    for r in df.select(f("text").alias("o")).collect():
        Review.model_validate({k: r["o"][k] for k in Review.model_fields})


def test_sql_function_and_yaml_job_to_typed_delta_with_usage(spark, llm_models, tmp_path) -> None:
    """One job: typed JSON to Delta, plain and cut-off generative steps, an encoder step; the
    report's usage per step (tokens, finish reasons, rows failing the schema, input tokens)."""
    import transformers
    from deltalake import DeltaTable

    from hfspark.jobs import load_config, run_job
    from hfspark.sql import register_all
    from tests.helpers.jobs import job_conf, write_conf

    params = {
        "output_schema": NESTED,
        "max_new_tokens": 120,
        "repetition_penalty": 1.5,
        "prompt_template": "Title: {title}\nReview: {body}\nJSON:",
    }
    rows = [(i, p.split()[0], p) for i, p in enumerate(PROMPTS)]
    df = spark.createDataFrame(rows, "id int, title string, body string").coalesce(1)
    register_all(
        spark,
        {
            "review": {
                "uri": str(llm_models["gpt"]),
                "task": "text-generation",
                "device": "cpu",
                "errors": "column",
                "params": params,
            }
        },
    )
    df.createOrReplaceTempView("llm_reviews")
    got = spark.sql(
        "SELECT id, review(title, body).sentiment AS s, review(title, body).error AS e "
        "FROM llm_reviews"
    ).collect()
    assert all(r["s"] in ("pos", "neg", "neutral") and r["e"] is None for r in got)

    df.write.parquet(str(tmp_path / "in"))
    conf = job_conf(
        {"format": "parquet", "path": str(tmp_path / "in")},
        str(llm_models["gpt"]),
        {"format": "delta", "path": str(tmp_path / "out")},
        task="text-generation",
        inputs=["title", "body"],
        params=params,
        name="pred",
    )
    conf["models"][0]["options"]["params"]["output_schema"] = json.dumps(NESTED)  # YAML: a string
    opts = {"device": "cpu", "errors": "column", "batch_size": 4}
    conf["models"] += [
        {
            "name": "gen",
            "uri": str(llm_models["gpt"]),
            "task": "text-generation",
            "inputs": "body",
            "options": {**opts, "params": {"max_new_tokens": 3}},
        },
        {
            "name": "cut",
            "uri": str(llm_models["gpt"]),
            "task": "text-generation",
            "inputs": "body",
            "options": {**opts, "params": {"output_schema": "label string", "max_new_tokens": 4}},
        },
        {
            "name": "vec",
            "uri": str(llm_models["bert"]),
            "task": "feature-extraction",
            "inputs": "body",
            "options": opts,
        },
    ]
    conf["run"]["report_path"] = str(tmp_path / "reports")
    report = run_job(load_config(write_conf(tmp_path / "job.yaml", conf)), spark)
    assert report.rows["written"] == len(PROMPTS) and report.rows["errors"] == len(PROMPTS)  # cut
    pred, gen, cut, vec = (report.usage[k] for k in ("pred", "gen", "cut", "vec"))
    gpt_tok = transformers.AutoTokenizer.from_pretrained(llm_models["gpt"])
    assert gen["prompt_tokens"] == sum(len(gpt_tok(p)["input_ids"]) for p in PROMPTS)
    assert gen["completion_tokens"] == 3 * len(PROMPTS) and gen["tokens_per_s"] > 0
    assert gen["finish_reasons"] == {"stop": 0, "length": len(PROMPTS)}
    assert pred["finish_reasons"]["stop"] == len(PROMPTS) and pred["schema_failures"] == 0
    assert cut["schema_failures"] == len(PROMPTS)  # all cut off before the JSON closed
    bert_tok = transformers.AutoTokenizer.from_pretrained(llm_models["bert"])
    assert vec["input_tokens"] == sum(len(bert_tok(p)["input_ids"]) for p in PROMPTS)
    assert (
        report.rows["tokens"]
        >= gen["prompt_tokens"] + gen["completion_tokens"] + vec["input_tokens"]
    )
    md = Path(report.paths["markdown"]).read_text()
    assert "rows failing the schema" in md and "input tokens" in md
    table = DeltaTable(str(tmp_path / "out")).to_pyarrow_table()  # an independent reader
    pred = table.schema.field("pred").type
    types = {pred.field(i).name: str(pred.field(i).type) for i in range(pred.num_fields)}
    assert types["sentiment"] in ("string", "large_string") and types["stars"] == "int64"
    assert types["meta"].startswith("struct<lang:") and types["tags"].startswith(
        ("list", "large_list")
    )
    assert list(types) == [
        "sentiment",
        "stars",
        "meta",
        "tags",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "error",
    ]
    flat = spark.read.format("delta").load(str(tmp_path / "out")).select("id", "pred.*")
    assert flat.schema["stars"].dataType.simpleString() == "bigint"
    assert {r["sentiment"] for r in flat.collect()} <= {"pos", "neg", "neutral"}


def test_constrained_grammar_compiled_once_per_model(llm_models) -> None:
    adapter = TextGeneration(
        {"output_schema": NESTED, "max_new_tokens": 120, "repetition_penalty": 1.5}
    )
    loaded = load(adapter, llm_models["gpt"])
    run_adapter(adapter, loaded, PROMPTS[:2])
    grammar = next(iter(loaded.extras["grammars"].values()))
    run_adapter(adapter, loaded, PROMPTS[2:4])
    assert next(iter(loaded.extras["grammars"].values())) is grammar
    assert len(loaded.extras["grammars"]) == 1
