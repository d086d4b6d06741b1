"""Your own task, outside the package: registration, entry points, import paths, and the example
cross-encoder reranker (``examples/reranker.py``) from model_udf, SQL and a YAML job on Spark.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.reranker import CrossEncoderReranker, build_demo_model
from hfspark.errors import ConfigError, UnknownTaskError
from hfspark.tasks import TaskAdapter, canonical_task, get_task, register_task
from hfspark.tasks.registry import CUSTOM_TASKS, TaskName

ROOT = Path(__file__).resolve().parents[1]
PATH = "examples.reranker:CrossEncoderReranker"
PAIRS = [
    ("what is spark", "spark runs python on a cluster"),
    ("what is spark", "the cat sat on the mat"),
    ("where does john work", "john works for google in berlin"),
    ("where does john work", "paris is the capital of france " * 30),  # truncated passage
    ("", "an empty query"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example's tiny cross-encoder: a bare folder and a folder saved with task 'rerank'."""
    from hfspark.flavor import save_model

    register_task("rerank", CrossEncoderReranker)
    root = tmp_path_factory.mktemp("rerank")
    bare = build_demo_model(root / "bare")
    save_model(str(bare), root / "saved", task="rerank")
    return {"bare": str(bare), "saved": str(root / "saved")}


def _expected(folder: str) -> list[float]:
    """Scores from transformers' text-classification pipeline (sigmoid of the one logit)."""
    import transformers

    pipe = transformers.pipeline("text-classification", model=folder)
    return [
        pipe({"text": q, "text_pair": p}, function_to_apply="sigmoid", truncation="only_second")[
            "score"
        ]
        for q, p in PAIRS
    ]


# ----------------------------------------------------------------------------- no Spark
def test_register_task_refuses_what_executors_cannot_import() -> None:
    class InAFunction(CrossEncoderReranker):
        name = "local-task"

    with pytest.raises(ConfigError, match="defined in a function.*--py-files"):
        register_task("local-task", InAFunction)
    in_main = type(
        "NotebookTask", (CrossEncoderReranker,), {"name": "nb-task", "__module__": "__main__"}
    )
    with pytest.raises(ConfigError, match=r"__main__ \(a script run directly or a notebook cell\)"):
        register_task("nb-task", in_main)
    with pytest.raises(ConfigError, match="built-in task name"):
        register_task("text-classification", CrossEncoderReranker)
    with pytest.raises(ConfigError, match="set name = 'other-name'"):
        register_task("other-name", CrossEncoderReranker)
    with pytest.raises(ConfigError, match="lowercase letters"):
        register_task("Bad Name!", CrossEncoderReranker)
    with pytest.raises(ConfigError, match="not a task adapter"):
        canonical_task("json:dumps")
    with pytest.raises(ConfigError, match="No module named 'no_such_module'.*entry point"):
        canonical_task("no_such_module:Task")
    with pytest.raises(UnknownTaskError, match="register_task"):
        canonical_task("no-such-task")


def test_incomplete_adapter_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not implement forward, output_type, prepare"):
        canonical_task("tests.test_custom_task:Incomplete")


class Incomplete(TaskAdapter):
    """A task adapter that forgot its methods (for the test above)."""

    name = "incomplete"
    auto_model = "AutoModel"


def test_task_name_carries_its_import_path_to_another_process() -> None:
    register_task("rerank", CrossEncoderReranker, aliases=("cross-encoder",))
    name = canonical_task("Cross_Encoder")
    assert isinstance(name, TaskName) and name == "cross-encoder" and name.path == PATH
    assert canonical_task(PATH) == "rerank" and get_task("rerank") is CrossEncoderReranker
    blob = pickle.dumps({"task": canonical_task("rerank")})
    code = textwrap.dedent("""
        import pickle, sys
        from hfspark.tasks import get_task
        task = pickle.loads(sys.stdin.buffer.read())["task"]
        print(task, get_task(task).__name__, get_task("rerank").__module__)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["rerank", "CrossEncoderReranker", "examples.reranker"]


def test_entry_point_adds_a_task(tmp_path: Path) -> None:
    """An installed package's ``hfspark.tasks`` entry point (a dist-info on the path)."""
    pkg = tmp_path / "my_rerank_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from examples.reranker import CrossEncoderReranker\n\n\n"
        "class PackagedReranker(CrossEncoderReranker):\n    name = 'packaged-rerank'\n"
    )
    info = tmp_path / "my_rerank_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rerank-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hfspark.tasks]\npackaged-rerank = my_rerank_pkg:PackagedReranker\n"
    )
    code = (
        "from hfspark.tasks import canonical_task, get_task, task_names\n"
        "t = canonical_task('packaged_rerank')\n"
        "print(t, t.path, get_task(t).__name__, 'packaged-rerank' in task_names())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**_env(), "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [
        "packaged-rerank",
        "my_rerank_pkg:PackagedReranker",
        "PackagedReranker",
        "True",
    ]


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_adapter_matches_pipeline(demo: dict[str, str]) -> None:
    from tests.helpers.adapter_runner import run_adapter

    items = [{"query": q, "passage": p} for q, p in PAIRS]
    out = run_adapter(CrossEncoderReranker({"max_length": 128}), demo["bare"], items, batch_size=2)
    assert [r["score"] for r in out] == pytest.approx(_expected(demo["bare"]), abs=1e-6)
    assert CrossEncoderReranker({}).output_type().simpleString() == "struct<score:double>"
    with pytest.raises(ConfigError, match="did you mean 'activation'"):
        CrossEncoderReranker({"activaton": "none"})


# ----------------------------------------------------------------------------- on Spark
def test_model_udf_and_sql_on_spark(spark: Any, demo: dict[str, str]) -> None:
    from hfspark.udfs import model_udf, register

    df = spark.createDataFrame(
        [(i, q, p) for i, (q, p) in enumerate(PAIRS)] + [(9, None, "x")],
        "id int, query string, passage string",
    ).repartition(2)
    udf = model_udf(demo["saved"], errors="column", device="cpu")
    assert (
        udf.ref.task == "rerank"
        and udf.returnType.simpleString() == "struct<score:double,error:string>"
    )
    got = {r.id: r.s for r in udf.transform(df, "query", "passage", output="s").collect()}
    expected = _expected(demo["bare"])
    assert [got[i].score for i in range(len(PAIRS))] == pytest.approx(expected, abs=1e-6)
    assert got[9] is None  # a null row: a null result, no model call
    # the same model by import path, bare folder, as a SQL function
    register(spark, "rerank", demo["bare"], task=PATH, device="cpu")
    df.createOrReplaceTempView("pairs")
    rows = spark.sql(
        "SELECT id, rerank(query, passage).score AS s FROM pairs WHERE id < 9"
    ).collect()
    assert [r.s for r in sorted(rows, key=lambda r: r.id)] == pytest.approx(expected, abs=1e-6)


def test_yaml_job_with_import_path(spark: Any, demo: dict[str, str], tmp_path: Path) -> None:
    from hfspark.jobs import load_config, run_job

    conf = yaml.safe_load((ROOT / "examples" / "rerank_job.yaml").read_text())
    conf["input"]["path"] = str(ROOT / "examples" / "pairs.jsonl")
    conf["models"][0]["uri"] = demo["bare"]
    conf["output"]["path"] = str(tmp_path / "out")
    conf["run"] = {**conf.get("run", {}), "progress": "off", "report_path": None}
    conf.pop("spark", None)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(conf))
    report = run_job(load_config(tmp_path / "job.yaml"), spark)
    assert report.status == "succeeded", report.reason
    rows = spark.read.format("delta").load(str(tmp_path / "out")).orderBy("id").collect()
    pairs = [
        json.loads(line) for line in (ROOT / "examples" / "pairs.jsonl").read_text().splitlines()
    ]
    assert [r.id for r in rows] == [p["id"] for p in pairs]
    assert all(0.0 < r.rerank.score < 1.0 for r in rows)


def test_module_missing_on_executors_is_named(
    spark: Any, demo: dict[str, str], tmp_path: Path
) -> None:
    """Importable on the driver only: the executor's error says how to ship it; addPyFile fixes it."""
    from hfspark.udfs import model_udf

    module = tmp_path / "driver_only_tasks.py"
    module.write_text(
        "from examples.reranker import CrossEncoderReranker\n\n\n"
        "class DriverOnly(CrossEncoderReranker):\n    name = 'driver-only'\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        udf = model_udf(demo["bare"], task="driver_only_tasks:DriverOnly", device="cpu")
        df = spark.createDataFrame([PAIRS[0]], "query string, passage string")
        with pytest.raises(
            Exception, match=r"cannot import its adapter 'driver_only_tasks:DriverOnly'"
        ) as info:
            df.select(udf("query", "passage")).collect()
        assert "--py-files" in str(info.value)
        spark.sparkContext.addPyFile(str(module))
        assert df.select(udf("query", "passage").alias("r")).first().r.score > 0
    finally:
        sys.path.remove(str(tmp_path))
        CUSTOM_TASKS.pop("driver-only", None)
