"""Safe defaults: no remote code, no pickles, safe YAML, no eval, checked SQL names, secrets
kept out of logs and reports, and model metadata that cannot point outside the model folder.

Source-level checks walk the AST of every module under ``hfspark/`` (no regex over text), so
comments and docstrings never trigger them and aliased calls are still seen.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hfspark.errors import ConfigError, ModelValidationError, UnsafeModelError

pytestmark = pytest.mark.filterwarnings("ignore")

PACKAGE = Path(__file__).resolve().parents[1] / "hfspark"
SECRET = "S3cr3t-Value-0123456789"
ENV_SECRET = "hf_EnvTokenValue987654321"


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    """Every module of the hfspark package with its parsed AST."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain (empty for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _where(path: Path, node: ast.AST) -> str:
    """``hfspark/x.py:12`` for a node of a module."""
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"


@pytest.fixture(scope="module")
def saved(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny text-classification and feature-extraction models saved with the flavor."""
    from hfspark.flavor import save_model

    root = tmp_path_factory.mktemp("safety-models")
    out = {}
    for task in ("text-classification", "feature-extraction"):
        save_model(str(tiny_models[task]), root / task, task=task)
        out[task] = str(root / task)
    return out


def _copy(src: str | Path, tmp_path: Path, name: str = "model") -> Path:
    """A copy of a model folder under ``tmp_path``."""
    dest = tmp_path / name
    shutil.copytree(src, dest)
    return dest


# ----------------------------------------------------------------------------- remote code
@pytest.mark.parametrize("file", ["config.json", "tokenizer_config.json"])
def test_auto_map_refused(
    tiny_models: dict[str, Path], saved: dict[str, str], tmp_path: Path, file: str
) -> None:
    """A config asking for the model's own Python code (``auto_map``) is refused everywhere."""
    from hfspark.flavor import read_info, save_model
    from hfspark.udfs import model_udf

    bare = _copy(tiny_models["text-classification"], tmp_path, "bare")
    data = json.loads((bare / file).read_text())
    (bare / file).write_text(json.dumps({**data, "auto_map": {"AutoModel": "modeling_x.X"}}))
    with pytest.raises(UnsafeModelError, match="auto_map"):
        save_model(str(bare), tmp_path / "out", task="text-classification")
    with pytest.raises(UnsafeModelError, match="auto_map"):
        read_info(bare, task="text-classification")
    with pytest.raises(UnsafeModelError, match="trust_remote_code"):
        model_udf(str(bare), task="text-classification")
    assert not (tmp_path / "out").exists()


def test_trust_remote_code_never_true() -> None:
    """Every ``trust_remote_code`` in hfspark is the constant False; every from_pretrained sets it."""
    problems = []
    for path, tree in _modules():
        false_dicts: set[str] = set()  # names bound to a dict literal with trust_remote_code False
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "trust_remote_code":
                        if not (isinstance(v, ast.Constant) and v.value is False):
                            problems.append(f"{_where(path, node)}: trust_remote_code not False")
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                keys = {
                    k.value: v
                    for k, v in zip(node.value.keys, node.value.values, strict=True)
                    if isinstance(k, ast.Constant)
                }
                v = keys.get("trust_remote_code")
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if isinstance(v, ast.Constant) and v.value is False:
                    false_dicts.update(t.id for t in targets if isinstance(t, ast.Name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kws = {k.arg: k.value for k in node.keywords}
            if "trust_remote_code" in kws:
                v = kws["trust_remote_code"]
                if not (isinstance(v, ast.Constant) and v.value is False):
                    problems.append(f"{_where(path, node)}: trust_remote_code not False")
            if _dotted(node.func).endswith("from_pretrained") and "trust_remote_code" not in kws:
                spread = [
                    k.value.id
                    for k in node.keywords
                    if k.arg is None and isinstance(k.value, ast.Name)
                ]
                if not any(name in false_dicts for name in spread):
                    problems.append(
                        f"{_where(path, node)}: from_pretrained without trust_remote_code=False"
                    )
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- pickles
def test_pickle_weights_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A folder whose weights are pickles is refused by save_model, read_info and model_udf."""
    from hfspark.flavor import read_info, save_model
    from hfspark.udfs import model_udf

    bare = _copy(tiny_models["text-classification"], tmp_path)
    (bare / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (bare / "pytorch_model.bin").write_bytes(_evil_pickle(marker))
    for call in (
        lambda: save_model(str(bare), tmp_path / "out", task="text-classification"),
        lambda: read_info(bare, task="text-classification"),
        lambda: model_udf(str(bare), task="text-classification"),
    ):
        with pytest.raises(UnsafeModelError, match="pickle"):
            call()
    assert not marker.exists()


def _evil_pickle(marker: Path) -> bytes:
    """Pickle bytes that would create ``marker`` if anything unpickled them."""
    import pickle

    class Touch:
        """Unpickling this calls ``Path.touch(marker)``."""

        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    return pickle.dumps(Touch())


def test_loader_ignores_pickles_next_to_safetensors(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """With safetensors present a stray pickle is never read (use_safetensors=True)."""
    from hfspark.tasks import get_task

    bare = _copy(tiny_models["text-classification"], tmp_path)
    marker = tmp_path / "unpickled"
    (bare / "pytorch_model.bin").write_bytes(_evil_pickle(marker))
    adapter = get_task("text-classification")({})
    loaded = adapter.load(bare, {}, "cpu", None)
    assert loaded.model is not None and not marker.exists()


def test_no_unpickling_in_source() -> None:
    """No pickle/torch.load/joblib/dill in hfspark; use_safetensors=False only when converting."""
    banned = {
        "pickle.load",
        "pickle.loads",
        "torch.load",
        "joblib.load",
        "dill.load",
        "dill.loads",
        "cloudpickle.load",
        "cloudpickle.loads",
        "marshal.loads",
        "shelve.open",
    }
    problems = []
    for path, tree in _modules():
        funcs = {
            n: f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in banned:
                    problems.append(f"{_where(path, node)}: {name}")
                if name.endswith("numpy.load") or name == "np.load":
                    problems.append(f"{_where(path, node)}: {name} (may unpickle)")
                for k in node.keywords:
                    if (
                        k.arg == "use_safetensors"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is False
                        and funcs.get(node) != "_convert_pickle"
                    ):
                        problems.append(f"{_where(path, node)}: use_safetensors=False")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- YAML, eval
def test_yaml_safe_only_in_source() -> None:
    """Only yaml.safe_load / SafeLoader / safe_dump: no yaml.load, full_load, unsafe loaders."""
    allowed = {
        "yaml.safe_load",
        "yaml.safe_load_all",
        "yaml.safe_dump",
        "yaml.safe_dump_all",
        "yaml.SafeLoader",
        "yaml.CSafeLoader",
        "yaml.YAMLError",
        "yaml.MarkedYAMLError",
        "yaml.Node",
        "yaml.MappingNode",
        "yaml.SequenceNode",
        "yaml.ScalarNode",
        "yaml.CollectionNode",
        "yaml.dump",
        "yaml.SafeDumper",
        # a str subclass (TaskName) written as a plain string by the safe dumper
        "yaml.SafeDumper.add_representer",
        "yaml.SafeDumper.represent_str",
    }
    problems = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                problems += [
                    f"{_where(path, node)}: from yaml import {a.name}"
                    for a in node.names
                    if f"yaml.{a.name}" not in allowed
                ]
            if isinstance(node, ast.Attribute) and _dotted(node).startswith("yaml."):
                name = _dotted(node)
                if name not in allowed:
                    problems.append(f"{_where(path, node)}: {name}")
    assert not problems, "\n".join(problems)


def test_no_eval_or_exec_in_source() -> None:
    """No eval, exec, compile, literal_eval or __import__ anywhere in hfspark (AST scan)."""
    banned = {
        "eval",
        "exec",
        "compile",
        "__import__",
        "literal_eval",
        "ast.literal_eval",
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "execfile",
    }
    problems = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) in banned:
                problems.append(f"{_where(path, node)}: {_dotted(node.func)}()")
            if isinstance(node, ast.ImportFrom) and node.module in ("ast", "builtins"):
                problems += [
                    f"{_where(path, node)}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name in banned
                ]
    assert not problems, "\n".join(problems)


PY_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
]


@pytest.mark.parametrize("tag", PY_TAGS)
def test_job_conf_python_tags_refused(tmp_path: Path, tag: str) -> None:
    """A job conf with a Python YAML tag is refused (and runs nothing), from a file or --set."""
    from hfspark.jobs import load_config

    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    conf = tmp_path / "job.yaml"
    conf.write_text(
        "input: {format: parquet, path: /data/in}\n"
        "models: [{name: p, uri: /models/m, inputs: text}]\n"
        f"output: {{path: /data/out}}\nrun:\n  report_path: {value}\n"
    )
    with pytest.raises(ConfigError, match="invalid YAML.*constructor"):
        load_config(conf)
    conf.write_text(
        "input: {format: parquet, path: /data/in}\n"
        "models: [{name: p, uri: /models/m, inputs: text}]\n"
        "output: {path: /data/out}\n"
    )
    job = load_config(conf, overrides=[f"run.report_path={value}"])
    assert job.run.report_path == value  # kept as plain text, never constructed
    assert not marker.exists()


def test_mlmodel_python_tag_refused(saved: dict[str, str], tmp_path: Path) -> None:
    """An MLmodel with a Python YAML tag is refused by read_info (yaml.safe_load)."""
    from hfspark.flavor import read_info

    model = _copy(saved["text-classification"], tmp_path)
    marker = tmp_path / "pwned"
    text = (model / "MLmodel").read_text()
    (model / "MLmodel").write_text(
        text + f"evil: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(ModelValidationError, match="not valid YAML"):
        read_info(model)
    assert not marker.exists()


# ----------------------------------------------------------------------------- SQL names
BAD_SQL_NAMES = [
    "x; DROP TABLE t",
    "sentiment --",
    "a b",
    "1abc",
    "`x`",
    "x'",
    'x"',
    "a.b",
    "fn()",
    "",
    "ünï",
    "a" * 129,
    "sentiment\n",
    "\nsentiment",
    "sentiment\x00",
    "/*x*/y",
    "a-b",
    None,
    123,
]


@pytest.mark.parametrize("name", BAD_SQL_NAMES, ids=[repr(n)[:20] for n in BAD_SQL_NAMES])
def test_sql_function_names_validated(name: Any, tmp_path: Path) -> None:
    """register refuses injection-like names before touching the model or Spark."""
    from hfspark.udfs import register

    with pytest.raises(ConfigError, match="not a valid SQL function name"):
        register(None, name, str(tmp_path / "no-model"))  # type: ignore[arg-type]


def test_sql_function_name_accepted(spark: Any, saved: dict[str, str]) -> None:
    """A plain identifier registers and is callable from SQL."""
    from hfspark.udfs import register

    register(spark, "_sentiment_v2", saved["text-classification"], device="cpu")
    row = spark.sql("SELECT _sentiment_v2('I love it') AS p").collect()[0]
    assert row.p.label in ("NEGATIVE", "POSITIVE")


# ----------------------------------------------------------------------------- secrets
@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("HF_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("spark.hadoop.fs.s3a.secret.key", True),
        ("fs.azure.account.key.acct.dfs.core.windows.net", True),
        ("accessKey", True),
        ("db_password", True),
        ("MLFLOW_TRACKING_PASSWORD", True),
        ("api-key", True),
        ("max_tokens_per_batch", False),
        ("tokenizer", False),
        ("keyboard", False),
        ("spark.sql.shuffle.partitions", False),
        ("monkey", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    """Keys naming a token, secret, password or key are secret; look-alikes are not."""
    from hfspark.jobs.secrets import is_secret_key

    assert is_secret_key(key) is secret


def _job_yaml(tmp_path: Path, saved: dict[str, str], input_path: str) -> str:
    """A job conf with a secret in spark.conf and an env token interpolated into input options."""
    return yaml.safe_dump(
        {
            "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": SECRET}},
            "input": {
                "format": "parquet",
                "path": input_path,
                "id_column": "id",
                "options": {"hf_token": "${HF_TOKEN}"},
            },
            "models": [
                {
                    "name": "p",
                    "uri": saved["text-classification"],
                    "inputs": "text",
                    "options": {"device": "cpu", "errors": "column"},
                }
            ],
            "output": {"path": str(tmp_path / "out")},
            "run": {
                "progress": "log",
                "report_path": str(tmp_path / "reports"),
                "log_every_s": 0.01,
            },
        }
    )


def _assert_clean(*texts: str) -> None:
    """No text holds the conf secret or the environment secret."""
    for text in texts:
        assert SECRET not in text and ENV_SECRET not in text, text[:2000]


def test_secrets_not_in_reports_or_logs(
    spark: Any,
    saved: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A secret conf value and a secret env value never reach the report, logs or output."""
    from hfspark.jobs import parse_config, run_job, validate_job
    from hfspark.jobs.validate import format_summary

    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    caplog.set_level(logging.DEBUG, logger="hfspark")  # py4j's DEBUG log echoes every JVM call
    spark.createDataFrame([(1, "I love it"), (2, None)], "id long, text string").write.parquet(
        str(tmp_path / "in")
    )
    job = parse_config(_job_yaml(tmp_path, saved, str(tmp_path / "in")), "job.yaml")
    summary = validate_job(job, spark)
    report = run_job(job, spark, source="job.yaml")
    assert report.status == "succeeded"
    assert report.conf["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert report.conf["input"]["options"]["hf_token"] == "***"
    files = [
        Path(p).read_text(encoding="utf-8", errors="replace")
        for p in report.paths.values()
        if not p.endswith(".png")
    ]
    assert files
    out, err = capfd.readouterr()
    _assert_clean(
        json.dumps(summary),
        format_summary(summary),
        *files,
        out,
        err,
        caplog.text,
        json.dumps(report.to_dict(), default=str),
        report.markdown(),
    )


def _failing_job(tmp_path: Path, saved: dict[str, str]) -> Any:
    """A job whose failure message holds the env secret (it is in the input path)."""
    from hfspark.jobs import parse_config

    return parse_config(_job_yaml(tmp_path, saved, f"{tmp_path}/missing-${{HF_TOKEN}}"), "job.yaml")


def test_secrets_masked_in_failure_reason(
    spark: Any, saved: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure whose message holds a secret value is masked in the error and the report."""
    from hfspark.jobs import JobFailed, run_job

    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    with pytest.raises(JobFailed) as info:
        run_job(_failing_job(tmp_path, saved), spark, source="job.yaml")
    report = info.value.report
    assert report.status == "failed" and "***" in (report.reason or "")
    files = [
        Path(p).read_text(encoding="utf-8") for p in report.paths.values() if not p.endswith(".png")
    ]
    _assert_clean(
        str(info.value), report.reason or "", *files, json.dumps(report.to_dict(), default=str)
    )


def test_secrets_masked_in_debug_traceback(
    spark: Any,
    saved: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hfspark's own DEBUG log of a failed job does not hold the secret either."""
    from hfspark.jobs import run_job

    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    caplog.set_level(logging.DEBUG, logger="hfspark")
    report = run_job(_failing_job(tmp_path, saved), spark, source="job.yaml", raise_on_error=False)
    assert report.status == "failed"
    _assert_clean(caplog.text)


@pytest.mark.parametrize(
    "override",
    [
        "spark.conf.spark.hadoop.fs.s3a.secret.key=[S3cr3t-Value-0123456789]",
        "input.options.password={a: S3cr3t-Value-0123456789}",
    ],
)
def test_secrets_masked_in_conf_errors(override: str) -> None:
    """A conf error on a secret key does not print the secret value."""
    from hfspark.jobs import parse_config

    text = (
        "input: {format: parquet, path: /data/in}\n"
        "models: [{name: p, uri: /models/m, inputs: text}]\noutput: {path: /data/out}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "job.yaml", overrides=[override])
    _assert_clean(str(info.value))


# ----------------------------------------------------------------------------- paths
def _set_mlmodel(model: Path, edit: Any) -> None:
    """Edit a saved model's MLmodel (parsed YAML) in place."""
    doc = yaml.safe_load((model / "MLmodel").read_text())
    edit(doc)
    (model / "MLmodel").write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize(
    ("what", "edit"),
    [
        (
            "model_binary ../../etc",
            lambda d: d["flavors"]["transformers"].update(model_binary="../../etc"),
        ),
        ("model_binary /etc", lambda d: d["flavors"]["transformers"].update(model_binary="/etc")),
        ("model_binary ..", lambda d: d["flavors"]["transformers"].update(model_binary="..")),
        ("hfspark model_dir ../..", lambda d: d["metadata"]["hfspark"].update(model_dir="../..")),
        (
            "component name with a path",
            lambda d: d["flavors"]["transformers"].update(components=["../../tokenizer"]),
        ),
    ],
)
def test_metadata_paths_stay_inside(
    saved: dict[str, str], tmp_path: Path, what: str, edit: Any
) -> None:
    """Paths in a saved model's metadata cannot point outside the model folder."""
    from hfspark.flavor import read_info
    from hfspark.udfs import model_udf

    model = _copy(saved["text-classification"], tmp_path)
    _set_mlmodel(model, edit)
    with pytest.raises(ModelValidationError, match="outside the model folder|unknown component"):
        read_info(model)
    with pytest.raises(ModelValidationError):
        model_udf(str(model))


def test_symlink_out_of_the_folder_refused(saved: dict[str, str], tmp_path: Path) -> None:
    """A model folder that is a link to a folder elsewhere is refused (resolved path checked)."""
    from hfspark.flavor import read_info

    model = _copy(saved["text-classification"], tmp_path)
    outside = tmp_path / "elsewhere"
    (model / "model").rename(outside)
    os.symlink(outside, model / "model")
    with pytest.raises(UnsafeModelError, match="outside the model folder"):
        read_info(model)


def test_shipped_archive_cannot_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped model archive cannot write outside the cache: '..' members are refused,
    absolute ones land inside (tarfile's ``data`` filter)."""
    from hfspark.udfs.shipping import unpack_shipped

    cache = tmp_path / "cache"
    monkeypatch.setenv("HFSPARK_CACHE_DIR", str(cache))
    outside = tmp_path / "escaped.txt"
    for i, name in enumerate(("../../../escaped.txt", str(outside))):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"bad"))

        class Broadcast:
            value = buf.getvalue()

        try:
            folder = unpack_shipped(Broadcast(), f"{i:032d}")
        except tarfile.TarError:
            assert ".." in name
        else:
            assert (folder / name.lstrip("/")).is_file()
    assert not outside.exists()
