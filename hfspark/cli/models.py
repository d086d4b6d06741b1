"""``hfspark save`` and ``hfspark log``: a local checkpoint folder into the flavor, or into MLflow.

Usage::

    hfspark save ./checkpoint /models/sst2 --task text-classification
    hfspark log ./checkpoint --task text-classification --registered-model-name sst2 \\
        --alias champion --experiment scoring --tracking-uri http://127.0.0.1:5000

A PEFT adapter folder (``adapter_config.json``) is saved with a reference to its base model
(``--base-model``, default: the base named in the adapter config) or merged (``--merge-adapter``).

Example:
    >>> from hfspark.cli import main
    >>> main(["save", "./checkpoint", "/models/sst2", "--task", "text-classification"])
    0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

__all__ = ["add_parser", "COMMANDS", "command"]

COMMANDS = ("save", "log")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folder", help="a local transformers checkpoint folder (or a PEFT adapter folder)"
    )
    p.add_argument("--task", help="task (inferred from config.architectures when left out)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="convert pickle weights (.bin) to safetensors (only for trusted sources)",
    )
    p.add_argument(
        "--base-model",
        metavar="URI",
        help="PEFT: the base model (a folder or models:/...); default: the adapter's",
    )
    p.add_argument(
        "--merge-adapter",
        action="store_true",
        help="PEFT: save the merged model instead of adapter + base reference",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also export an ONNX graph checked against torch (encoder tasks; engine=onnx/auto)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_parser(sub: Any) -> None:
    """Add ``save`` and ``log`` to the ``hfspark`` command's subparsers."""
    save = sub.add_parser("save", help="save a local checkpoint folder with the hfspark flavor")
    _model_args(save)
    save.add_argument("dest", help="where to save (folder, file://, s3://...)")
    save.add_argument("--overwrite", action="store_true", help="replace an existing saved model")
    log = sub.add_parser("log", help="log a local checkpoint folder into MLflow (and register it)")
    _model_args(log)
    log.add_argument("--name", default="model", help="the model's name in the run (model)")
    log.add_argument("--registered-model-name", metavar="NAME", help="register a version")
    log.add_argument("--alias", help="set this alias on the new version (e.g. champion)")
    log.add_argument("--experiment", help="MLflow experiment name (created if needed)")
    log.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    log.add_argument("--run-id", help="log into this run (default: a new run)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"task": args.task, "allow_pickle": args.allow_pickle}
    if args.base_model:
        out["base_model"] = args.base_model
    if args.merge_adapter:
        out["merge_adapter"] = True
    if args.onnx:
        out["onnx"] = True
    return out


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    for key, value in result.items():
        if value is not None:
            print(f"{key + ':':<12} {value}")


def command(args: argparse.Namespace, embedded: bool = True) -> int:
    """Run ``hfspark save`` or ``hfspark log``; returns the exit code (errors propagate)."""
    model = _load_source(args)
    if args.command == "save":
        from hfspark.flavor import save_model

        info = save_model(model, args.dest, overwrite=args.overwrite, **_options(args))
        _print({"saved": args.dest, "task": info.task, "hash": info.content_hash}, args.json)
        return 0
    import mlflow

    from hfspark.flavor import log_model

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    if args.experiment:
        mlflow.set_experiment(args.experiment)
    if args.alias and not args.registered_model_name:
        from hfspark.errors import ConfigError

        raise ConfigError("--alias needs --registered-model-name (the alias names a version).")
    # MLflow prints run links on stdout: keep stdout for the result (--json stays parseable)
    with contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_id=args.run_id) as run:
        info = log_model(
            model,
            args.name,
            registered_model_name=args.registered_model_name,
            alias=args.alias,
            **_options(args),
        )
    version = info.registered_model_version
    name = args.registered_model_name
    _print(
        {
            "run": run.info.run_id,
            "uri": f"runs:/{run.info.run_id}/{args.name}",
            "model": info.model_uri,
            "version": f"models:/{name}/{version}" if name else None,
            "alias": f"models:/{name}@{args.alias}" if args.alias else None,
        },
        args.json,
    )
    return 0


def _load_source(args: argparse.Namespace) -> Any:
    """The folder (a checkpoint, or a PEFT adapter folder that save_model recognizes)."""
    from pathlib import Path

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        from hfspark.errors import ConfigError

        raise ConfigError(f"{args.folder} is not a folder: pass a local checkpoint folder.")
    return str(folder)
