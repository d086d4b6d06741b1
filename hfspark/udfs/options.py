"""UdfOptions: the one typed set of model UDF options (unknown keys are refused).

The same model is used by :func:`~hfspark.udfs.model_udf` (keyword arguments),
:func:`~hfspark.udfs.register`, a SQL functions file (``conf/models.yaml``) and a YAML job
step's ``options:``; a new option is added here and is then available everywhere.

Example:
    >>> UdfOptions(batch_size=16, errors="column").max_tokens_per_batch is None
    True
    >>> parse_options(batch_sise=16)
    Traceback (most recent call last):
    hfspark.errors.ConfigError: Invalid model UDF options: unknown option 'batch_sise' (did you mean 'batch_size'?) ...
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hfspark.errors import ConfigError

__all__ = ["UdfOptions", "parse_options", "options_error_text"]


class UdfOptions(BaseModel):
    """How a model UDF batches, where it runs and how it reports bad rows.

    Task options (``top_k``, generation settings...) go in ``params`` and are checked by the
    task's own options model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int | None = Field(
        default=None, ge=1, description="most rows per forward pass (default 8 on CPU, 32 on GPU)"
    )
    max_tokens_per_batch: int | None = Field(
        default=None, ge=1, description="most padded tokens per forward pass"
    )
    call_cost: float | None = Field(
        default=None,
        ge=0,
        description="what one forward call costs in padded tokens; batches minimise "
        "call_cost x calls + padded tokens (default 8 for encoders on CPU)",
    )
    max_length: int | None = Field(
        default=None, ge=1, description="truncate inputs to this many tokens"
    )
    device: str = Field(
        default="auto", description="auto (the task's GPU, else CUDA, else CPU), cpu, cuda:N"
    )
    device_map: Literal["auto", "balanced", "sequential"] | None = Field(
        default=None, description="spread a large model over the executor's GPUs (accelerate)"
    )
    torch_dtype: str = Field(
        default="auto",
        description="auto (bf16/fp16 on GPU, fp32 on CPU) or float32/float16/bfloat16",
    )
    engine: Literal["torch", "onnx", "auto"] = Field(
        default="torch",
        description="torch; onnx (ONNX Runtime on CPU for encoder tasks: a verified export, "
        "no torch on the worker); auto (onnx where verified on a CPU worker, else torch)",
    )
    cpu_kernels: Literal["auto", "onednn", "aten"] = Field(
        default="auto",
        description="float32 Linear layers on a CPU (torch engine): auto (oneDNN with "
        "prepacked weights where it measures faster on this machine), onednn, aten (torch's BLAS)",
    )
    errors: Literal["raise", "column"] = Field(
        default="raise", description="raise: a bad row fails the task; column: an error field"
    )
    sort_window: int = Field(default=4096, ge=1, description="rows sorted together by length")
    ship: Literal["auto", "always", "never"] = Field(
        default="auto", description="broadcast a driver-local model folder to a real cluster"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="task options")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"):
            return v
        raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    @field_validator("torch_dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        v = v.strip().lower().removeprefix("torch.")
        if v in ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"):
            return {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(v, v)
        raise ValueError("torch_dtype must be auto, float32, float16 or bfloat16")

    def udf_kwargs(self) -> dict[str, Any]:
        """These options as :func:`~hfspark.udfs.model_udf` keyword arguments."""
        return {name: getattr(self, name) for name in UdfOptions.model_fields}


def options_error_text(exc: ValidationError, valid: list[str]) -> str:
    """The parts of a pydantic error on UDF options, naming the nearest valid key."""
    import difflib

    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, valid, n=1)
            parts.append(
                f"unknown option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        else:
            parts.append(f"{key}: {err['msg']}")
    return "; ".join(parts)


def parse_options(**kwargs: Any) -> UdfOptions:
    """Build UdfOptions, turning validation errors into a ConfigError that names the nearest key."""
    try:
        return UdfOptions(**kwargs)
    except ValidationError as e:
        raise ConfigError(
            "Invalid model UDF options: "
            + options_error_text(e, list(UdfOptions.model_fields))
            + ". Task options go in params={...}."
        ) from e
