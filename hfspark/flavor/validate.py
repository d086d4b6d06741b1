"""Checks on a model folder that need no weights loaded: config, task, components, safety.

Every check raises an :mod:`hfspark.errors` class whose message names the file or field and
says how to fix it.

Example:
    >>> from hfspark.flavor.validate import check_architecture
    >>> check_architecture("text-generation", {"architectures": ["BartForConditionalGeneration"],
    ...                                        "is_encoder_decoder": True}, "model/config.json")
    Traceback (most recent call last):
    ModelValidationError: model/config.json: task 'text-generation' needs ...
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hfspark.errors import ConfigError, ModelValidationError, UnsafeModelError
from hfspark.flavor.constants import COMPONENT_NAMES, PROMPT_TEMPLATE_TASKS
from hfspark.flavor.taskinfo import SEQ2SEQ_TASKS, architecture_suffixes, required_components

__all__ = [
    "read_json",
    "check_no_remote_code",
    "check_inside",
    "check_prompt_template",
    "check_architecture",
    "detect_components",
    "check_components",
]

#: files whose ``auto_map`` would make transformers import code shipped with the model.
_REMOTE_CODE_FILES = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
)
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def read_json(path: Path, label: str | None = None) -> dict[str, Any]:
    """Read a JSON object file, with errors that name it."""
    name = label or str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelValidationError(
            f"{name} is missing: the folder is not a transformers model. Save it with "
            "model.save_pretrained(folder) or hfspark.flavor.save_model."
        ) from e
    except (OSError, ValueError) as e:
        raise ModelValidationError(f"{name} is not valid JSON ({e}). Save the model again.") from e
    if not isinstance(data, dict):
        raise ModelValidationError(f"{name} must hold a JSON object. Save the model again.")
    return data


def check_no_remote_code(folders: Iterable[Path], root: Path | None = None) -> None:
    """Refuse configs with ``auto_map``: they ask transformers to run code shipped with the model.

    Raises:
        UnsafeModelError: naming the file.
    """
    for folder in dict.fromkeys(folders):
        for name in _REMOTE_CODE_FILES:
            path = folder / name
            if not path.is_file():
                continue
            label = _label(path, root)
            data = read_json(path, label)
            if data.get("auto_map"):
                raise UnsafeModelError(
                    f"{label} has 'auto_map': the model needs its own Python code "
                    "(trust_remote_code), which hfspark never runs. Use a model whose "
                    "architecture is built into transformers."
                )


def _label(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)


def check_inside(root: Path, rel: Any, field: str) -> Path:
    """Resolve a relative path from metadata and refuse one that leaves ``root``.

    Raises:
        UnsafeModelError: absolute path, ``..`` or a link pointing out of the model folder.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise ModelValidationError(f"MLmodel field {field!r} must be a relative folder name.")
    base = root.resolve()
    target = (base / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(base):
        raise UnsafeModelError(
            f"MLmodel field {field!r} = {rel!r} points outside the model folder {root}. "
            "A saved model may only refer to its own files; save the model again."
        )
    return target


def check_prompt_template(template: Any, task: str) -> None:
    """A prompt template must be a string with exactly one ``{prompt}`` and no other field.

    Raises:
        ConfigError: not a string, no/several ``{prompt}``, other fields, or a task that
            MLflow does not template.
    """
    if template is None:
        return
    if not isinstance(template, str):
        raise ConfigError(f"prompt_template must be a string, got {type(template).__name__}.")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"prompt_template is not a valid format string ({e}).") from e
    if fields != ["prompt"]:
        raise ConfigError(
            f"prompt_template must contain exactly one '{{prompt}}' and no other fields; got "
            f"{fields or 'none'} in {template!r}. Example: 'Answer briefly: {{prompt}}'. "
            "Write literal braces as '{{' and '}}'."
        )
    if task not in PROMPT_TEMPLATE_TASKS:
        raise ConfigError(
            f"prompt_template is not supported for task {task!r}; it applies to "
            f"{', '.join(PROMPT_TEMPLATE_TASKS)}."
        )


def check_architecture(task: str, config: Mapping[str, Any], label: str = "config.json") -> None:
    """Check that the model's architecture fits the task (transformers 5 does not).

    A seq2seq folder loaded for text-generation silently becomes a re-initialised causal LM;
    this check refuses it and similar mismatches before any weight is read.

    Raises:
        ModelValidationError: naming the architecture, the task and the accepted kinds.
    """
    raw = config.get("architectures") or []
    archs = [raw] if isinstance(raw, str) else [str(a) for a in raw]
    enc_dec = bool(config.get("is_encoder_decoder"))
    suffixes = architecture_suffixes(task)
    fix = "Pass the task that matches the model (task=...) or a model trained for this task."
    if suffixes and archs and not any(a.endswith(tuple(suffixes)) for a in archs):
        raise ModelValidationError(
            f"{label}: task {task!r} needs a model whose architecture ends with "
            f"{' or '.join(suffixes)}; this one is {', '.join(archs)}. {fix}"
        )
    if task == "text-generation" and enc_dec:
        raise ModelValidationError(
            f"{label}: task 'text-generation' needs a decoder-only (causal LM) model; this one "
            f"is an encoder-decoder ({', '.join(archs) or config.get('model_type')}). Use "
            "'text2text-generation', 'summarization' or 'translation'."
        )
    if task in SEQ2SEQ_TASKS and "is_encoder_decoder" in config and not enc_dec:
        raise ModelValidationError(
            f"{label}: task {task!r} needs an encoder-decoder model; this one "
            f"({', '.join(archs) or config.get('model_type')}) is not. {fix}"
        )
    if task == "zero-shot-classification":
        labels = [str(k).lower() for k in (config.get("label2id") or {})]
        if not any(lbl.startswith("entail") for lbl in labels):
            raise ModelValidationError(
                f"{label}: zero-shot-classification needs an NLI model with an 'entailment' "
                f"label; this one has labels {sorted(config.get('label2id') or {})}. Use an "
                "NLI model (e.g. trained on MNLI) or task='text-classification'."
            )


def detect_components(folder: Path) -> set[str]:
    """Which processor components a transformers folder holds, from its file names."""
    found: set[str] = set()
    if any((folder / f).is_file() for f in _TOKENIZER_FILES):
        found.add("tokenizer")
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            data = json.loads(pre.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if "image_processor_type" in data or "do_resize" in data:
            found.add("image_processor")
        if "feature_extractor_type" in data or "image_processor_type" not in data:
            found.add("feature_extractor")
    if (folder / "processor_config.json").is_file():
        found.add("processor")
    return found


def check_components(task: str, present: Iterable[str], where: str) -> None:
    """Refuse a model that lacks a processor component its task needs.

    A ``processor`` stands in for a tokenizer and a feature extractor or image processor.

    Raises:
        ModelValidationError: naming the missing component and how to save it.
    """
    have = set(present)
    unknown = have - set(COMPONENT_NAMES)
    if unknown:
        raise ModelValidationError(
            f"{where}: unknown component(s) {sorted(unknown)}; components are "
            f"{', '.join(COMPONENT_NAMES)}."
        )
    if "processor" in have:
        return
    for name in required_components(task):
        alt = {"feature_extractor": "image_processor", "image_processor": "feature_extractor"}
        if name in have or (
            name in alt and alt[name] in have and task != "automatic-speech-recognition"
        ):
            continue
        raise ModelValidationError(
            f"{where}: task {task!r} needs a {name} and the model has none. Save it with the "
            f"model: pass a pipeline, or a dict {{'model': model, {name!r}: {name}}}, or call "
            f"{name}.save_pretrained(folder) before saving the folder."
        )
