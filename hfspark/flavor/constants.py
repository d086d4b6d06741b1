"""Names used in a saved model folder: files, MLmodel keys, hfspark metadata keys.

The layout matches MLflow's ``transformers`` flavor (``mlflow/transformers/flavor_config.py``)
so that either library can load a folder the other saved; hfspark adds its own section under
``metadata.hfspark`` in ``MLmodel``.

Example:
    >>> from hfspark.flavor.constants import MLMODEL_FILE, FlavorKey
    >>> MLMODEL_FILE, FlavorKey.TASK
    ('MLmodel', 'task')
"""

from __future__ import annotations

__all__ = [
    "MLMODEL_FILE",
    "MODEL_DIR",
    "COMPONENTS_DIR",
    "MODEL_CARD_FILE",
    "REQUIREMENTS_FILE",
    "PYTHON_ENV_FILE",
    "CONDA_FILE",
    "INPUT_EXAMPLE_FILE",
    "INCOMPLETE_MARKER",
    "CONFIG_FILE",
    "SAFETENSORS_INDEX_FILE",
    "FLAVOR_NAME",
    "PYFUNC_FLAVOR",
    "PYFUNC_LOADER",
    "HFSPARK_FORMAT_VERSION",
    "COMPONENT_NAMES",
    "PICKLE_SUFFIXES",
    "OTHER_WEIGHT_SUFFIXES",
    "PROMPT_TEMPLATE_TASKS",
    "CACHE_ENV",
    "FlavorKey",
    "PyfuncKey",
    "HfSparkKey",
]

# ------------------------------------------------------------------ files and folders
MLMODEL_FILE = "MLmodel"
MODEL_DIR = "model"  # MLflow's ``model_binary`` folder (save_pretrained output)
COMPONENTS_DIR = "components"  # components/<name>/ (tokenizer, feature_extractor, ...)
MODEL_CARD_FILE = "model_card.md"
REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"
INPUT_EXAMPLE_FILE = "input_example.json"
#: present in a folder while a save is in progress; a folder holding it is never valid.
INCOMPLETE_MARKER = ".hfspark-incomplete"
CONFIG_FILE = "config.json"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"

FLAVOR_NAME = "transformers"
PYFUNC_FLAVOR = "python_function"
PYFUNC_LOADER = "mlflow.transformers"
#: bump when the hfspark metadata section changes incompatibly.
HFSPARK_FORMAT_VERSION = 1

#: processor components a model may carry, in MLflow's naming.
COMPONENT_NAMES = ("tokenizer", "feature_extractor", "image_processor", "processor")

#: weight files that are unpickled on load (arbitrary code execution): refused by default.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: weights of other frameworks: never copied (hfspark keeps safetensors only).
OTHER_WEIGHT_SUFFIXES = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".tflite", ".gguf")

#: tasks for which MLflow accepts a prompt template (mlflow/transformers/__init__.py).
PROMPT_TEMPLATE_TASKS = (
    "feature-extraction",
    "fill-mask",
    "summarization",
    "text2text-generation",
    "text-generation",
)

#: overrides the local cache folder of remote models (default ``~/.cache/hfspark/models``).
CACHE_ENV = "HFSPARK_CACHE_DIR"


class FlavorKey:
    """Keys of ``flavors.transformers`` in ``MLmodel`` (same names as MLflow's)."""

    TRANSFORMERS_VERSION = "transformers_version"
    TASK = "task"
    INSTANCE_TYPE = "instance_type"
    FRAMEWORK = "framework"
    TORCH_DTYPE = "torch_dtype"
    MODEL_TYPE = "pipeline_model_type"
    MODEL_NAME = "source_model_name"
    MODEL_BINARY = "model_binary"
    MODEL_REVISION = "source_model_revision"
    COMPONENTS = "components"
    COMPONENT_TYPE = "{}_type"  # e.g. tokenizer_type: BertTokenizer
    PROCESSOR_TYPE = "processor_type"
    PEFT = "peft_adaptor"
    CODE = "code"


class PyfuncKey:
    """Keys of ``flavors.python_function`` and of the top level of ``MLmodel``."""

    LOADER_MODULE = "loader_module"
    PYTHON_VERSION = "python_version"
    ENV = "env"
    MODEL_CONFIG = "config"  # pyfunc model_config (MLflow writes it as "config")
    FLAVORS = "flavors"
    METADATA = "metadata"
    PROMPT_TEMPLATE = "prompt_template"  # in ``metadata`` (where MLflow reads it)


class HfSparkKey:
    """Keys of the ``metadata.hfspark`` section that hfspark writes into ``MLmodel``."""

    SECTION = "hfspark"
    FORMAT_VERSION = "format_version"
    TASK = "task"
    INFERENCE_CONFIG = "inference_config"
    SCHEMA = "schema"
    SCHEMA_INPUT = "input"
    SCHEMA_OUTPUT = "output"
    CONTENT_HASH = "content_hash"
    WEIGHT_FILES = "weight_files"
    VERSIONS = "versions"
    MODEL_DIR = "model_dir"
    COMPONENTS = "components"
    INPUT_EXAMPLE = "input_example"
