"""Helpers shared by the job tests (no tests here): tiny models saved with the flavor, inputs, confs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "texts.jsonl"
AUDIO = ROOT / "data" / "audio"
NULL_IDS = (9001, 9002, 9003)

#: tiny model (tests/tiny_models.py name) -> task it is saved with.
SAVED_TASKS = {
    "text-classification": "text-classification",
    "feature-extraction": "feature-extraction",
    "text2text-generation": "summarization",
    "asr-ctc": "automatic-speech-recognition",
}


def save_tiny(tiny_models: dict[str, Path], root: Path) -> dict[str, str]:
    """Save the tiny models the job tests use with the hfspark flavor (once per folder)."""
    from hfspark.flavor import save_model

    out = {}
    for name, task in SAVED_TASKS.items():
        dest = root / name
        if not dest.exists():
            save_model(str(tiny_models[name]), str(dest), task=task)
        out[task] = str(dest)
    return out


def sample_rows(n: int = 60, nulls: bool = True) -> list[dict[str, Any]]:
    """The first ``n`` sample texts, plus rows with a null text (they become row errors)."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:n]]
    if nulls:
        rows += [{"id": i, "source": "none", "text": None} for i in NULL_IDS]
    return rows


def write_conf(path: Path, conf: dict[str, Any]) -> Path:
    """Write a job configuration as YAML."""
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path


def job_conf(
    inp: dict[str, Any],
    model: str,
    out: dict[str, Any],
    *,
    task: str | None = None,
    inputs: Any = "text",
    errors: str = "column",
    run: dict[str, Any] | None = None,
    name: str = "pred",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A one-step job configuration."""
    step: dict[str, Any] = {
        "name": name,
        "uri": model,
        "inputs": inputs,
        "options": {"batch_size": 8, "errors": errors, "device": "cpu", "params": params or {}},
    }
    if task:
        step["task"] = task
    return {
        "spark": {"master": "local[2]"},
        "input": inp,
        "models": [step],
        "output": out,
        "run": {"progress": "off", **(run or {})},
    }
