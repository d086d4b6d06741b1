"""UdfOptions: the typed options of a model UDF (unknown keys are refused)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hfspark.errors import ConfigError

__all__ = ["UdfOptions", "parse_options"]


class UdfOptions(BaseModel):
    """How a model UDF batches and where it runs (task options go in ``params``).

    Example:
        >>> UdfOptions(batch_size=16, errors="column").max_tokens_per_batch is None
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    max_tokens_per_batch: int | None = Field(default=None, ge=1)
    call_cost: float | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    device: str = "auto"
    device_map: Literal["auto", "balanced", "sequential"] | None = None
    torch_dtype: str = "auto"
    errors: Literal["raise", "column"] = "raise"
    sort_window: int = Field(default=4096, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)

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


def parse_options(**kwargs: Any) -> UdfOptions:
    """Build UdfOptions, turning validation errors into a ConfigError that names the nearest key."""
    import difflib

    try:
        return UdfOptions(**kwargs)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(UdfOptions.model_fields), n=1)
                parts.append(f"unknown option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            else:
                parts.append(f"{key}: {err['msg']}")
        raise ConfigError(
            "Invalid model UDF options: " + "; ".join(parts)
            + ". Task options go in params={...}."
        ) from e
