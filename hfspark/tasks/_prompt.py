"""Prompt templates over several input columns, and how their inputs bind.

A template is a Python format string whose fields name the inputs:
``"Title: {title}\\nReview: {body}\\nSentiment:"`` takes the columns ``title`` and ``body``
(``f("title", "body")``, ``f(F.struct("title", "body"))``, SQL ``review(title, body)`` in
field order, a job's ``inputs: [title, body]``). The MLflow template ``"... {prompt} ..."``
(one field, named ``prompt``, used once) keeps its meaning: it wraps the task's one input.

Example:
    >>> template_fields("Title: {title} / {body} / {title}")
    ('title', 'body')
    >>> render("Q: {q} {{x}}", {"q": "why?"})
    'Q: why? {x}'
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hfspark.errors import InputSchemaError, RowError

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = [
    "SCALAR_TYPES",
    "check_template",
    "template_fields",
    "is_single_prompt",
    "render",
    "check_bound_inputs",
    "bound_values",
]

#: Spark type names a template field takes (what ``_type_name`` / the Arrow check call them).
SCALAR_TYPES = (
    "string",
    "integer",
    "int",
    "long",
    "bigint",
    "short",
    "smallint",
    "byte",
    "tinyint",
    "double",
    "float",
    "boolean",
    "decimal",
    "date",
    "timestamp",
)


def _raw_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"prompt_template is not a valid format string ({e})") from e


def check_template(template: str) -> str:
    """Validate a template: named fields only (``{title}``), ``{prompt}`` at most once.

    Raises:
        ValueError: no field, a positional/attribute field, or ``{prompt}`` twice (pydantic
            turns it into the options error).

    Example:
        >>> check_template("{a} and {b}")
        '{a} and {b}'
    """
    fields = _raw_fields(template)
    if not fields:
        raise ValueError(
            "prompt_template must hold at least one field: '{prompt}' exactly once (the input), "
            "or fields named after the input columns ('Title: {title} Body: {body}'); "
            "write literal braces as '{{' and '}}'"
        )
    for f in fields:
        if not f.isidentifier():
            raise ValueError(
                f"prompt_template field {{{f}}} must be a plain column name (letters, digits, _); "
                f"positional '{{}}', attributes and indexes are not supported"
            )
    if fields.count("prompt") > 1 and set(fields) == {"prompt"}:
        raise ValueError(
            "prompt_template must hold '{prompt}' exactly once (MLflow style); "
            "name other inputs after their columns"
        )
    return template


def template_fields(template: str) -> tuple[str, ...]:
    """The distinct field names of a template, in order of first use."""
    return tuple(dict.fromkeys(_raw_fields(template)))


def is_single_prompt(template: str | None) -> bool:
    """Whether ``template`` is the MLflow style ``{prompt}`` wrapper (or no template)."""
    return template is None or template_fields(template) == ("prompt",)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each field replaced by its input's text."""
    return template.format(**{k: _text(v) for k, v in values.items()})


def _nearest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.4)
    return f" (nearest: {close[0]!r})" if close else ""


def check_bound_inputs(
    task: str, fields: Sequence[str], inputs: Sequence[tuple[str, DataType]]
) -> None:
    """Refuse inputs that do not bind one to one, by name, to the template's fields.

    Args:
        task: the task name (for the message).
        fields: the template's field names.
        inputs: (name, Spark type) of each input (columns, or one struct's fields).

    Raises:
        InputSchemaError: a field without input or an input no field uses (nearest name
            named), or a type that is not a scalar.
    """
    from hfspark.tasks.base import _type_name

    names = [n for n, _ in inputs]
    missing = [f for f in fields if f not in names]
    unused = [n for n in names if n not in fields]
    if missing:
        f = missing[0]
        raise InputSchemaError(
            f"Task {task!r}: prompt_template field {{{f}}} has no input{_nearest(f, unused or names)}; "
            f"inputs: {', '.join(names) or 'none'}. Pass a column named {f!r} (F.col(c).alias({f!r}))"
            f" or rename the field."
        )
    if unused:
        n = unused[0]
        raise InputSchemaError(
            f"Task {task!r}: input {n!r} is used by no prompt_template field{_nearest(n, fields)}; "
            f"fields: {', '.join(fields)}. Drop the column or add {{{n}}} to the template."
        )
    for name, dtype in inputs:
        if _type_name(dtype) not in SCALAR_TYPES:
            raise InputSchemaError(
                f"Task {task!r}: input {name!r} must be a string or number to go into "
                f"prompt_template, got {dtype.simpleString()}. Cast it (F.col(c).cast('string'))."
            )


def bound_values(fields: Sequence[str], value: Any) -> dict[str, Any]:
    """A row's template values: a dict keyed by field (struct/several columns) or one value.

    Raises:
        RowError: the row's inputs do not name every field.
    """
    if isinstance(value, Mapping):
        missing = [f for f in fields if f not in value]
        if missing:
            raise RowError(
                f"prompt_template field {{{missing[0]}}} has no input; the row has "
                f"{', '.join(map(str, value)) or 'no fields'}"
            )
        return {f: value[f] for f in fields}
    if len(fields) != 1:
        raise RowError(
            f"prompt_template takes {len(fields)} inputs ({', '.join(fields)}), "
            f"got one value: pass one column per field or a struct"
        )
    return {fields[0]: value}
