"""The ``hfspark`` command: run, validate and inspect.

Usage::

    hfspark run conf/embeddings.yaml [--set run.chunk_rows=500 ...]   # embedded local Spark + Delta
    hfspark validate conf/embeddings.yaml                            # conf, input schema, models
    hfspark inspect /models/minilm                                   # a saved model's metadata
    hfspark save ./checkpoint /models/sst2 --task text-classification  # see hfspark.cli_mlflow
    hfspark log ./checkpoint --registered-model-name sst2 --alias champion  # into MLflow

Exit codes: 0 done, 1 the job failed, 2 invalid configuration or arguments,
3 the error budget was exceeded. Failures print one line: ``hfspark: error: <reason>``.

Example:
    >>> from hfspark.cli import main
    >>> main(["validate", "conf/embeddings.yaml"])
    0
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_CONFIG", "EXIT_BUDGET"]

from hfspark.errors import EXIT_BUDGET, EXIT_CONFIG, EXIT_FAILED, EXIT_OK

log = logging.getLogger("hfspark.jobs")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hfspark`` command."""
    parser = argparse.ArgumentParser(
        prog="hfspark", description="Hugging Face transformers batch inference on Apache Spark.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def job_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("conf", help="job configuration (YAML)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. --set run.chunk_rows=500 (repeatable; "
                            "values are YAML scalars)")

    run = sub.add_parser("run", help="run a batch job (read -> infer -> write)")
    job_args(run)
    run.add_argument("--progress", choices=["auto", "bar", "log", "off"],
                     help="progress display (default: the conf's run.progress)")
    val = sub.add_parser("validate", help="check a job: conf, input schema and models, no inference")
    job_args(val)
    val.add_argument("--json", action="store_true", help="print the summary as JSON")
    ins = sub.add_parser("inspect", help="show a saved model's task, schemas, size, hash and versions")
    ins.add_argument("uri", help="model URI (folder, file://, s3://, models:/, pypi://PACKAGE)")
    ins.add_argument("--task", help="task, for a plain transformers folder or a pypi:// package")
    ins.add_argument("--json", action="store_true", help="print as JSON")
    from hfspark.sql import add_sql_command

    add_sql_command(sub)
    from hfspark.cli_mlflow import add_commands as add_mlflow_commands  # save, log

    add_mlflow_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, embedded: bool = True) -> int:
    """Run the ``hfspark`` command; returns the exit code.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
        embedded: start the embedded local Spark; ``False`` uses the session of
            ``spark-submit`` (see ``jobs/run_job.py``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from hfspark.errors import HfSparkError, exit_code

    try:
        if args.command == "run":
            return _run(args, embedded)
        if args.command == "validate":
            return _validate(args, embedded)
        if args.command in ("save", "log"):
            from hfspark.cli_mlflow import run_command

            return run_command(args)
        if args.command == "sql":
            from hfspark.sql import sql_command

            return sql_command(args, embedded)
        return _inspect(args)
    except KeyboardInterrupt as e:
        _fail("interrupted")
        return exit_code(e)
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback with -v
        log.debug("failed", exc_info=True)
        from hfspark.jobs.runner import one_line

        _fail(str(e) if isinstance(e, HfSparkError) else one_line(e))
        return exit_code(e)


def _fail(reason: str) -> None:
    from hfspark.jobs.secrets import Redactor

    reason = Redactor.from_sources().text(reason)  # secret environment values never printed
    first, *rest = reason.strip().splitlines() or ["failed"]
    if rest and first.endswith(":"):  # multi-line config errors: keep them whole
        print(f"hfspark: error: {reason.strip()}", file=sys.stderr)
    else:
        print(f"hfspark: error: {first}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Any:
    from hfspark.jobs.loader import load_config

    return load_config(args.conf, args.overrides)


def _run(args: argparse.Namespace, embedded: bool) -> int:
    from hfspark.jobs.runner import job_session, run_job

    job = _load(args)
    if args.progress:
        job = job.model_copy(update={"run": job.run.model_copy(update={"progress": args.progress})})
    spark = job_session(job, embedded)
    report = run_job(job, spark, source=args.conf, raise_on_error=False)
    if report.status != "succeeded":
        _fail(report.reason or report.status)
        if report.paths:
            print(f"report: {report.paths.get('markdown')}", file=sys.stderr)
        return report.exit_code or EXIT_FAILED
    _print_result(spark, job, report)
    return EXIT_OK


def _print_result(spark: Any, job: Any, report: Any) -> None:
    out, rows = report.output, report.rows
    version = f" (Delta version {out['version']})" if "version" in out else ""
    print(f"wrote {rows['written']} rows to {out.get('format')} {out.get('location')}{version}")
    print(f"the output holds {out.get('rows', '?')} rows; {rows['already_done']} were there "
          f"before this run; {rows['errors']} rows with errors; {report.rows_per_s:.1f} rows/s")
    cols = out.get("columns") or {}
    if cols:
        print("columns:")
        for name, dtype in cols.items():
            print(f"  {name}: {dtype if len(dtype) <= 100 else dtype[:97] + '...'}")
    try:
        from hfspark.jobs.storage import read_output

        df = read_output(spark, job.output)
        if df is not None and cols:
            keep = [c for c in df.columns if not c.startswith("_")][:4]
            print("sample:")
            for row in df.select(*keep).limit(3).collect():
                print("  " + ", ".join(f"{k}={_short(v)}" for k, v in row.asDict().items()))
    except Exception:  # noqa: BLE001 - the sample is only a courtesy
        pass
    if report.paths:
        print(f"report: {report.paths.get('markdown')}")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value.asDict(recursive=True) if hasattr(value, "asDict") else value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _validate(args: argparse.Namespace, embedded: bool) -> int:
    from hfspark.jobs.runner import job_session
    from hfspark.jobs.validate import format_summary, validate_job

    job = _load(args)
    spark = job_session(job, embedded)
    summary = validate_job(job, spark)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if not args.json:
        print(f"{args.conf}: OK")
    return EXIT_OK


def inspect_model(uri: str, task: str | None = None) -> dict[str, Any]:
    """A saved model's task, input/output schemas, size, hash and versions (no weights loaded).

    Example:
        >>> inspect_model("/models/minilm")["task"]
        'feature-extraction'
    """
    from hfspark.flavor import read_info
    from hfspark.flavor.resolver import resolve_uri
    from hfspark.tasks import get_task

    info = read_info(resolve_uri(uri, task), task=task)
    adapter = get_task(info.task)(dict(info.inference_config))
    root = Path(info.root)
    files = [p for p in root.rglob("*") if p.is_file()]
    found_versions = _find_versions(info.metadata)
    return {
        "uri": uri,
        "root": str(root),
        "flavor": info.flavor,
        "task": info.task,
        "input": {f: list(adapter.input_types.get(f, ("string",))) for f in adapter.input_fields},
        "optional_inputs": list(adapter.optional_fields),
        "output": adapter.output_type().simpleString(),
        "inference_config": dict(info.inference_config),
        "components": {k: str(v) for k, v in info.components.items()},
        "torch_dtype": info.torch_dtype,
        **_model_limits(Path(info.model_dir), info.components),
        "size_bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "content_hash": info.content_hash,
        "versions": found_versions,
    }


def _model_limits(model_dir: Path, components: Any) -> dict[str, Any]:
    """The model's labels (``id2label``) and the most input tokens it takes, from its files."""
    def read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    config = read(model_dir / "config.json")
    id2label = config.get("id2label") or {}
    labels = [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    tok_dir = Path(components.get("tokenizer", model_dir)) if components else model_dir
    limits = [read(tok_dir / "tokenizer_config.json").get("model_max_length"),
              config.get("max_position_embeddings"), config.get("n_positions")]
    usable = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
    return {"labels": labels, "max_input_tokens": usable[0] if usable else None}


def _find_versions(meta: Any) -> dict[str, str]:
    """Package versions recorded in the model metadata (deduplicated, short names first)."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(value, dict):
                if str(key).lower().endswith("versions"):
                    found.extend((str(k), str(v)) for k, v in value.items()
                                 if v is not None and not isinstance(v, dict))
                walk(value, name)
            elif str(key).lower().endswith("version") and value is not None:
                found.append((name, str(value)))

    walk(meta, "")
    out: dict[str, str] = {}
    for name, value in sorted(found, key=lambda kv: "." in kv[0]):
        short = name.rsplit(".", 1)[-1].removesuffix("_version")
        if out.get(short, value) == value:
            out[short] = value
        else:
            out[name] = value
    return out


def _inspect(args: argparse.Namespace) -> int:
    data = inspect_model(args.uri, args.task)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    size = data["size_bytes"]
    print(f"model:   {data['uri']}")
    print(f"folder:  {data['root']} ({data['flavor']} flavor)")
    print(f"task:    {data['task']}")
    print("input:   " + ", ".join(f"{k} ({' | '.join(v)})" for k, v in data["input"].items()))
    print(f"output:  {data['output']}")
    if data["labels"]:
        shown = ", ".join(data["labels"][:20]) + (" ..." if len(data["labels"]) > 20 else "")
        print(f"labels:  {shown} ({len(data['labels'])})")
    if data["max_input_tokens"]:
        print(f"max input: {data['max_input_tokens']} tokens")
    print(f"size:    {size / 1e6:.1f} MB in {data['files']} files")
    print(f"hash:    {data['content_hash']}")
    if data["torch_dtype"]:
        print(f"dtype:   {data['torch_dtype']}")
    if data["inference_config"]:
        print(f"options: {json.dumps(data['inference_config'])}")
    for name, version in data["versions"].items():
        print(f"version: {name} {version}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
