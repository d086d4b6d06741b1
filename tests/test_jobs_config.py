"""Job configuration: typed sections, line-numbered errors, ${ENV} interpolation, --set overrides.

Pure unit tests: no Spark, no models.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hfspark.errors import ConfigError
from hfspark.jobs.config import JobConfig
from hfspark.jobs.loader import apply_override, load_config, parse_config
from hfspark.jobs.secrets import Redactor, is_secret_key

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
input:
  format: parquet
  path: data/in.parquet
  id_column: id
models:
  - name: embed
    uri: /models/minilm
    inputs: text
output:
  path: out/embeddings
"""


def test_minimal_config_defaults() -> None:
    cfg = parse_config(BASE)
    assert cfg.spark.master == "local[*]"
    assert cfg.output.format == "delta" and cfg.output.mode == "append"
    assert cfg.models[0].output_column == "embed"
    assert cfg.run.resume_enabled(cfg) is True  # id_column + append
    assert cfg.run.chunk_rows == 10_000


JOB_CONFS = ["embeddings.yaml", "classification.yaml", "speech_to_text.yaml", "summarization.yaml"]


@pytest.mark.parametrize("conf", [ROOT / "conf" / name for name in JOB_CONFS], ids=lambda p: p.name)
def test_shipped_confs_are_valid(conf: Path) -> None:
    cfg = load_config(conf, env={})
    assert cfg.input.id_column, "shipped jobs are resumable"
    assert cfg.run.report_path


def test_unknown_key_names_nearest_and_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        BASE.replace("    inputs: text\n", "    inputs: text\n    options:\n      batchsize: 8\n")
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert f"{path}:10:" in msg
    assert "models[0].options.batchsize" in msg
    assert "did you mean 'batch_size'" in msg


def test_unknown_section_and_several_errors_each_with_line() -> None:
    text = BASE + "runn:\n  chunk_rows: 5\noutput2: {}\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "job.yaml")
    msg = str(e.value)
    assert "job.yaml:11:1: runn: unknown key 'runn' (did you mean 'run'?)" in msg
    assert "job.yaml:13:1: output2" in msg


def test_bad_values_are_reported_with_line() -> None:
    text = (
        BASE.replace("path: out/embeddings", "path: out/embeddings\n  mode: upsert")
        + "run:\n  chunk_rows: 0\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_config(text, "job.yaml")
    msg = str(e.value)
    assert "job.yaml:11:3: output.mode" in msg and "'append', 'overwrite' or 'error'" in msg
    assert "job.yaml:13:3: run.chunk_rows" in msg and "greater than 0" in msg


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="set 'name', not 'path'"):
        parse_config(BASE.replace("format: parquet", "format: table"))
    with pytest.raises(ConfigError, match="run.resume needs input.id_column"):
        parse_config(BASE.replace("  id_column: id\n", "") + "run:\n  resume: true\n")
    with pytest.raises(ConfigError, match="set options.errors: column"):
        parse_config(BASE + "run:\n  max_errors: 3\n")
    with pytest.raises(ConfigError, match="step outputs must be unique"):
        parse_config(
            BASE.replace(
                "output:\n",
                "  - name: e2\n    uri: /m\n    inputs: text\n    output: embed\noutput:\n",
            )
        )
    with pytest.raises(ConfigError, match="duplicate key 'path'"):
        parse_config(BASE + "  path: again\n")
    no_resume = parse_config(BASE.replace("path: out/embeddings", "path: o\n  mode: overwrite"))
    assert no_resume.run.resume_enabled(no_resume) is False


def test_inputs_forms() -> None:
    one = parse_config(BASE)
    assert one.models[0].inputs == "text"
    many = parse_config(BASE.replace("inputs: text", "inputs: [question, context]"))
    assert many.models[0].inputs == ["question", "context"]
    struct = parse_config(BASE.replace("inputs: text", "inputs: {text: title, text_pair: body}"))
    assert struct.models[0].inputs == {"text": "title", "text_pair": "body"}
    with pytest.raises(ConfigError, match=r"models\[0\].inputs: invalid value 5"):
        parse_config(BASE.replace("inputs: text", "inputs: 5"))


def test_env_interpolation() -> None:
    text = (
        BASE.replace("/models/minilm", "${MODEL_DIR}/minilm").replace(
            "out/embeddings", "${OUT:-out/default}"
        )
        + "run:\n  chunk_rows: ${ROWS:-250}\n"
    )
    cfg = parse_config(text, env={"MODEL_DIR": "/srv/models"})
    assert cfg.models[0].uri == "/srv/models/minilm"
    assert cfg.output.path == "out/default"
    assert cfg.run.chunk_rows == 250
    cfg = parse_config(text, env={"MODEL_DIR": "/m", "OUT": "/o", "ROWS": "7"})
    assert (cfg.output.path, cfg.run.chunk_rows) == ("/o", 7)
    with pytest.raises(
        ConfigError, match=r"job.yaml:7:10: environment variable \$\{MODEL_DIR\} is not set"
    ):
        parse_config(text, "job.yaml", env={})
    literal = parse_config(BASE.replace("/models/minilm", "/m/$${NOT_A_VAR}"), env={})
    assert literal.models[0].uri == "/m/${NOT_A_VAR}"


def test_yaml_is_safe_loaded() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_config(BASE + "evil: !!python/object/apply:os.system ['true']\n")


def test_set_overrides() -> None:
    overrides = [
        "run.chunk_rows=500",
        "models.embed.options.batch_size=64",  # a step by name
        "models.0.options.params.normalize=false",  # ... or by index
        "models.embed.inputs=[a, b]",
        "spark.conf.spark.sql.shuffle.partitions=4",  # dotted Spark keys stay whole
        "input.filter=length(text) > 3",
        "output.mode=overwrite",
    ]
    cfg = parse_config(BASE, overrides=overrides)
    assert cfg.run.chunk_rows == 500
    assert cfg.models[0].options.batch_size == 64
    assert cfg.models[0].options.params == {"normalize": False}
    assert cfg.models[0].inputs == ["a", "b"]
    assert cfg.spark.conf == {"spark.sql.shuffle.partitions": 4}
    assert cfg.input.filter == "length(text) > 3"
    assert cfg.output.mode == "overwrite"
    with pytest.raises(
        ConfigError, match="--set run.chunk_rowz=5: run.chunk_rowz: unknown key.*'chunk_rows'"
    ):
        parse_config(BASE, overrides=["run.chunk_rowz=5"])
    with pytest.raises(ConfigError, match="no step named 'embd' \\(did you mean 'embed'\\?\\)"):
        parse_config(BASE, overrides=["models.embd.uri=/x"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_override({}, "run.chunk_rows")


def test_secret_keys_and_redaction() -> None:
    for key in (
        "HF_TOKEN",
        "spark.hadoop.fs.s3a.secret.key",
        "accessKey",
        "db_password",
        "API-KEY",
    ):
        assert is_secret_key(key), key
    for key in ("max_tokens_per_batch", "id_column", "keyboard", "monkey"):
        assert not is_secret_key(key), key
    cfg = parse_config(BASE + "spark:\n  conf:\n    spark.hadoop.fs.s3a.secret.key: s3cr3t-value\n")
    dumped = cfg.model_dump(mode="json")
    r = Redactor.from_sources(dumped, env={"HF_TOKEN": "hf_abcdef123", "HOME": "/root"})
    assert r.data(dumped)["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert (
        r.text("auth failed for s3cr3t-value with hf_abcdef123 in /root")
        == "auth failed for *** with *** in /root"
    )


def test_config_is_frozen_and_round_trips() -> None:
    cfg = parse_config(BASE)
    again = JobConfig.model_validate(cfg.model_dump())
    assert again == cfg
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        cfg.run.chunk_rows = 3  # type: ignore[misc]
