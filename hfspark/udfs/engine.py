"""The data path of one Arrow batch, straight through:

    Arrow arrays -> task inputs (rows) -> length-sorted batches -> forward -> one Arrow array

Null rows give a null result without a model call; a bad row (undecodable text, a bad
image...) gives an ``error`` value (``errors="column"``) or fails the task naming its position
(``errors="raise"``); the output always has exactly as many rows as the input, in its order.

Example:
    >>> import pyarrow as pa
    >>> out = predict_batch(runtime, [pa.array(["good", None, "bad"])], options, target)
    >>> len(out), out[1].is_valid
    (3, False)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from hfspark.errors import InputSchemaError, RowCountMismatchError, RowError
from hfspark.udfs.arrow import BadInput, arrow_result, arrow_rows
from hfspark.udfs.batching import plan_batches
from hfspark.udfs.executor import Runtime
from hfspark.udfs.options import UdfOptions
from hfspark.udfs.startup import first_call_done

__all__ = ["check_arrow_types", "predict_rows", "predict_batch"]

log = logging.getLogger("hfspark.engine")

_DEFAULT_BATCH_GPU = 32
_DEFAULT_BATCH_CPU = 8  # on CPU, small length-sorted batches pad least (measured in bench/)
#: on CPU, a model whose forward calls cost this many padded tokens or more (a small model,
#: all call overhead) gets batches of up to _LARGE_BATCH_CPU rows.
_CHEAP_MODEL_CALL_COST, _LARGE_BATCH_CPU = 64.0, 64


def _coarse(t: pa.DataType) -> str:
    """An Arrow type as the coarse Spark names adapters declare (string, binary, struct...)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_struct(t):
        return "struct"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        el = t.value_type
        if pa.types.is_floating(el):
            return "array<float>"
        return "array<struct>" if pa.types.is_struct(el) else f"array<{_coarse(el)}>"
    return {
        "int64": "bigint",
        "int32": "int",
        "int16": "smallint",
        "int8": "tinyint",
        "float": "float",
        "double": "double",
        "bool": "boolean",
    }.get(str(t), str(t))


def check_arrow_types(task: str, arrays: Sequence[pa.Array]) -> None:
    """Refuse a batch whose columns are not of the task's input types, before any model load.

    The driver checks types whenever it knows the DataFrame (``transform``, ``check_input``,
    jobs); a UDF applied to a column of the wrong type elsewhere (``f("id")``, SQL) fails
    here, on its first batch, with the same advice, instead of loading the model and failing
    every row.

    Example:
        >>> check_arrow_types("feature-extraction", [pa.array([1, 2])])
        Traceback (most recent call last):
        hfspark.errors.InputSchemaError: Task 'feature-extraction': input 'text' must be ...
    """
    from hfspark.tasks import get_task

    adapter = get_task(task)
    fields = adapter.input_fields
    first = tuple(adapter.input_types.get(fields[0], ("string",)))
    if len(arrays) == 1 and pa.types.is_struct(arrays[0].type) and "struct" not in first:
        named = [(f.name, f.type) for f in arrays[0].type]
    else:
        named = [(name, a.type) for name, a in zip(fields, arrays, strict=False)]
    for name, atype in named:
        if name not in fields or pa.types.is_null(atype):
            continue
        accepted = tuple(adapter.input_types.get(name, ("string",)))
        got = _coarse(atype)
        if got not in accepted:
            raise InputSchemaError(
                f"Task {task!r}: input {name!r} must be of Spark type {' or '.join(accepted)}, "
                f"got {got}. Cast the column (e.g. F.col(c).cast('string')) or pick another "
                f"one; udf.check_input(df, ...) or udf.transform(df, ...) checks this on the driver."
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # an ONNX worker has not imported it
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()  # torch's CUDA message, or ONNX Runtime's allocation failure
    return "out of memory" in text or "failed to allocate memory" in text


class _Run:
    """State of one batch: results and errors by row position."""

    def __init__(self, runtime: Runtime, options: UdfOptions, n: int) -> None:
        self.rt = runtime
        self.opts = options
        self.results: list[Any] = [None] * n
        self.errors: list[str | None] = [None] * n
        self.oom_retries = 0

    def fail(self, pos: int, exc: BaseException) -> None:
        if self.opts.errors == "raise":
            raise RowError(
                f"Row {pos} of this batch failed: {_describe(exc)}. Fix the input, or use "
                f"errors='column' to keep going with an error value for such rows."
            ) from exc
        self.errors[pos] = _describe(exc)

    def convert(self, rows: list[Any]) -> tuple[list[int], list[Any]]:
        adapter, positions, items = self.rt.adapter, [], []
        for pos, value in enumerate(rows):
            if value is None:
                continue
            if isinstance(value, BadInput):
                self.fail(pos, RowError(value.reason))
                continue
            try:
                items.append(adapter.convert(value))
                positions.append(pos)
            except Exception as e:  # noqa: BLE001 - one bad row must not fail the batch
                self.fail(pos, e)
        return positions, items

    def prepare(self, positions: list[int], items: list[Any]) -> tuple[list[int], list[Any]]:
        adapter, loaded = self.rt.adapter, self.rt.loaded
        try:
            return positions, adapter.prepare(loaded, items)
        except Exception as batch_exc:  # noqa: BLE001 - isolate the failing rows
            if self.opts.errors == "raise" and len(items) == 1:
                self.fail(positions[0], batch_exc)
            kept_pos, kept = [], []
            for pos, item in zip(positions, items, strict=True):
                try:
                    kept.extend(adapter.prepare(loaded, [item]))
                    kept_pos.append(pos)
                except Exception as e:  # noqa: BLE001
                    self.fail(pos, e)
            return kept_pos, kept

    def forward(self, positions: list[int], features: list[Any], dedupe: bool = True) -> None:
        adapter = self.rt.adapter
        on_gpu = str(self.rt.device).startswith("cuda")
        call_cost = self.opts.call_cost
        if call_cost is None and not on_gpu:  # the task's, scaled to this model (cpu_call_cost)
            call_cost = (
                self.rt.call_cost if self.rt.call_cost is not None else adapter.cpu_call_cost
            )
        cheap = not on_gpu and (call_cost or 0) >= _CHEAP_MODEL_CALL_COST
        batch_size = self.opts.batch_size or (
            _DEFAULT_BATCH_GPU if on_gpu else _LARGE_BATCH_CPU if cheap else _DEFAULT_BATCH_CPU
        )
        if cheap and self.opts.call_cost is None:
            call_cost = None  # calls dominate: full sorted batches, no need to plan the cuts
        keys = [adapter.dedupe_key(f) for f in features] if dedupe else []
        if any(k is not None for k in keys):  # identical inputs: one model call, copied
            first: dict[Any, int] = {}
            unique = [i for i, k in enumerate(keys) if k is None or first.setdefault(k, i) == i]
            self.forward(
                [positions[i] for i in unique], [features[i] for i in unique], dedupe=False
            )
            for i, k in enumerate(keys):
                if k is not None and first[k] != i:
                    src = positions[first[k]]
                    self.results[positions[i]] = copy.deepcopy(self.results[src])
                    self.errors[positions[i]] = self.errors[src]
            return
        lengths = [adapter.length(f) for f in features]
        plan = plan_batches(
            lengths,
            batch_size=batch_size,
            max_tokens=self.opts.max_tokens_per_batch,
            call_cost=call_cost,
        )
        for batch in plan:
            with _no_grad(self.rt):
                self._forward_batch([positions[i] for i in batch], [features[i] for i in batch])

    def _forward_batch(self, positions: list[int], features: list[Any]) -> None:
        adapter, loaded = self.rt.adapter, self.rt.loaded
        try:
            began = time.perf_counter()
            outputs = adapter.forward(loaded, features)
            first_call_done(time.perf_counter() - began)  # this worker's first call only
        except Exception as e:  # noqa: BLE001
            if _is_oom(e) and len(features) > 1:
                self.oom_retries += 1
                log.warning("hfspark: out of memory on %d rows; retrying in halves", len(features))
                _empty_cuda_cache()
                half = len(features) // 2
                self._forward_batch(positions[:half], features[:half])
                self._forward_batch(positions[half:], features[half:])
                return
            if len(features) == 1:
                self.fail(positions[0], e)
                return
            for pos, feature in zip(positions, features, strict=True):  # find the bad row(s)
                self._forward_batch([pos], [feature])
            return
        if len(outputs) != len(features):
            raise RowCountMismatchError(
                f"Task {adapter.name!r} returned {len(outputs)} outputs for {len(features)} inputs"
            )
        for pos, out in zip(positions, outputs, strict=True):
            if isinstance(out, RowError):  # the adapter failed this row only
                self.fail(pos, out)
            else:
                self.results[pos] = out


def _no_grad(runtime: Runtime) -> Any:
    """torch's inference mode for a torch runtime; nothing for ONNX Runtime."""
    if runtime.engine != "torch":
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_rows(
    runtime: Runtime, rows: list[Any], options: UdfOptions
) -> tuple[list[Any], list[str | None]]:
    """Predict Python rows; returns (results, errors), both as long as ``rows``."""
    run = _Run(runtime, options, len(rows))
    window = min(options.sort_window, runtime.adapter.max_sort_window)
    for start in range(0, len(rows), window):
        chunk = rows[start : start + window]
        positions, items = run.convert(chunk)
        positions, features = run.prepare(positions, items)
        run.forward([start + p for p in positions], features)
    return run.results, run.errors


def predict_batch(
    runtime: Runtime, arrays: Sequence[pa.Array], options: UdfOptions, target: pa.DataType
) -> pa.Array:
    """One Arrow batch in, one Arrow array out (same row count, same order)."""
    from pyspark.sql.types import StructType

    adapter = runtime.adapter
    rows = arrow_rows(arrays, adapter.input_fields)
    if adapter.all_inputs_required:  # a null in any input: a null result, no model call
        rows = [
            None if isinstance(r, dict) and any(v is None for v in r.values()) else r for r in rows
        ]
    results, errors = predict_rows(runtime, rows, options)
    out = arrow_result(
        rows,
        results,
        errors,
        target,
        options.errors == "column",
        adapter.result_field,
        isinstance(adapter.output_type(), StructType),
    )
    if len(out) != len(rows):
        raise RowCountMismatchError(f"Output has {len(out)} rows for {len(rows)} input rows")
    return out
