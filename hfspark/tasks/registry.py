"""The task registry: task name -> adapter class (imported lazily), plus aliases."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from hfspark.errors import UnknownTaskError

if TYPE_CHECKING:
    from hfspark.tasks.base import TaskAdapter

__all__ = ["TASKS", "ALIASES", "canonical_task", "get_task", "task_names"]

#: task name -> "module:Class" of its adapter (one module per task).
TASKS: dict[str, str] = {
    "text-classification": "hfspark.tasks.text_classification:TextClassification",
    "token-classification": "hfspark.tasks.token_classification:TokenClassification",
    "fill-mask": "hfspark.tasks.fill_mask:FillMask",
    "question-answering": "hfspark.tasks.question_answering:QuestionAnswering",
    "zero-shot-classification": "hfspark.tasks.zero_shot:ZeroShotClassification",
    "feature-extraction": "hfspark.tasks.feature_extraction:FeatureExtraction",
    "text-generation": "hfspark.tasks.text_generation:TextGeneration",
    "text2text-generation": "hfspark.tasks.seq2seq:Text2TextGeneration",
    "summarization": "hfspark.tasks.seq2seq:Summarization",
    "translation": "hfspark.tasks.seq2seq:Translation",
    "automatic-speech-recognition": "hfspark.tasks.speech_recognition:SpeechRecognition",
    "audio-classification": "hfspark.tasks.audio_classification:AudioClassification",
    "image-classification": "hfspark.tasks.image_classification:ImageClassification",
}

#: alias -> task name.
ALIASES: dict[str, str] = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "sentence-embeddings": "feature-extraction",
    "embeddings": "feature-extraction",
    "qa": "question-answering",
    "asr": "automatic-speech-recognition",
    "speech-recognition": "automatic-speech-recognition",
    "zero-shot": "zero-shot-classification",
}


def task_names() -> list[str]:
    """Every task name and alias, sorted."""
    return sorted([*TASKS, *ALIASES])


def canonical_task(name: str) -> str:
    """Resolve an alias (``ner``) or a translation variant (``translation_en_to_fr``) to a task name.

    Raises:
        UnknownTaskError: naming the closest valid task and listing all of them.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key.startswith("translation-") and "-to-" in key:
        return "translation"
    if key in TASKS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    close = difflib.get_close_matches(key, task_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownTaskError(
        f"Unknown task {name!r}.{hint} Valid tasks: {', '.join(task_names())}."
    )


def get_task(name: str) -> type[TaskAdapter]:
    """The adapter class of a task or alias (its module is imported on first use)."""
    module_name, cls_name = TASKS[canonical_task(name)].split(":")
    return getattr(importlib.import_module(module_name), cls_name)
