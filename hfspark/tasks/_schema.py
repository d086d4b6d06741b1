"""Output schemas of structured generation: Spark DDL, JSON Schema or pydantic -> one JSON Schema.

:func:`normalize_schema` turns what a user gives into one self-contained JSON Schema (``$ref``
inlined, objects closed) that the grammar is compiled from; :func:`spark_type` maps it to the
Spark struct the UDF returns (refusing, with the field named, what has no Spark type), and
:func:`to_spark_value` converts a parsed JSON value to that type (``1`` -> ``1.0`` for a double).
Spark integer widths of a DDL string survive as an ``x-spark-type`` hint, stripped before the
grammar is compiled (:func:`grammar_schema`).

Example:
    >>> s = normalize_schema("label string, confidence double, tags array<string>")
    >>> spark_type(s).simpleString()
    'struct<label:string,confidence:double,tags:array<string>>'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

__all__ = ["normalize_schema", "parse_ddl", "spark_type", "grammar_schema", "to_spark_value"]

_HINT = "x-spark-type"
_DDL_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "varchar": {"type": "string"},
    "char": {"type": "string"},
    "boolean": {"type": "boolean"},
    "bool": {"type": "boolean"},
    "tinyint": {"type": "integer", _HINT: "tinyint"},
    "byte": {"type": "integer", _HINT: "tinyint"},
    "smallint": {"type": "integer", _HINT: "smallint"},
    "short": {"type": "integer", _HINT: "smallint"},
    "int": {"type": "integer", _HINT: "int"},
    "integer": {"type": "integer", _HINT: "int"},
    "bigint": {"type": "integer"},
    "long": {"type": "integer"},
    "double": {"type": "number"},
    "float": {"type": "number", _HINT: "float"},
    "real": {"type": "number", _HINT: "float"},
}
_TOKEN = re.compile(
    r"\s*(`[^`]*`|[A-Za-z_][A-Za-z0-9_]*|\(\s*\d+(?:\s*,\s*\d+)?\s*\)|'[^']*'|[<>,:])"
)


class _DDL:
    """A tiny recursive-descent parser of Spark DDL field lists (no JVM needed)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.tokens = text, 0, []
        i = 0
        while i < len(text):
            if text[i:].strip() == "":
                break
            m = _TOKEN.match(text, i)
            if not m:
                raise ValueError(f"output_schema: cannot read the DDL at {text[i : i + 20]!r}")
            self.tokens.append(m.group(1))
            i = m.end()

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok.lower() != expected):
            raise ValueError(
                f"output_schema: expected {expected or 'more'} in DDL {self.text!r}, got {tok!r}"
            )
        self.pos += 1
        return tok

    def fields(self, end: str | None, path: str) -> dict[str, Any]:
        props: dict[str, Any] = {}
        while True:
            name = self.take().strip("`")
            if self.peek() == ":":
                self.take()
            props[name] = self.type(f"{path}{name}")
            while self.peek() is not None and self.peek().lower() in ("not", "null", "comment"):  # type: ignore[union-attr]
                word = self.take().lower()
                if word == "comment":
                    self.take()
            if self.peek() == ",":
                self.take()
                continue
            if self.peek() == end:
                break
            raise ValueError(
                f"output_schema: expected ',' after field {name!r} in DDL {self.text!r}"
            )
        return {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }

    def type(self, path: str) -> dict[str, Any]:
        word = self.take().lower()
        if word == "array":
            self.take("<")
            items = self.type(f"{path}[]")
            self.take(">")
            return {"type": "array", "items": items}
        if word == "struct":
            self.take("<")
            obj = self.fields(">", f"{path}.")
            self.take(">")
            return obj
        if word in _DDL_TYPES:
            if self.peek() and self.peek().startswith("("):  # type: ignore[union-attr]
                self.take()  # varchar(10)
            return dict(_DDL_TYPES[word])
        raise ValueError(
            f"output_schema field {path!r}: Spark type {word!r} has no JSON form; use "
            f"string, boolean, int, bigint, double, float, array<...> or struct<...>"
        )


def parse_ddl(text: str) -> dict[str, Any]:
    """A JSON Schema object for a Spark DDL field list (``"a string, b array<int>"``).

    Example:
        >>> parse_ddl("n int")["properties"]["n"]["type"]
        'integer'
    """
    parser = _DDL(text)
    if parser.peek() is None:
        raise ValueError("output_schema is empty: give fields, e.g. 'label string, score double'")
    out = parser.fields(None, "")
    if parser.peek() is not None:
        raise ValueError(f"output_schema: unexpected {parser.peek()!r} in DDL {text!r}")
    return out


def _inline_refs(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise ValueError("output_schema: recursive $ref schemas have no Spark type")
    if isinstance(node, Mapping):
        if "$ref" in node:
            ref = str(node["$ref"])
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith("#/") or name not in defs:
                raise ValueError(
                    f"output_schema: only local $ref to $defs are supported, got {ref!r}"
                )
            merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_refs(merged, defs, depth + 1)
        return {
            k: _inline_refs(v, defs, depth)
            for k, v in node.items()
            if k not in ("$defs", "definitions")
        }
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth) for v in node]
    return node


def _close_objects(node: Any) -> Any:
    if isinstance(node, Mapping):
        out = {k: _close_objects(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_close_objects(v) for v in node]
    return node


def normalize_schema(value: Any) -> dict[str, Any]:
    """One self-contained JSON Schema object from a DDL string, a JSON Schema or a pydantic class.

    Raises:
        ValueError: unreadable, not an object, or a field with no Spark type (named).
    """
    if isinstance(value, str) and value.lstrip().startswith("{"):  # JSON Schema text (YAML, CLI)
        import json

        try:
            schema = json.loads(value)
        except ValueError as e:
            raise ValueError(f"output_schema is not valid JSON ({e})") from e
    elif isinstance(value, str):
        schema = parse_ddl(value)
    elif isinstance(value, type) and hasattr(value, "model_json_schema"):
        schema = value.model_json_schema()
    elif isinstance(value, Mapping):
        schema = copy.deepcopy(dict(value))
    else:
        raise ValueError(
            f"output_schema must be a Spark DDL string, a JSON Schema or a pydantic "
            f"model class, got {type(value).__name__}"
        )
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    schema = _close_objects(_inline_refs(schema, defs))
    if schema.get("type") != "object" or not schema.get("properties"):
        raise ValueError(
            "output_schema must describe an object with properties (its fields "
            "become the result's columns)"
        )
    for drop in ("title", "$schema", "description"):
        schema.pop(drop, None)
    spark_type(schema)  # refuses what has no Spark type, naming the field
    return schema


def grammar_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema without hfspark's ``x-spark-type`` hints (what the grammar is compiled from)."""

    def strip(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: strip(v) for k, v in node.items() if k != _HINT}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(schema)  # type: ignore[no-any-return]


def _split_null(schema: Mapping[str, Any], path: str) -> tuple[dict[str, Any], bool]:
    """(the schema without its null alternative, whether null is allowed)."""
    s = dict(schema)
    for key in ("anyOf", "oneOf"):
        if key in s:
            alts = [a for a in s[key] if not (isinstance(a, Mapping) and a.get("type") == "null")]
            nullable = len(alts) < len(s[key])
            if len(alts) != 1:
                raise ValueError(
                    f"output_schema field {path!r}: {key} of several types has no Spark "
                    f"type; use one type (optionally nullable)"
                )
            rest = {k: v for k, v in s.items() if k != key}
            inner, more_null = _split_null({**rest, **alts[0]}, path)
            return inner, nullable or more_null
    t = s.get("type")
    if isinstance(t, list):
        kinds = [k for k in t if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"output_schema field {path!r}: type {t} has no single Spark type")
        s["type"] = kinds[0]
        return s, "null" in t
    return s, False


def _scalar_of_enum(values: list[Any], path: str) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {str}:
        return "string"
    if kinds <= {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    if kinds <= {bool}:
        return "boolean"
    raise ValueError(f"output_schema field {path!r}: an enum of mixed types has no Spark type")


def _field_type(schema: Mapping[str, Any], path: str) -> tuple[DataType, bool]:
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        ByteType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        ShortType,
        StringType,
    )

    s, nullable = _split_null(schema, path)
    t = s.get("type")
    if t is None and "enum" in s:
        t = _scalar_of_enum(list(s["enum"]), path)
    if t is None and "const" in s:
        t = _scalar_of_enum([s["const"]], path)
    if t == "object":
        return _struct(s, path), nullable
    if t == "array":
        if not isinstance(s.get("items"), Mapping):
            raise ValueError(f"output_schema field {path!r}: an array needs 'items' (one schema)")
        el, _ = _field_type(s["items"], f"{path}[]")
        return ArrayType(el, True), nullable
    hint = s.get(_HINT)
    if t == "string":
        return StringType(), nullable
    if t == "boolean":
        return BooleanType(), nullable
    if t == "integer":
        by_hint = {"tinyint": ByteType(), "smallint": ShortType(), "int": IntegerType()}
        return by_hint.get(str(hint), LongType()), nullable
    if t == "number":
        return (FloatType() if hint == "float" else DoubleType()), nullable
    raise ValueError(
        f"output_schema field {path!r}: JSON type {t!r} has no Spark type; use "
        f"string, integer, number, boolean, array or object"
    )


def _struct(schema: Mapping[str, Any], path: str) -> StructType:
    from pyspark.sql.types import StructField, StructType

    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        raise ValueError(
            f"output_schema field {path or '(top level)'!r}: an object needs "
            f"'properties' (a free-form map has no struct type)"
        )
    if isinstance(schema.get("additionalProperties"), Mapping):
        raise ValueError(
            f"output_schema field {path or '(top level)'!r}: additionalProperties with "
            f"a schema (a map) is not supported; list the properties"
        )
    fields = []
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            raise ValueError(f"output_schema field {path + name!r}: its schema must be an object")
        dtype, _nullable = _field_type(sub, f"{path}{name}")
        # always nullable in Spark: a failed row (errors="column") holds nulls; the grammar
        # still makes a required, non-null field present in every row that succeeded
        fields.append(StructField(str(name), dtype, True))
    return StructType(fields)


def spark_type(schema: Mapping[str, Any]) -> StructType:
    """The Spark struct of a normalized schema (raises ValueError naming a field without one)."""
    return _struct(schema, "")


def to_spark_value(value: Any, dtype: DataType) -> Any:
    """A parsed JSON value as the Python value Spark's Arrow conversion expects for ``dtype``."""
    from pyspark.sql.types import ArrayType, DoubleType, FloatType, StructType

    if value is None:
        return None
    if isinstance(dtype, StructType):
        return {f.name: to_spark_value(value.get(f.name), f.dataType) for f in dtype.fields}
    if isinstance(dtype, ArrayType):
        return [to_spark_value(v, dtype.elementType) for v in value]
    if isinstance(dtype, (DoubleType, FloatType)):
        return float(value)
    return value
