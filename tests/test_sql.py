"""Models as SQL functions: the functions file, statement splitting, ``hfspark sql`` and the
spark-submit SQL job, on local[2] Spark with Delta and a tiny text-classification model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from hfspark.errors import ConfigError
from hfspark.sql import (
    FunctionSpec,
    StatementResult,
    execute,
    format_table,
    load_functions,
    split_statements,
)

pytestmark = pytest.mark.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    (1, "I love this movie, it is great.", None),
    (2, "Terrible, boring and bad.", None),
    (3, None, "a pair without a first text"),
    (4, "Hello world!", "and a pair"),
]
# A struct input whose first field is set: row 3 (no text) reaches the model and fails.
PAIR = "named_struct('text_pair', pair, 'text', text)"


# ----------------------------------------------------------------------------- no Spark
def test_split_statements_respects_quotes_and_comments():
    sql = textwrap.dedent("""\
        SELECT 'a;b', "c;d", `e;f` AS `x;y`, 'it\\'s; fine' FROM t;  -- a comment; with ;
        /* block; comment */ INSERT INTO t VALUES (1);
        -- only a comment;
        ;;
        SELECT 2""")
    assert split_statements(sql) == [
        "SELECT 'a;b', \"c;d\", `e;f` AS `x;y`, 'it\\'s; fine' FROM t",
        "-- a comment; with ;\n/* block; comment */ INSERT INTO t VALUES (1)",
        "SELECT 2",
    ]
    assert split_statements("  ;\n-- nothing\n") == []
    with pytest.raises(ConfigError, match="line 2: unterminated ' quote"):
        split_statements("SELECT 1;\nSELECT 'oops")


def test_functions_file_forms_env_and_overrides(tmp_path: Path):
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "sentiment:\n  uri: ${MODELS}/sst2\n  errors: column\n"
        "  options: {batch_size: 8, params: {top_k: 1}}\n"
    )
    cfg = load_functions(
        bare, ["sentiment.max_length=64", "spark.master=local[1]"], env={"MODELS": "/m"}
    )
    spec = cfg.functions["sentiment"]
    assert (spec.uri, spec.errors, spec.batch_size, spec.params, spec.max_length) == (
        "/m/sst2",
        "column",
        8,
        {"top_k": 1},
        64,
    )
    assert cfg.spark.master == "local[1]" and cfg.spark.app_name == "hfspark-sql"
    # sections: spark + functions; a job file's own sections are ignored
    job = {
        "spark": {"conf": {"spark.executorEnv.X": "1"}},
        "functions": {"f": {"uri": "/x"}},
        "input": {"format": "json"},
        "models": [],
        "output": {},
        "run": {},
    }
    cfg = load_functions(job, ["spark.conf.spark.sql.shuffle.partitions=3"])
    assert cfg.spark.conf == {"spark.executorEnv.X": "1", "spark.sql.shuffle.partitions": 3}
    assert set(cfg.functions) == {"f"} and job["spark"]["conf"] == {"spark.executorEnv.X": "1"}
    # one options model: a functions file, a job step and model_udf take the same options
    from hfspark.jobs.config import StepOptions
    from hfspark.udfs import UdfOptions

    assert set(FunctionSpec(uri="/x").udf_kwargs()) == {*UdfOptions.model_fields, "task"}
    assert StepOptions is UdfOptions


def test_functions_file_errors_name_line_and_nearest_key(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sentiment:\n  uri: /x\n  batchsize: 3\n  errors: maybe\n")
    with pytest.raises(ConfigError) as e:
        load_functions(bad)
    msg = str(e.value)
    assert (
        f"{bad}:3:3: sentiment.batchsize: unknown key 'batchsize' (did you mean 'batch_size'?)"
        in msg
    )
    assert f"{bad}:4:3: sentiment.errors: Input should be 'raise' or 'column'" in msg
    bad.write_text("spark:\n  mastr: local\nfunctions:\n  s: {uri: /x}\n")
    with pytest.raises(ConfigError, match=r":2:3: spark.mastr: .*did you mean 'master'"):
        load_functions(bad)
    cases = [
        ({"drop table x;--": {"uri": "/x"}}, "not a valid SQL function name"),
        ({"f": {"uri": "/x"}, "F": {"uri": "/y"}}, "'f' and 'F' are the same SQL function"),
        ({"f": {"task": "fill-mask"}}, "f.uri: Field required"),
        ({"f": {"uri": "/x", "errors": "column", "options": {"errors": "raise"}}}, "both"),
        ({"f": {"uri": "/x", "ship": "sometimes"}}, "f.ship"),
    ]
    for data, match in cases:
        with pytest.raises(ConfigError, match=match):
            load_functions(data)
    with pytest.raises(ConfigError, match="not found"):
        load_functions(tmp_path / "missing.yaml")
    from hfspark.errors import ModelStoreError
    from hfspark.sql import register_all

    with pytest.raises(ModelStoreError, match="SQL function 'f': No model at .*does not exist"):
        register_all(None, {"f": {"uri": str(tmp_path / "no-model")}})  # type: ignore[arg-type]


def test_format_table_is_compact():
    from pyspark.sql import Row

    pred = Row(label="POSITIVE", score=0.512345678, scores=[Row(label="POSITIVE", score=0.5)])
    rows = [Row(id=1, pred=pred, note=None), Row(id=22, pred=None, note="x" * 100)]
    text = format_table(StatementResult("SELECT ...", 1, ["id", "pred", "note"], rows, True))
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "id" and lines[1].startswith("---")
    assert (
        "{label: POSITIVE, score: 0.5123, scores: [{label: POSITIVE, score: 0.5}]}"[:45] in lines[2]
    )
    assert "NULL" in lines[2] and lines[3].endswith("x...") and lines[-1] == "(first 2 rows)"
    assert format_table(StatementResult("CREATE  TABLE t\n AS SELECT 1", 1, [], [])) == (
        "OK: CREATE TABLE t AS SELECT 1"
    )


# ----------------------------------------------------------------------------- local Spark
@pytest.fixture(scope="module")
def model(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    from hfspark.flavor import save_model

    path = tmp_path_factory.mktemp("sql-models") / "sentiment"
    save_model(str(tiny_models["text-classification"]), path, task="text-classification")
    return str(path)


@pytest.fixture(scope="module")
def functions(model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql-conf") / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "functions": {
                    "sentiment": {
                        "uri": model,
                        "errors": "column",
                        "batch_size": 2,
                        "params": {"top_k": 1},
                    },
                    "strict_sentiment": {"uri": model},
                },
                "spark": {"master": "local[2]"},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def reviews(spark):
    # one partition: each model UDF of a query takes a Python worker per task (torch imports)
    df = spark.createDataFrame(ROWS, "id long, text string, pair string").coalesce(1)
    df.createOrReplaceTempView("reviews")
    return df


def test_register_all_struct_fields_and_per_function_options(spark, functions, reviews):
    from pyspark.errors import PythonException

    from hfspark.sql import register_all

    udfs = register_all(spark, functions)
    assert [f.name for f in udfs["sentiment"].returnType.fields] == [
        "label",
        "score",
        "scores",
        "error",
    ]
    assert "error" not in udfs["strict_sentiment"].returnType.fieldNames()
    rows = {
        r.id: r
        for r in spark.sql(
            "SELECT id, sentiment(text).label AS label, strict_sentiment(text) AS full, "
            f"sentiment({PAIR}).error AS err FROM reviews"
        ).collect()
    }
    for i in (1, 2, 4):
        assert rows[i].label in ("NEGATIVE", "POSITIVE") and rows[i].err is None
        assert len(rows[i].full.scores) == 2  # all labels by default
    assert rows[3].label is None and rows[3].err  # text missing beside a pair: a row error
    with pytest.raises(PythonException):  # errors: raise (the default) fails the query
        spark.sql(f"SELECT strict_sentiment({PAIR}) FROM reviews").collect()
    # the ModelUDFs work from Python as well
    got = reviews.select(udfs["sentiment"]("text").alias("p")).where("p.label IS NOT NULL")
    assert [len(r.p.scores) for r in got.collect()] == [1, 1, 1]  # params: {top_k: 1}


def test_execute_ctas_insert_and_select_into_delta(spark, functions, reviews, tmp_path: Path):
    from deltalake import DeltaTable

    from hfspark.sql import register_all

    register_all(spark, functions)
    out = tmp_path / "scored"
    sql = f"""
        CREATE TABLE scored USING delta LOCATION '{out}' AS
          SELECT id, sentiment(text) AS pred FROM reviews WHERE id <= 2;
        INSERT INTO scored SELECT id, sentiment(text) FROM reviews WHERE id > 2;
        SELECT id, pred.label AS label, pred.error IS NOT NULL AS failed FROM scored ORDER BY id"""
    results = list(execute(spark, sql, limit=3))
    assert [r.columns for r in results[:2]] == [[], []]
    assert [(r.id, r.failed) for r in results[2].rows] == [(1, False), (2, False), (3, False)]
    assert results[2].truncated and results[2].columns == ["id", "label", "failed"]
    table = DeltaTable(str(out)).to_pyarrow_table().to_pylist()  # an independent reader
    assert sorted(r["id"] for r in table) == [1, 2, 3, 4]
    assert {r["pred"]["label"] for r in table if r["id"] != 3} <= {"NEGATIVE", "POSITIVE"}
    with pytest.raises(ConfigError, match=r"<sql>:2: 'SELEC 1'"):
        list(execute(spark, "SELECT 1;\nSELEC 1"))
    spark.sql("DROP TABLE scored")


def test_hfspark_sql_command(spark, functions, reviews, tmp_path: Path, capsys):
    from hfspark.cli import main

    query = tmp_path / "q.sql"
    query.write_text(
        "SELECT id, sentiment(text).label AS label FROM reviews WHERE id < 3 ORDER BY id;\n"
        "SELECT count(*) AS n FROM reviews"
    )
    assert (
        main(
            [
                "sql",
                str(functions),
                "-e",
                "SELECT 'a;b' AS s; CREATE OR REPLACE TEMP VIEW v AS SELECT 1 AS one",
                "-f",
                str(query),
                "--set",
                "sentiment.batch_size=4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "s\n---\na;b\n(1 row)" in out and "OK: CREATE OR REPLACE TEMP VIEW v" in out
    assert "id | label" in out and "(2 rows)" in out and "n\n-\n4\n(1 row)" in out
    assert main(["sql", str(functions), "--json", "-e", "SELECT id FROM reviews ORDER BY id"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [
        {"id": i} for i in range(1, 5)
    ]
    assert main(["sql", "-e", "SELEC 1"]) == 2
    assert "hfspark: error: -e:1: 'SELEC 1': [PARSE_SYNTAX_ERROR]" in capsys.readouterr().err
    assert main(["sql", str(functions)]) == 2
    assert main(["sql", str(functions), "-e", "SELECT 1", "--set", "sentiment.batchsize=2"]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err


@pytest.mark.slow
def test_spark_submit_sql_job(functions, tmp_path: Path):
    """``spark-submit jobs/run_sql.py models.yaml query.sql`` with pyspark's spark-submit."""
    from deltalake import DeltaTable

    from hfspark.testing.cluster import submit
    from tests.helpers.servers import QUICK_ENV

    data, out = tmp_path / "reviews.json", tmp_path / "scored"
    data.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t, _ in ROWS))
    query = tmp_path / "query.sql"
    query.write_text(f"""
        CREATE TABLE scored USING delta LOCATION '{out}' AS
          SELECT id, sentiment(text) AS pred FROM json.`{data}`;
        SELECT id, pred.label AS label FROM scored ORDER BY id;  -- printed""")
    done = submit(
        ROOT / "jobs" / "run_sql.py",
        [functions, query, "--set", "sentiment.batch_size=3"],
        master="local[2]",
        conf={"spark.driver.memory": "1g"},
        env=QUICK_ENV,
        timeout=420,
        check=True,
    )
    assert "OK: CREATE TABLE scored USING delta" in done.stdout
    assert "id | label" in done.stdout and "(4 rows)" in done.stdout
    assert sorted(r["id"] for r in DeltaTable(str(out)).to_pyarrow_table().to_pylist()) == [
        1,
        2,
        3,
        4,
    ]
