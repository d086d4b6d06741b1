"""Load a job configuration: YAML with line numbers, ``${ENV}`` interpolation, ``--set`` overrides.

YAML is read with ``yaml.SafeLoader`` (the semantics of ``yaml.safe_load``: no Python
objects) while recording where every key and value sits, so a bad key is reported as
``conf/x.yaml:12: models[0].options: unknown key 'batchsize' (did you mean 'batch_size'?)``.

Example:
    >>> from hfspark.jobs.loader import load_config
    >>> cfg = load_config("conf/embeddings.yaml", overrides=["run.chunk_rows=500"])
    >>> cfg.run.chunk_rows
    500
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hfspark.errors import ConfigError
from hfspark.jobs.config import JobConfig
from hfspark.jobs.secrets import MASK, is_secret_key

__all__ = ["Mark", "load_config", "parse_config", "parse_yaml", "apply_override", "interpolate"]

_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: maps whose keys may contain dots (``--set spark.conf.spark.sql.shuffle.partitions=4``).
_FLAT_MAPS = {("spark", "conf"), ("input", "options"), ("output", "options")}


@dataclass(frozen=True)
class Mark:
    """Where a value came from: a file and line (1-based), or a ``--set`` argument."""

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"


Marks = dict[tuple, Mark]


def interpolate(value: str, env: Mapping[str, str], where: Mark | str = "<config>") -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` (``$${`` is a literal ``${``).

    Raises:
        ConfigError: a variable without default is unset (or empty), naming where.
    """

    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable ${{{name}}} is not set: export {name}=... or "
            f"write ${{{name}:-default}}"
        )

    return _ENV.sub(sub, value)


def parse_yaml(text: str, source: str, env: Mapping[str, str] | None = None) -> tuple[Any, Marks]:
    """Parse YAML (safe_load semantics) into Python data plus the mark of every key path.

    Duplicate keys are refused; string scalars are interpolated from ``env``; a plain
    (unquoted) scalar made only of ``${...}`` is then typed like YAML (``${N:-4}`` -> 4).
    """
    env = os.environ if env is None else env
    loader = yaml.SafeLoader(text)
    marks: Marks = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, marks

        def build(n: yaml.Node, path: tuple) -> Any:
            mark = Mark(source, n.start_mark.line + 1, n.start_mark.column + 1)
            marks.setdefault(path, mark)
            if isinstance(n, yaml.CollectionNode) and n.tag not in (_MAP, _SEQ):
                return loader.construct_object(n, deep=True)  # !!set, !!omap; unsafe tags raise
            if isinstance(n, yaml.MappingNode):
                loader.flatten_mapping(n)
                out: dict[Any, Any] = {}
                for key_node, value_node in n.value:
                    key = loader.construct_object(key_node, deep=True)
                    kmark = Mark(
                        source, key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    )
                    if key in out:
                        raise ConfigError(
                            f"{kmark}: duplicate key {key!r} (first at line {marks[(*path, key)].line})"
                        )
                    marks[(*path, key)] = kmark
                    out[key] = build(value_node, (*path, key))
                return out
            if isinstance(n, yaml.SequenceNode):
                return [build(item, (*path, i)) for i, item in enumerate(n.value)]
            value = loader.construct_object(n, deep=True)
            if isinstance(value, str) and "$" in value:
                value = interpolate(value, env, mark)
                whole = _ENV.fullmatch(n.value) is not None
                if whole and getattr(n, "style", None) is None:
                    value = _yaml_scalar(value)
            return value

        return build(node, ()), marks
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Mark(source, mark.line + 1, mark.column + 1) if mark else Mark(source)
        raise ConfigError(f"{where}: invalid YAML: {e.problem or e.context}") from e
    finally:
        loader.dispose()


def _yaml_scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, override: str, marks: Marks | None = None) -> None:
    """Apply one ``key.sub=value`` override in place (value parsed with ``yaml.safe_load``:
    ``5`` is an int, ``true`` a bool, ``[a, b]`` a list, anything else a string).

    List items are addressed by index or, for ``models``, by step name
    (``models.embed.options.batch_size=64``). Keys of ``spark.conf``, ``input.options``
    and ``output.options`` may contain dots.
    """
    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected key.sub=value")
    key, raw = override.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"--set {override!r}: empty key part in {key!r}")
    value = _yaml_value(raw) if raw.strip() else ""
    node: Any = data
    path: list[Any] = []
    i = 0
    while i < len(parts):
        part: Any = parts[i]
        last = i == len(parts) - 1
        if tuple(p for p in path if isinstance(p, str)) in _FLAT_MAPS and isinstance(node, dict):
            part, last = ".".join(parts[i:]), True
        if isinstance(node, list):
            part = _list_index(node, part, override)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: {'.'.join(map(str, path))} is not a mapping")
        path.append(part)
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        i = len(parts) if last else i + 1
    if marks is not None:
        marks[tuple(path)] = Mark(f"--set {override}")


def _list_index(node: list, part: str, override: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(node) <= idx < len(node):
            return idx % len(node)
        raise ConfigError(f"--set {override!r}: index {idx} out of range (list of {len(node)})")
    names = [item.get("name") for item in node if isinstance(item, dict)]
    if part in names:
        return names.index(part)
    close = difflib.get_close_matches(part, [n for n in names if n], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"--set {override!r}: no step named {part!r}{hint}; steps: {names}")


def parse_config(
    text: str,
    source: str = "<string>",
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> JobConfig:
    """Parse and validate a job configuration given as YAML text.

    Raises:
        ConfigError: invalid YAML, unset variable, unknown key (with the nearest valid
            one) or bad value, each with file and line.
    """
    data, marks = parse_yaml(text, source, env)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a job configuration is a mapping of sections, got {type(data).__name__}"
        )
    for override in overrides:
        apply_override(data, override, marks)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, data, marks, source) from None


def load_config(
    path: str | Path, overrides: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> JobConfig:
    """Read, interpolate, override and validate a job configuration file.

    Example:
        >>> load_config("conf/classification.yaml", ["output.mode=overwrite"]).output.mode
        'overwrite'
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Job configuration {str(path)!r} not found")
    return parse_config(p.read_text(encoding="utf-8"), str(path), overrides, env)


# ----------------------------------------------------------------------------- error messages
def _config_error(exc: ValidationError, data: Any, marks: Marks, source: str) -> ConfigError:
    grouped: dict[tuple, list[Any]] = {}
    for err in exc.errors():
        grouped.setdefault(_data_path(data, err["loc"], err["type"]), []).append(err)
    lines = []
    for path, errs in grouped.items():
        mark = _nearest_mark(marks, path) or Mark(source)
        secret = any(is_secret_key(part) for part in path if isinstance(part, str))
        message = _message(path, errs, secret)
        lines.append(
            f"{_mask_mark(str(mark), secret)}: {_dotted(path) or '(top level)'}: {message}"
        )
    return ConfigError("Invalid job configuration:\n  " + "\n  ".join(lines))


def _data_path(data: Any, loc: tuple, kind: str) -> tuple:
    """The part of a pydantic ``loc`` that exists in the data (drops union branch tags)."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif kind == "missing" and isinstance(node, dict):
            path.append(part)
            break
        else:
            break
        path.append(part)
    return tuple(path)


def _nearest_mark(marks: Marks, path: tuple) -> Mark | None:
    for n in range(len(path), -1, -1):
        if path[:n] in marks:
            return marks[path[:n]]
    return None


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _mask_mark(mark: str, secret: bool) -> str:
    """A ``--set key=value`` mark without its value when the key is a secret."""
    if secret and mark.startswith("--set ") and "=" in mark:
        return mark.split("=", 1)[0] + "=" + MASK
    return mark


def _message(path: tuple, errs: list[dict], secret: bool = False) -> str:
    err = errs[0]
    if err["type"] == "extra_forbidden":
        valid = _fields_at(path[:-1])
        key = str(path[-1]) if path else "?"
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}"
    if err["type"] == "missing":
        return "required key is missing"
    if len(errs) > 1:
        kinds = sorted({str(e["loc"][-1]) for e in errs if not isinstance(e["loc"][-1], int)})
        shown = MASK if secret else repr(errs[0].get("input"))
        return f"invalid value {shown} (expected one of: {', '.join(kinds)})"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return MASK if secret and str(err.get("input")) in msg else msg
    return f"{msg} (got {MASK if secret else repr(err.get('input'))})"


def _fields_at(path: tuple) -> list[str]:
    """Field names of the section model at ``path`` (empty if not a section)."""
    tp: Any = JobConfig
    for part in path:
        model = _model_of(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else None
        elif model is not None and part in model.model_fields:
            tp = model.model_fields[part].annotation
        else:
            return []
    model = _model_of(tp)
    return list(model.model_fields) if model else []


def _model_of(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
