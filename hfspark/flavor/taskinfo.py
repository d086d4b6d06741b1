"""What the flavor needs to know about a task, from its adapter or from a static table.

The adapters (:mod:`hfspark.tasks`) own the truth: their class attributes ``architectures``,
``components``, ``mlflow_task``, ``auto_model``, ``input_fields``, ``input_types``. Only class
attributes are read (no model is loaded). When an adapter module cannot be imported, the static
tables below stand in, so saving and reading models never depends on every adapter being present.

Example:
    >>> from hfspark.flavor.taskinfo import architecture_suffixes, infer_task
    >>> architecture_suffixes("text-generation")
    ('ForCausalLM', 'LMHeadModel')
    >>> infer_task({"architectures": ["BertForTokenClassification"]}, {"tokenizer"})
    'token-classification'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, HfSparkError, ModelValidationError
from hfspark.tasks.registry import TASKS, canonical_task

if TYPE_CHECKING:
    from hfspark.tasks.base import TaskAdapter

__all__ = [
    "TASK_ARCHITECTURES",
    "TASK_COMPONENTS",
    "TASK_AUTO_MODEL",
    "PIPELINE_CLASSES",
    "SEQ2SEQ_TASKS",
    "adapter_class",
    "architecture_suffixes",
    "required_components",
    "auto_model_name",
    "mlflow_task_name",
    "infer_task",
    "task_schema",
    "check_inference_config",
    "known_options",
    "translation_defaults",
]

_log = logging.getLogger(__name__)

SEQ2SEQ_TASKS = ("text2text-generation", "summarization", "translation")

#: Fallback of the adapters' ``architectures``: accepted ``config.architectures`` suffixes.
TASK_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "text-classification": ("ForSequenceClassification",),
    "token-classification": ("ForTokenClassification",),
    "fill-mask": ("ForMaskedLM", "WithLMHeadModel"),
    "question-answering": ("ForQuestionAnswering", "ForQuestionAnsweringSimple"),
    "zero-shot-classification": ("ForSequenceClassification",),
    "feature-extraction": (),
    "text-generation": ("ForCausalLM", "LMHeadModel"),
    "text2text-generation": ("ForConditionalGeneration", "EncoderDecoderModel"),
    "summarization": ("ForConditionalGeneration", "EncoderDecoderModel"),
    "translation": ("ForConditionalGeneration", "EncoderDecoderModel"),
    "automatic-speech-recognition": ("ForConditionalGeneration", "ForCTC", "ForSpeechSeq2Seq"),
    "audio-classification": ("ForSequenceClassification", "ForAudioClassification"),
    "image-classification": ("ForImageClassification", "ForImageClassificationWithTeacher"),
    "image-feature-extraction": (),
    "zero-shot-image-classification": (),
    "object-detection": ("ForObjectDetection",),
    "image-to-text": ("VisionEncoderDecoderModel", "BlipForConditionalGeneration"),
}

#: Fallback of the adapters' ``components``.
TASK_COMPONENTS: dict[str, tuple[str, ...]] = {
    **{t: ("tokenizer",) for t in TASKS},
    "automatic-speech-recognition": ("tokenizer", "feature_extractor"),
    "audio-classification": ("feature_extractor",),
    "image-classification": ("image_processor",),
    "image-feature-extraction": ("image_processor",),
    "zero-shot-image-classification": ("tokenizer", "image_processor"),
    "object-detection": ("image_processor",),
    "image-to-text": ("tokenizer", "image_processor"),
}

#: Fallback of the adapters' ``auto_model``.
TASK_AUTO_MODEL: dict[str, str] = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "fill-mask": "AutoModelForMaskedLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "zero-shot-classification": "AutoModelForSequenceClassification",
    "feature-extraction": "AutoModel",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "summarization": "AutoModelForSeq2SeqLM",
    "translation": "AutoModelForSeq2SeqLM",
    "automatic-speech-recognition": "AutoModelForSpeechSeq2Seq",
    "audio-classification": "AutoModelForAudioClassification",
    "image-classification": "AutoModelForImageClassification",
    "image-feature-extraction": "AutoModel",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "object-detection": "AutoModelForObjectDetection",
    "image-to-text": "AutoModelForImageTextToText",
}

#: MLflow's ``instance_type`` for tasks whose pipeline class transformers 5 removed.
PIPELINE_CLASSES: dict[str, str] = {
    "question-answering": "QuestionAnsweringPipeline",
    "text2text-generation": "Text2TextGenerationPipeline",
    "summarization": "SummarizationPipeline",
    "translation": "TranslationPipeline",
    "image-to-text": "ImageToTextPipeline",
}

# Task inference: transformers' auto-mapping tables, tried in this order.
_INFERENCE_ORDER: tuple[tuple[str, str], ...] = (
    ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "automatic-speech-recognition"),
    ("MODEL_FOR_CTC_MAPPING_NAMES", "automatic-speech-recognition"),
    ("MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES", "audio-classification"),
    ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "image-classification"),
    ("MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES", "object-detection"),
    ("MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES", "zero-shot-image-classification"),
    ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "text2text-generation"),
    ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "text-generation"),
    ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", "token-classification"),
    ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", "question-answering"),
    ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "text-classification"),
    ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "fill-mask"),
    ("MODEL_MAPPING_NAMES", "feature-extraction"),
)


def adapter_class(task: str) -> type[TaskAdapter] | None:
    """The adapter class of ``task``, or None when its module is not importable (yet)."""
    from hfspark.tasks.registry import get_task

    try:
        return get_task(task)
    except HfSparkError:
        raise
    except Exception as e:  # a missing or broken adapter module must not break the flavor
        _log.debug("adapter for %r not available (%s); using the flavor's tables", task, e)
        return None


def _attr(task: str, name: str, default: Any) -> Any:
    cls = adapter_class(task)
    return getattr(cls, name, default) if cls is not None else default


def architecture_suffixes(task: str) -> tuple[str, ...]:
    """Accepted ``config.architectures`` suffixes of a task (empty: any architecture)."""
    task = canonical_task(task)
    return tuple(_attr(task, "architectures", TASK_ARCHITECTURES.get(task, ())))


def required_components(task: str) -> tuple[str, ...]:
    """Processor components the task needs (``tokenizer``, ``feature_extractor``...)."""
    task = canonical_task(task)
    return tuple(_attr(task, "components", TASK_COMPONENTS.get(task, ("tokenizer",))))


def auto_model_name(task: str) -> str:
    """Name of the transformers Auto class that loads a model for the task."""
    task = canonical_task(task)
    return str(_attr(task, "auto_model", TASK_AUTO_MODEL.get(task, "AutoModel")))


def mlflow_task_name(task: str, requested: str | None = None) -> str:
    """The task name written for MLflow: the adapter's ``mlflow_task`` or the task itself.

    A translation task keeps its language pair (``translation_en_to_fr``) when one was given.
    """
    task = canonical_task(task)
    if task == "translation" and requested:
        key = requested.strip().lower().replace("-", "_")
        if key.startswith("translation_") and "_to_" in key:
            return key
    return str(_attr(task, "mlflow_task", None) or task)


def translation_defaults(
    task: str, requested: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Fill ``source_lang``/``target_lang`` from a ``translation_en_to_fr`` task name.

    Only when the adapter has those options and the caller did not set them.
    """
    out = dict(options)
    name = mlflow_task_name(task, requested) if requested else ""
    if not name.startswith("translation_") or "_to_" not in name:
        return out
    src, tgt = name.removeprefix("translation_").split("_to_", 1)
    fields = getattr(getattr(adapter_class(task), "Options", None), "model_fields", {}) or {}
    for key, value in (("source_lang", src), ("target_lang", tgt)):
        if key in fields and out.get(key) is None:
            out[key] = value
    return out


def _arch_names(names: Any) -> list[str]:
    if isinstance(names, str):
        return [names]
    return [str(n) for n in names or ()]


def infer_task(config: Mapping[str, Any], components: set[str] | None = None) -> str:
    """Infer the task of a model from its ``config.json`` (``architectures`` and labels).

    Raises:
        ModelValidationError: the task cannot be inferred; it asks for ``task=``.
    """
    archs = _arch_names(config.get("architectures"))
    task: str | None = None
    if archs:
        try:
            from transformers.models.auto import modeling_auto
        except ImportError:  # pragma: no cover - transformers is a dependency
            modeling_auto = None  # type: ignore[assignment]
        for table, candidate in _INFERENCE_ORDER:
            mapping = getattr(modeling_auto, table, {}) if modeling_auto else {}
            known = {n for v in mapping.values() for n in _arch_names(v)}
            if archs[0] in known:
                task = candidate
                break
        if task is None:  # not a transformers class: try the suffix tables
            for candidate, suffixes in TASK_ARCHITECTURES.items():
                if suffixes and archs[0].endswith(suffixes) and candidate not in SEQ2SEQ_TASKS:
                    task = candidate
                    break
    if _is_captioner(config, archs):
        task = "image-to-text"
    if task == "feature-extraction" and _is_vision(config, components):
        task = "image-feature-extraction"
    if task == "text-classification":
        labels = [str(k).lower() for k in (config.get("label2id") or {})]
        if any(label.startswith("entail") for label in labels):
            task = "zero-shot-classification"
    if task is None:
        raise ModelValidationError(
            f"Cannot infer the task of a model with architectures {archs or 'unset'} "
            f"(model_type {config.get('model_type')!r}). Pass task=..., one of: "
            f"{', '.join(sorted(TASKS))}."
        )
    return task


def _is_captioner(config: Mapping[str, Any], archs: list[str]) -> bool:
    """A generative model that reads images: a VisionEncoderDecoder or BLIP-style captioner."""
    return config.get("model_type") in ("vision-encoder-decoder", "blip") or any(
        a in ("VisionEncoderDecoderModel", "BlipForConditionalGeneration") for a in archs
    )


def _is_vision(config: Mapping[str, Any], components: set[str] | None) -> bool:
    """A base model that takes images and no text (ViT, DINOv2...): image features, not text."""
    has_images = "vision_config" in config or "image_size" in config or "num_channels" in config
    has_text = components is not None and ("tokenizer" in components or "processor" in components)
    return has_images and not has_text and "text_config" not in config


def check_inference_config(task: str, inference_config: Mapping[str, Any] | None) -> dict:
    """Validate task options with the adapter's options model (when the adapter is present).

    Raises:
        ConfigError: unknown option or bad value (from the adapter), or not a mapping.
    """
    if inference_config is None:
        return {}
    if not isinstance(inference_config, Mapping):
        raise ConfigError(
            f"inference_config must be a dict of task options, got {type(inference_config).__name__}."
        )
    cls = adapter_class(task)
    if cls is not None:
        cls(dict(inference_config))  # raises ConfigError naming the nearest valid option
    return dict(inference_config)


def known_options(task: str, options: Mapping[str, Any]) -> dict:
    """The subset of ``options`` the task's adapter accepts (all of them without an adapter)."""
    cls = adapter_class(task)
    fields = getattr(getattr(cls, "Options", None), "model_fields", None)
    if fields is None:
        return dict(options)
    return {k: v for k, v in options.items() if k in fields}


def task_schema(task: str, inference_config: Mapping[str, Any] | None = None) -> dict | None:
    """The Spark input and output schema of a task, or None when its adapter is not available.

    Returns:
        ``{"input": {"fields": [...], "types": {...}, "optional": [...]}, "output": "struct<..>"}``

    Raises:
        ConfigError: the inference config is not valid for the task.
    """
    cls = adapter_class(task)
    if cls is None:
        return None
    adapter = cls(dict(inference_config or {}))
    try:
        output = adapter.output_type().simpleString()
    except Exception as e:  # an adapter under construction: skip the schema, keep the model
        _log.warning("cannot compute the output schema of task %r: %s", task, e)
        return None
    return {
        "input": {
            "fields": list(cls.input_fields),
            "types": {k: list(v) for k, v in dict(cls.input_types).items()},
            "optional": list(getattr(cls, "optional_fields", ())),
        },
        "output": output,
    }
