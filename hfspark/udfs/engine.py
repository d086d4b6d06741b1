"""The data path of one Arrow batch, straight through:

    Arrow batch (as pandas) -> task inputs -> length-sorted batches -> forward -> typed columns

Null rows give a null result without a model call; a bad row gives an ``error`` value
(``errors="column"``) or fails the task naming its position (``errors="raise"``); the output
always has exactly as many rows as the input, in the input's order.

Example:
    >>> out = predict_frame(runtime, [pd.Series(["good", None, "bad"])], options)
    >>> len(out)
    3
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from hfspark.errors import RowCountMismatchError, RowError
from hfspark.udfs.batching import plan_batches
from hfspark.udfs.executor import Runtime
from hfspark.udfs.options import UdfOptions

__all__ = ["check_value_types", "rows_from_columns", "predict_rows", "predict_frame", "to_output"]

log = logging.getLogger("hfspark.engine")

_DEFAULT_BATCH_GPU = 32
_DEFAULT_BATCH_CPU = 8  # on CPU, small length-sorted batches pad least (measured in bench/)


def rows_from_columns(columns: Sequence[pd.Series | pd.DataFrame], fields: Sequence[str]) -> list[Any]:
    """Turn the UDF's pandas inputs into one Python value per row (None for a null row).

    One plain column gives its values; one struct column (a DataFrame) gives dicts; several
    columns are packed into dicts keyed by the task's input fields, in order.
    """
    if len(columns) == 1 and not isinstance(columns[0], pd.DataFrame):
        return [_none_if_na(v) for v in columns[0].tolist()]
    if len(columns) == 1:
        frame = columns[0]
        names = list(frame.columns)
    else:
        frame = pd.concat([c.reset_index(drop=True) for c in columns], axis=1, ignore_index=True)
        names = list(fields[: len(columns)])
    records = frame.itertuples(index=False, name=None)
    rows: list[Any] = []
    for rec in records:
        values = [_none_if_na(v) for v in rec]
        rows.append(None if values[0] is None else dict(zip(names, values, strict=True)))
    return rows


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "binary": (bytes, bytearray, memoryview),
    "struct": (dict,),
}


def check_value_types(task: str, columns: Sequence[pd.Series | pd.DataFrame]) -> None:
    """Refuse a batch whose columns do not hold the task's input types, before any model load.

    The driver checks types whenever it knows the DataFrame (``transform``, ``check_input``,
    jobs); a UDF applied to a column of the wrong type elsewhere (e.g. ``f("id")`` or SQL)
    fails here, on its first batch, with the same advice, instead of loading the model and
    failing every row.

    Example:
        >>> check_value_types("feature-extraction", [pd.Series([1, 2])])
        Traceback (most recent call last):
        hfspark.errors.InputSchemaError: Task 'feature-extraction': input 'text' must be ...
    """
    from hfspark.errors import InputSchemaError
    from hfspark.tasks import get_task

    adapter = get_task(task)
    fields = adapter.input_fields
    accepted_first = adapter.input_types.get(fields[0], ("string",))
    if len(columns) == 1 and isinstance(columns[0], pd.DataFrame) and "struct" not in accepted_first:
        named = [(str(n), columns[0][n]) for n in columns[0].columns]
    else:
        named = list(zip(fields, columns, strict=False))
    for name, col in named:
        accepted = tuple(adapter.input_types.get(name, ("string",)))
        if isinstance(col, pd.DataFrame):
            if "struct" in accepted or name not in fields:
                continue
            got = "struct"
        else:
            value = next((v for v in col.tolist() if _none_if_na(v) is not None), None)
            if value is None or name not in fields:
                continue
            checks = [_PY_TYPES.get(a) for a in accepted]
            if any(c is None for c in checks) and not isinstance(value, (int, float)):
                continue  # arrays and other types: the adapter's convert() checks each row
            if any(c is not None and isinstance(value, c) for c in checks):
                continue
            got = f"{type(value).__name__} values ({col.dtype})"
        raise InputSchemaError(
            f"Task {task!r}: input {name!r} must be of Spark type {' or '.join(accepted)}, got "
            f"{got}. Cast the column (e.g. F.col(c).cast('string')) or pick another one; "
            f"udf.check_input(df, ...) or udf.transform(df, ...) checks this on the driver."
        )


def _none_if_na(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas for a null
        return None
    return value


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


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

    def forward(self, positions: list[int], features: list[Any]) -> None:
        import torch

        adapter = self.rt.adapter
        on_gpu = str(self.rt.device).startswith("cuda")
        batch_size = self.opts.batch_size or (_DEFAULT_BATCH_GPU if on_gpu else _DEFAULT_BATCH_CPU)
        call_cost = self.opts.call_cost
        if call_cost is None and not on_gpu:
            call_cost = adapter.cpu_call_cost
        lengths = [adapter.length(f) for f in features]
        plan = plan_batches(lengths, batch_size=batch_size, max_tokens=self.opts.max_tokens_per_batch,
                            call_cost=call_cost)
        for batch in plan:
            with torch.inference_mode():
                self._forward_batch([positions[i] for i in batch], [features[i] for i in batch])

    def _forward_batch(self, positions: list[int], features: list[Any]) -> None:
        adapter, loaded = self.rt.adapter, self.rt.loaded
        try:
            outputs = adapter.forward(loaded, features)
        except Exception as e:  # noqa: BLE001
            if _is_oom(e) and len(features) > 1:
                self.oom_retries += 1
                log.warning("hfspark: CUDA out of memory on %d rows; retrying in halves", len(features))
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
            self.results[pos] = out


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_rows(runtime: Runtime, rows: list[Any], options: UdfOptions) -> tuple[list[Any], list[str | None]]:
    """Predict Python rows; returns (results, errors), both as long as ``rows``."""
    run = _Run(runtime, options, len(rows))
    window = min(options.sort_window, runtime.adapter.max_sort_window)
    for start in range(0, len(rows), window):
        chunk = rows[start : start + window]
        positions, items = run.convert(chunk)
        positions, features = run.prepare(positions, items)
        run.forward([start + p for p in positions], features)
    return run.results, run.errors


def to_output(results: list[Any], errors: list[str | None], adapter: Any, options: UdfOptions) -> pd.DataFrame | pd.Series:
    """Shape results as the UDF's pandas return value (DataFrame for structs, Series for arrays)."""
    from pyspark.sql.types import StructType

    out_type = adapter.output_type()
    if isinstance(out_type, StructType):
        names = [f.name for f in out_type.fields]
        frame = pd.DataFrame(
            {n: [r.get(n) if r is not None else None for r in results] for n in names}
        )
        if options.errors == "column":
            frame["error"] = errors
        return frame
    if options.errors == "column":
        return pd.DataFrame({adapter.result_field: results, "error": errors})
    return pd.Series(results, dtype=object)


def predict_frame(
    runtime: Runtime, columns: Sequence[pd.Series | pd.DataFrame], options: UdfOptions
) -> pd.DataFrame | pd.Series:
    """One pandas batch in, one pandas batch out (same row count, same order)."""
    rows = rows_from_columns(columns, runtime.adapter.input_fields)
    results, errors = predict_rows(runtime, rows, options)
    out = to_output(results, errors, runtime.adapter, options)
    if len(out) != len(rows):
        raise RowCountMismatchError(f"Output has {len(out)} rows for {len(rows)} input rows")
    return out
