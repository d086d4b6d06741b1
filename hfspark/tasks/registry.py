"""The task registry: task name -> adapter class (imported lazily), plus aliases and your own tasks.

Built-in tasks live in :data:`TASKS`. Your own tasks come from three places, all resolved by
:func:`canonical_task` / :func:`get_task` like built-in ones:

* :func:`register_task` (``register_task("rerank", CrossEncoderReranker)``) in the driver;
* installed packages, through the ``hfspark.tasks`` entry-point group
  (``rerank = "my_pkg.rerank:CrossEncoderReranker"`` in their ``pyproject.toml``);
* an import path given where a task name goes (``task="my_pkg.rerank:CrossEncoderReranker"``),
  e.g. in a YAML job.

Executors never see the driver's registry: what ships to them is the task *name*, as a
:class:`TaskName` that carries the adapter's import path and registers it again when it is
unpickled there. The adapter's module must therefore be importable on every executor; a class
defined in ``__main__`` (a script run directly, a notebook cell) is refused on the driver.

Example:
    >>> canonical_task("sentiment-analysis")
    'text-classification'
    >>> register_task("rerank", "examples.reranker:CrossEncoderReranker")
    >>> get_task("rerank").__name__
    'CrossEncoderReranker'
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any

from hfspark.errors import ConfigError, UnknownTaskError

if TYPE_CHECKING:
    from hfspark.tasks.base import TaskAdapter

__all__ = [
    "TASKS",
    "ALIASES",
    "CUSTOM_TASKS",
    "ENTRY_POINT_GROUP",
    "TaskName",
    "canonical_task",
    "get_task",
    "register_task",
    "task_names",
]

_log = logging.getLogger(__name__)

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
    "image-feature-extraction": "hfspark.tasks.image_feature_extraction:ImageFeatureExtraction",
    "zero-shot-image-classification": "hfspark.tasks.zero_shot_image:ZeroShotImageClassification",
    "object-detection": "hfspark.tasks.object_detection:ObjectDetection",
    "image-to-text": "hfspark.tasks.image_to_text:ImageToText",
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
    "image-embeddings": "image-feature-extraction",
    "image-captioning": "image-to-text",
}

#: your own tasks: name -> "module:Class" (from :func:`register_task`, entry points, import paths).
CUSTOM_TASKS: dict[str, str] = {}

#: the entry-point group through which installed packages add tasks.
ENTRY_POINT_GROUP = "hfspark.tasks"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_SHIP_HINT = (
    "The module must be importable on the driver and on every executor: install it in the "
    "executors' Python, ship it with spark-submit --py-files (or "
    "spark.sparkContext.addPyFile), or publish it as a package with an 'hfspark.tasks' entry point."
)


class TaskName(str):
    """A task name that carries its adapter's import path, for tasks outside the package.

    It compares, hashes and prints as the plain name; pickled (e.g. inside a UDF shipped to an
    executor) it registers its import path again in the receiving process, so the executor
    resolves the same adapter without any registration of its own.

    Example:
        >>> name = TaskName("rerank", "examples.reranker:CrossEncoderReranker")
        >>> name == "rerank", name.path
        (True, 'examples.reranker:CrossEncoderReranker')
    """

    path: str

    def __new__(cls, name: str, path: str) -> TaskName:
        _yaml_as_str()
        obj = super().__new__(cls, name)
        obj.path = path
        return obj

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return _restore_task, (str.__str__(self), self.path)


_YAML_DONE = False


def _yaml_as_str() -> None:
    """Let PyYAML write a TaskName as a plain string (MLmodel files, job reports); done once,
    on the first TaskName, and touching no other type."""
    global _YAML_DONE
    if _YAML_DONE:
        return
    _YAML_DONE = True
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        return
    yaml.SafeDumper.add_representer(TaskName, yaml.SafeDumper.represent_str)


def _restore_task(name: str, path: str) -> TaskName:
    """Unpickling a :class:`TaskName`: register its import path here (no import yet)."""
    if name not in TASKS:
        CUSTOM_TASKS[name] = path  # the driver's choice wins over this process's own
    return TaskName(name, path)


def task_names() -> list[str]:
    """Every task name and alias (built-in, registered and from entry points), sorted."""
    _discover_entry_points()
    return sorted([*TASKS, *ALIASES, *CUSTOM_TASKS])


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def canonical_task(name: str) -> str:
    """Resolve an alias (``ner``), a translation variant (``translation_en_to_fr``), your own
    task's name or an adapter's import path (``my_pkg.mod:MyTask``) to the task name.

    Your own tasks come back as a :class:`TaskName` (a ``str`` carrying the import path).

    Raises:
        UnknownTaskError: naming the closest valid task and listing all of them.
        ConfigError: an import path that cannot be imported or is not a task adapter.
    """
    raw = str(name).strip()
    if _PATH.match(raw):
        cls = _import_adapter(raw, raw)
        task = _normalise(getattr(cls, "name", ""))
        _check_name(task, f"{raw}: its 'name' attribute")
        _register(task, raw)
        return TaskName(task, raw)
    key = _normalise(raw)
    if key.startswith("translation-") and "-to-" in key:
        return "translation"
    if key in TASKS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if key not in CUSTOM_TASKS:
        _discover_entry_points()
    if key in CUSTOM_TASKS:
        return TaskName(key, CUSTOM_TASKS[key])
    close = difflib.get_close_matches(key, task_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownTaskError(
        f"Unknown task {name!r}.{hint} Valid tasks: {', '.join(task_names())}. Your own task: "
        f"hfspark.tasks.register_task(name, cls), an 'hfspark.tasks' entry point, or "
        f"task='package.module:Class'."
    )


def get_task(name: str) -> type[TaskAdapter]:
    """The adapter class of a task or alias (its module is imported on first use).

    Raises:
        UnknownTaskError: the task is not known.
        ConfigError: your own task's module cannot be imported here (the message says how to
            make it importable on executors).
    """
    path = getattr(name, "path", None)
    if path is not None and str.__str__(name) not in TASKS:
        CUSTOM_TASKS[str.__str__(name)] = path
    task = canonical_task(name)
    if task in TASKS:
        module_name, cls_name = TASKS[task].split(":")
        return getattr(importlib.import_module(module_name), cls_name)
    return _import_adapter(CUSTOM_TASKS[task], task)


def register_task(
    name: str, cls: type[TaskAdapter] | str, *, aliases: tuple[str, ...] = ()
) -> None:
    """Add your own task: ``model_udf``, SQL functions and YAML jobs then accept ``task=name``.

    Args:
        name: the task name (lowercase letters, digits and ``-``); must equal ``cls.name``.
        cls: a :class:`~hfspark.tasks.base.TaskAdapter` subclass defined in an importable
            module, or its import path ``"package.module:Class"`` (imported on first use).
        aliases: other names for the task.

    Raises:
        ConfigError: a built-in name, a class that is not a complete TaskAdapter, or one that
            executors cannot import (defined in ``__main__``, a notebook cell or a function).

    Example:
        >>> from examples.reranker import CrossEncoderReranker
        >>> register_task("rerank", CrossEncoderReranker)
        >>> udf = model_udf("models/cross-encoder", task="rerank")
    """
    key = _normalise(name)
    _check_name(key, f"register_task({name!r}, ...)")
    if key in TASKS or key in ALIASES:
        raise ConfigError(
            f"register_task: {key!r} is a built-in task name; give your task another name."
        )
    if isinstance(cls, str):
        if not _PATH.match(cls.strip()):
            raise ConfigError(
                f"register_task({name!r}, {cls!r}): an import path looks like 'package.module:Class'."
            )
        path = cls.strip()
    else:
        path = _import_path(cls)
        _check_adapter(cls, path)
        declared = _normalise(getattr(cls, "name", ""))
        if declared != key:
            raise ConfigError(
                f"register_task({name!r}, {cls.__name__}): the class's name attribute is "
                f"{getattr(cls, 'name', None)!r}; set name = {key!r} on the class (or register "
                f"it under {declared!r} and pass aliases=({key!r},))."
            )
    _register(key, path)
    for alias in aliases:
        akey = _normalise(alias)
        _check_name(akey, f"alias {alias!r}")
        if akey in TASKS or akey in ALIASES:
            raise ConfigError(f"register_task: alias {akey!r} is a built-in task name.")
        _register(akey, path)


def _register(key: str, path: str) -> None:
    old = CUSTOM_TASKS.get(key)
    if old is not None and old != path:
        _log.warning("hfspark: task %r now uses %s (was %s)", key, path, old)
    CUSTOM_TASKS[key] = path


def _check_name(key: str, where: str) -> None:
    if not _NAME.match(key):
        raise ConfigError(
            f"{where}: task names are lowercase letters, digits and '-' (e.g. 'rerank'), got {key!r}."
        )


def _import_path(cls: type) -> str:
    """``module:QualName`` of a class, refused when executors could not import it."""
    module, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if module in (None, "__main__", "builtins") or "<locals>" in qualname:
        where = (
            "a function"
            if "<locals>" in qualname
            else "__main__ (a script run directly or a notebook cell)"
        )
        raise ConfigError(
            f"Task adapter {qualname or cls!r} is defined in {where}: Spark executors import "
            f"adapters by module path and cannot import it there. Move the class into a module "
            f"(e.g. my_tasks.py) and import it from there. {_SHIP_HINT}"
        )
    path = f"{module}:{qualname}"
    if _resolve(path) is not cls:
        raise ConfigError(
            f"Task adapter {qualname} cannot be found again as {path!r} (it was replaced or "
            f"created dynamically); define it at the top level of a module. {_SHIP_HINT}"
        )
    return path


def _resolve(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _import_adapter(path: str, task: str) -> type[TaskAdapter]:
    """Import your own task's adapter class, with an error that says how to ship it."""
    try:
        cls = _resolve(path)
    except ImportError as e:
        raise ConfigError(
            f"Task {task!r}: cannot import its adapter {path!r} in this Python process "
            f"({type(e).__name__}: {e}). {_SHIP_HINT}"
        ) from e
    except AttributeError as e:
        raise ConfigError(f"Task {task!r}: {path!r} names nothing importable ({e}).") from e
    _check_adapter(cls, path)
    return cls


def _check_adapter(cls: Any, path: str) -> None:
    from hfspark.tasks.base import TaskAdapter

    if not (inspect.isclass(cls) and issubclass(cls, TaskAdapter)):
        raise ConfigError(
            f"{path} is not a task adapter: subclass hfspark.tasks.TaskAdapter (convert -> "
            f"prepare -> forward, output_type)."
        )
    if inspect.isabstract(cls):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        raise ConfigError(f"Task adapter {path} does not implement {', '.join(missing)}.")
    for attr in ("name", "auto_model"):
        if not isinstance(getattr(cls, attr, None), str):
            raise ConfigError(
                f"Task adapter {path} must set the class attribute {attr!r} (a string)."
            )


_DISCOVERED = False


def _discover_entry_points() -> None:
    """Register the tasks of installed packages (``hfspark.tasks`` entry points), once per process."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = _normalise(ep.name)
        if key in TASKS or key in ALIASES or not _NAME.match(key) or not _PATH.match(ep.value):
            _log.warning(
                "hfspark: ignoring entry point %s = %s (built-in or invalid name/path)",
                ep.name,
                ep.value,
            )
            continue
        CUSTOM_TASKS.setdefault(key, ep.value)


def _rediscover() -> None:
    """Read the entry points again (after installing a package in a running process)."""
    global _DISCOVERED
    _DISCOVERED = False
    _discover_entry_points()
