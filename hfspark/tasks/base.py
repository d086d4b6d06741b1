"""The contract every task adapter follows.

An adapter owns, for one task: the Spark input types it accepts, its Spark output type,
its options (a typed model that rejects unknown keys), how a saved model is loaded, and the
data path of one Arrow batch, in order::

    convert (one row's Python value -> task input)      # per row; bad rows raise RowError
    prepare (task inputs -> features, e.g. token ids)   # batched; length() gives the cost
    forward (one length-sorted batch of features -> Python outputs matching output_type)

The UDF engine (:mod:`hfspark.udfs.engine`) drives these stages: it never looks inside
features or outputs, and an adapter never sees Spark, pandas or the error policy.

Example:
    >>> from hfspark.tasks import get_task
    >>> adapter = get_task("text-classification")({"top_k": 2})
    >>> adapter.output_type().simpleString()
    'struct<label:string,score:double,scores:array<struct<label:string,score:double>>>'
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from hfspark.errors import ConfigError, InputSchemaError, ModelValidationError

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = ["ENCODER_CALL_COST", "TaskOptions", "LoadedModel", "TaskAdapter", "options_error"]

#: a forward call of a small encoder on one CPU thread costs about as much as 8 more tokens
#: (all-MiniLM-L6-v2: ~1.9 ms per call vs ~0.23 ms per token, measured in ``bench/``).
ENCODER_CALL_COST = 8.0


class TaskOptions(BaseModel):
    """Base of every task's options: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int | None = None


@dataclass
class LoadedModel:
    """What an adapter's ``load`` returns and its ``prepare``/``forward`` use."""

    model: Any
    tokenizer: Any = None
    processor: Any = None  # feature extractor, image processor or multimodal processor
    device: Any = "cpu"
    dtype: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: what runs the task's :class:`~hfspark.tasks._graph.Graph`: torch (made on first use
    #: from ``model``) or an ONNX Runtime session.
    runner: Any = None
    #: ``torch`` or ``onnx`` (then ``model`` is a LightModel: its config, no torch weights).
    engine: str = "torch"


def options_error(task: str, exc: ValidationError, valid: Sequence[str]) -> ConfigError:
    """Turn a pydantic error on task options into a ConfigError naming the nearest key."""
    import difflib

    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][0]), list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"unknown option {loc!r}{hint}")
        else:
            parts.append(f"option {loc!r}: {err['msg']}")
    return ConfigError(
        f"Invalid options for task {task!r}: {'; '.join(parts)}. Valid options: {', '.join(valid)}."
    )


class TaskAdapter(ABC):
    """Base class of the task adapters (one subclass per task module)."""

    #: canonical task name (the registry key).
    name: ClassVar[str]
    #: the transformers Auto class that loads the model (e.g. ``AutoModelForSequenceClassification``).
    auto_model: ClassVar[str]
    #: accepted ``config.architectures`` suffixes; an empty tuple accepts any.
    architectures: ClassVar[tuple[str, ...]] = ()
    #: processor components the task needs (``tokenizer``, ``feature_extractor``, ...).
    components: ClassVar[tuple[str, ...]] = ("tokenizer",)
    #: the task name MLflow records for this model (``None``: same as :attr:`name`).
    mlflow_task: ClassVar[str | None] = None
    #: names of the fields of a struct input (or of several input columns, in order).
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    #: Spark type names accepted per input field, e.g. ``{"text": ("string",)}``.
    input_types: ClassVar[Mapping[str, tuple[str, ...]]] = {"text": ("string",)}
    #: fields that may be left out (e.g. ``text_pair``).
    optional_fields: ClassVar[tuple[str, ...]] = ()
    #: the field name used when a non-struct output is wrapped with an ``error`` column.
    result_field: ClassVar[str] = "result"
    #: the options model of the task.
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    #: most rows converted and sorted together (media tasks hold decoded audio/images).
    max_sort_window: ClassVar[int] = 4096
    #: what one forward call costs on a CPU, in units of :meth:`length` (None: fill batches
    #: greedily). Encoder tasks set ~8 tokens: a padded token costs as much as a real one there,
    #: so batches are cut where that pays (see :func:`hfspark.udfs.batching.plan_batches`).
    cpu_call_cost: ClassVar[float | None] = None

    #: task options that change the exported ONNX graph (part of its file name).
    graph_options: ClassVar[tuple[str, ...]] = ()

    #: a row whose inputs hold any null gives a null result (prompt templates over columns).
    all_inputs_required: bool = False
    #: several input columns bind to :attr:`input_fields` by their names (one struct is built).
    binds_by_name: bool = False

    @classmethod
    def auto_model_for(cls, config: Any) -> str:
        """The Auto class for this model's config (e.g. CTC vs seq2seq speech models)."""
        return cls.auto_model

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._onnx: tuple[Path, Mapping[str, Any]] | None = None
        try:
            self.options = self.Options.model_validate(dict(options or {}))
        except ValidationError as e:
            raise options_error(self.name, e, list(self.Options.model_fields)) from e

    # ------------------------------------------------------------------ driver side
    @abstractmethod
    def output_type(self) -> DataType:
        """The Spark type of one output row (a StructType or an ArrayType)."""

    def check_input(self, types: Sequence[DataType]) -> None:
        """Refuse input column types that do not fit the task (on the driver, before any data).

        ``types`` holds one Spark type per input column; a single struct column is matched
        field by field against :attr:`input_fields`.
        """
        from pyspark.sql.types import StructType

        fields: dict[str, DataType]
        if (
            len(types) == 1
            and isinstance(types[0], StructType)
            and "struct" not in self._accepted(self.input_fields[0])
        ):
            fields = {f.name: f.dataType for f in types[0].fields}
            missing = [
                f for f in self.input_fields if f not in fields and f not in self.optional_fields
            ]
            if missing:
                raise InputSchemaError(
                    f"Task {self.name!r} expects a struct with fields {list(self.input_fields)}; "
                    f"the input struct {types[0].simpleString()} lacks {missing}. Build it with "
                    f"F.struct(F.col(...).alias({missing[0]!r}), ...)."
                )
        else:
            required = [f for f in self.input_fields if f not in self.optional_fields]
            if not required <= list(self.input_fields[: len(types)]) or len(types) > len(
                self.input_fields
            ):
                raise InputSchemaError(
                    f"Task {self.name!r} takes {len(required)} to {len(self.input_fields)} input "
                    f"columns ({', '.join(self.input_fields)}), got {len(types)}."
                )
            fields = dict(zip(self.input_fields, types, strict=False))
        for name, dtype in fields.items():
            if name not in self.input_fields:
                continue
            accepted = self._accepted(name)
            if _type_name(dtype) not in accepted:
                raise InputSchemaError(
                    f"Task {self.name!r}: input {name!r} must be of Spark type "
                    f"{' or '.join(accepted)}, got {dtype.simpleString()}. Cast the column "
                    f"(e.g. F.col(c).cast('string')) or pick another one."
                )

    def _accepted(self, field_name: str) -> tuple[str, ...]:
        return tuple(self.input_types.get(field_name, ("string",)))

    def picklable_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The task options as shipped to executors (e.g. a user's class replaced by data)."""
        return dict(params)

    # ---------------------------------------------------------------- executor side
    @classmethod
    def exports_onnx(cls) -> bool:
        """Whether this task's model call is a :class:`~hfspark.tasks._graph.Graph` (ONNX-able)."""
        return cls.graph is not TaskAdapter.graph

    def graph(self, loaded: LoadedModel) -> Graph:
        """The task's model call as a Graph (encoder tasks); others run their own forward."""
        raise NotImplementedError(f"task {self.name!r} has no ONNX graph")

    def graph_name(self) -> str:
        """The exported graph's file stem: the task and the options that change the graph."""
        import hashlib
        import json

        opts = {k: getattr(self.options, k, None) for k in self.graph_options}
        tag = hashlib.sha256(json.dumps(opts, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}-{tag[:10]}"

    def run(self, loaded: LoadedModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the task's graph on padded numpy inputs: numpy outputs, whatever the engine."""
        if loaded.runner is None:
            from hfspark.tasks._graph import TorchRunner

            loaded.runner = TorchRunner(self.graph(loaded), loaded.device)
        return dict(loaded.runner(inputs))

    def load_onnx(
        self,
        model_dir: Path,
        components: Mapping[str, Path],
        graph_path: Path,
        record: Mapping[str, Any],
        threads: int = 1,
    ) -> LoadedModel:
        """Load for ONNX Runtime: ``config.json``, the tokenizer, the verified graph; no torch."""
        self._onnx = (Path(graph_path), {**record, "threads": threads})
        try:
            return self.load(model_dir, components, "cpu", None)
        finally:
            self._onnx = None

    def _load_light(self, model_dir: Path, components: Mapping[str, Path]) -> LoadedModel:
        from hfspark.tasks._graph import LightConfig, LightModel, OrtRunner, light_tokenizer

        assert self._onnx is not None
        path, record = self._onnx
        loaded = LoadedModel(
            model=LightModel(LightConfig.from_folder(model_dir), path),
            device="cpu",
            dtype="float32",
            engine="onnx",
        )
        loaded.runner = OrtRunner(path, threads=int(record.get("threads", 1)))
        folder = components.get("tokenizer", model_dir)
        if record.get("light_tokenizer"):
            loaded.tokenizer = light_tokenizer(folder, record["token_inputs"])
        else:  # the model's own tokenizer class (transformers imports torch for it)
            loaded.tokenizer = _load_component("tokenizer", folder)
        return loaded

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        """Load the model with :attr:`auto_model` and its processors; no remote code, no pickle."""
        if self._onnx is not None:
            return self._load_light(model_dir, components)
        import time

        began = time.perf_counter()
        import transformers
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
        auto = getattr(transformers, self.auto_model_for(config))  # imports the model module
        imported = time.perf_counter()
        kwargs = _weights_kwargs(device, dtype)
        try:
            model = auto.from_pretrained(str(model_dir), **kwargs)
        except (OSError, ValueError) as e:
            raise ModelValidationError(
                f"Cannot load the {self.name} model in {model_dir}: {e}"
            ) from e
        if "device_map" not in kwargs:
            model = model.to(device)
        model.eval()
        loaded = LoadedModel(
            model=model, device=getattr(model, "device", device), dtype=model.dtype
        )
        weighed = time.perf_counter()
        for name in self.components:
            folder = components.get(name, model_dir)
            obj = _load_component(name, folder)
            if name == "tokenizer":
                loaded.tokenizer = obj
            else:
                loaded.processor = obj
        loaded.extras["load_s"] = {
            "imports": imported - began,
            "weights": weighed - imported,
            "processors": time.perf_counter() - weighed,
        }
        return loaded

    def convert(self, value: Any) -> Any:
        """One row's Python value (already non-null) -> the task input. Raise RowError if bad."""
        return value

    @abstractmethod
    def prepare(self, loaded: LoadedModel, items: list[Any]) -> list[Any]:
        """Preprocess task inputs (tokenize, decode audio...) into one feature per input."""

    def length(self, feature: Any) -> int:
        """The cost of one feature for sorting and the token budget (default: its token count)."""
        if isinstance(feature, Mapping) and "input_ids" in feature:
            return len(feature["input_ids"])
        return 1

    def dedupe_key(self, feature: Any) -> Any:
        """A hashable key: features with the same key give the same output (None: no dedupe)."""
        return None

    @abstractmethod
    def forward(self, loaded: LoadedModel, features: list[Any]) -> list[Any]:
        """Run the model on one batch; return one Python value per feature (dict/list).

        A :class:`~hfspark.errors.RowError` in place of an output marks that row failed.
        """


_COMPONENT_LOADERS = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
    "processor": "AutoProcessor",
}


def _weights_kwargs(device: Any, dtype: Any) -> dict[str, Any]:
    """``from_pretrained`` arguments that read safetensors straight into place.

    On the CPU the tensors stay memory-mapped from the file (no copy: the page cache is
    shared by every worker reading the same file). A GPU device goes in as ``device_map`` so
    each tensor is read onto it directly, not built on the CPU first and then copied by
    ``.to()``; a dict or ``auto`` is an accelerate device map as given.

    Example:
        >>> _weights_kwargs("cuda:0", None)["device_map"]
        'cuda:0'
    """
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if isinstance(device, dict) or device == "auto" or str(device).startswith("cuda"):
        kwargs["device_map"] = device
    return kwargs


def _load_component(name: str, folder: Path) -> Any:
    transformers = importlib.import_module("transformers")
    loader = getattr(transformers, _COMPONENT_LOADERS[name])
    try:
        return loader.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelValidationError(
            f"Cannot load the {name} from {folder}: {e}. Save the model with its {name} "
            f"(hfspark.flavor.save_model(..., or a dict with {name!r}))."
        ) from e


def _type_name(dtype: DataType) -> str:
    """A coarse Spark type name: string, binary, struct, array<string>, array<float>, array<struct>."""
    from pyspark.sql.types import ArrayType, DoubleType, FloatType, StructType

    if isinstance(dtype, ArrayType):
        el = dtype.elementType
        if isinstance(el, (FloatType, DoubleType)):
            return "array<float>"
        if isinstance(el, StructType):
            return "array<struct>"
        return f"array<{el.typeName()}>"
    if isinstance(dtype, StructType):
        return "struct"
    return dtype.typeName()
