"""Arrow in, Arrow out: a UDF batch's arrays as Python rows, and results as one Arrow array.

In:  one plain column gives its values; one struct column gives a dict per row (keyed by
its field names); several columns give dicts keyed by the task's input fields, in order.
A null row (or a row whose first field is null) is ``None``. A string that is not valid
UTF-8 becomes a :class:`BadInput` for that row only (the row's error, never the batch's).

Out: results in input order, typed by the UDF's Spark return type. A null input row gives a
null (a null struct, a null array), never a struct of nulls; with ``errors="column"`` a
failed row gives its ``error`` and null result fields.

Example:
    >>> import pyarrow as pa
    >>> arrow_rows([pa.array(["good", None])], ("text",))
    ['good', None]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["BadInput", "arrow_rows", "arrow_result", "arrow_type"]


@dataclass(frozen=True)
class BadInput:
    """A row whose value could not be read (the reason is its error)."""

    reason: str


def _utf8_reason(exc: UnicodeDecodeError) -> str:
    return (
        f"invalid UTF-8 in this row ({exc.reason} at byte {exc.start}): clean the column "
        f"with F.make_valid_utf8(col), which replaces bad bytes with U+FFFD"
    )


def _values(arr: pa.Array) -> list[Any]:
    """Python values of one array; rows that cannot be decoded become BadInput."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        return arr.to_pylist()
    except UnicodeDecodeError:
        pass
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        raw = arr.view(pa.large_binary() if pa.types.is_large_string(arr.type) else pa.binary())
        out: list[Any] = []
        for value in raw.to_pylist():
            try:
                out.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError as e:
                out.append(BadInput(_utf8_reason(e)))
        return out
    out = []
    for i in range(len(arr)):  # nested strings (chat messages...): row by row
        try:
            out.append(arr[i].as_py())
        except UnicodeDecodeError as e:
            out.append(BadInput(_utf8_reason(e)))
    return out


def arrow_rows(arrays: Sequence[pa.Array], fields: Sequence[str]) -> list[Any]:
    """One Python value per row (``None`` for a null row, :class:`BadInput` for unreadable text)."""
    if len(arrays) == 1 and not pa.types.is_struct(arrays[0].type):
        return _values(arrays[0])
    if len(arrays) == 1:
        struct = arrays[0]
        if isinstance(struct, pa.ChunkedArray):
            struct = struct.combine_chunks()
        names = list(struct.type.names)
        children = [_values(c) for c in struct.flatten()]  # parent nulls carried into fields
        valid = struct.is_valid().to_pylist()
    else:
        names = list(fields[: len(arrays)])
        children = [_values(a) for a in arrays]
        valid = [True] * (len(arrays[0]) if arrays else 0)
    rows: list[Any] = []
    for i, ok in enumerate(valid):
        values = [c[i] for c in children]
        if not ok or (values and values[0] is None):
            rows.append(None)
            continue
        bad = next((v for v in values if isinstance(v, BadInput)), None)
        rows.append(bad if bad is not None else dict(zip(names, values, strict=True)))
    return rows


def arrow_type(spark_type: DataType) -> pa.DataType:
    """The Arrow type Spark expects back for a Spark type."""
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(spark_type)


def arrow_result(
    rows: Sequence[Any],
    results: Sequence[Any],
    errors: Sequence[str | None],
    target: pa.DataType,
    errors_column: bool,
    result_field: str,
    struct_output: bool,
) -> pa.Array:
    """The UDF's output array: one value per input row, in order.

    Args:
        rows: the input rows (``None`` marks a null input: its output is null).
        results: the task's outputs (``None`` for failed rows).
        errors: each row's error text, or None.
        target: the Arrow type of the UDF's return type.
        errors_column: whether the return type carries an ``error`` field.
        result_field: the field holding a non-struct result when ``errors_column``.
        struct_output: whether the task's own output is a struct.
    """
    values: list[Any] = []
    for row, result, error in zip(rows, results, errors, strict=True):
        if row is None:
            values.append(None)
        elif not errors_column:
            values.append(result)
        elif struct_output:
            values.append({**(result or {}), "error": error})
        else:
            values.append({result_field: result, "error": error})
    return pa.array(values, type=target)
