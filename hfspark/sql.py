"""Models as SQL functions: ``conf/models.yaml`` -> ``SELECT sentiment(text).label FROM t``.

A functions file maps SQL function names to a model ``uri`` and
:func:`~hfspark.udfs.model_udf` options (flat, or under ``options:`` as in a job's model step),
or holds that mapping under ``functions:`` beside a ``spark:`` section (the session that
``hfspark sql`` starts). YAML with ``safe_load`` semantics and ``${VAR:-default}``; errors name
the file, the line and the nearest valid key, as job configurations.

Example:
    >>> from hfspark.sql import register_all
    >>> register_all(spark, {"sentiment": {"uri": "/models/sst2", "errors": "column"}})
    >>> spark.sql("SELECT sentiment(text).label AS label FROM reviews").show()
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hfspark.errors import ConfigError
from hfspark.jobs.config import SparkSection
from hfspark.udfs.options import UdfOptions

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from hfspark.udfs import ModelUDF

__all__ = [
    "FunctionSpec",
    "SqlConfig",
    "StatementResult",
    "load_functions",
    "register_all",
    "split_statements",
    "execute",
    "format_table",
    "sql_session",
]

log = logging.getLogger("hfspark.sql")
_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_JOB_SECTIONS = ("input", "models", "output", "run")  # ignored beside ``functions:``


class FunctionSpec(UdfOptions):
    """One SQL function: a model ``uri`` plus :func:`~hfspark.udfs.model_udf` options.

    Example:
        >>> FunctionSpec(uri="/models/sst2", errors="column").udf_kwargs()["errors"]
        'column'
    """

    uri: str
    task: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_options(cls, data: Any) -> Any:
        """Accept a job step's ``options:`` mapping beside the flat keys."""
        if isinstance(data, Mapping) and isinstance(data.get("options"), Mapping):
            data = dict(data)
            nested = data.pop("options")
            both = sorted(set(nested) & set(data))
            if both:
                raise ValueError(f"{', '.join(both)} set both beside and under 'options'")
            data.update(nested)
        return data

    def udf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~hfspark.udfs.model_udf` (all but ``uri``)."""
        return {**super().udf_kwargs(), "task": self.task}


class SqlConfig(BaseModel):
    """A functions file: the SQL functions and the session ``hfspark sql`` starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spark: SparkSection = Field(default_factory=SparkSection)
    functions: dict[str, FunctionSpec] = Field(default_factory=dict)

    @field_validator("functions")
    @classmethod
    def _names(cls, v: dict[str, FunctionSpec]) -> dict[str, FunctionSpec]:
        seen: dict[str, str] = {}
        for name in v:
            if not _SQL_NAME.match(str(name)):
                raise ValueError(
                    f"{name!r} is not a valid SQL function name: use letters, "
                    "digits and underscores, starting with a letter or underscore"
                )
            if name.lower() in seen:  # Spark resolves function names case-insensitively
                raise ValueError(f"{seen[name.lower()]!r} and {name!r} are the same SQL function")
            seen[name.lower()] = name
        return v


# ----------------------------------------------------------------------------- loading
def load_functions(
    source: str | os.PathLike[str] | Mapping[str, Any] | SqlConfig,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> SqlConfig:
    """Read and validate a functions file (or an already parsed mapping).

    Args:
        source: a YAML file, a mapping ``{name: {uri:, ...}}`` / ``{functions:, spark:}``, or
            a SqlConfig (returned as it is).
        overrides: ``--set`` style settings: ``sentiment.batch_size=8``, ``spark.master=local[2]``.
        env: variables for ``${VAR}`` in a file (default: the environment).

    Raises:
        ConfigError: missing file, bad YAML, unset variable, unknown key (nearest one named) or
            bad value, with the file and line.

    Example:
        >>> load_functions({"sentiment": {"uri": "/models/sst2"}}).functions["sentiment"].errors
        'raise'
    """
    from hfspark.jobs.loader import Mark, apply_override, parse_yaml

    if isinstance(source, SqlConfig):
        return source
    marks: dict[tuple, Mark] = {}
    if isinstance(source, Mapping):
        data, where = copy.deepcopy(dict(source)), "<functions>"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"Functions file {str(source)!r} not found")
        where = str(source)
        data, marks = parse_yaml(path.read_text(encoding="utf-8"), where, env)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of SQL function names to models, "
            f"got {type(data).__name__}"
        )
    if "functions" in data or "spark" in data:  # sections (a job's own sections are ignored)
        data = {k: v for k, v in data.items() if k not in _JOB_SECTIONS}
    else:  # the bare form: {name: {uri:...}}
        data, marks = {"functions": data}, {("functions", *k): m for k, m in marks.items()}
    if isinstance(data.setdefault("spark", {}), dict):
        data["spark"].setdefault("app_name", "hfspark-sql")  # (not the jobs' "hfspark-job")
    for override in overrides:
        key = override.split("=", 1)[0]
        apply_override(
            data,
            override if key.split(".")[0] in ("spark", "functions") else f"functions.{override}",
            marks,
        )
    try:
        return SqlConfig.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, marks, where) from None


def _config_error(exc: ValidationError, marks: Mapping[tuple, Any], where: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        path = list(err["loc"])
        mark = next(
            (marks[tuple(path[:n])] for n in range(len(path), -1, -1) if tuple(path[:n]) in marks),
            where,
        )
        shown = ".".join(map(str, path[1:] if len(path) > 1 and path[0] == "functions" else path))
        if err["type"] == "extra_forbidden":
            valid = (
                list(SqlConfig.model_fields)
                if len(path) < 2
                else list(SparkSection.model_fields)
                if path[0] == "spark"
                else [*FunctionSpec.model_fields, "options"]
            )
            close = difflib.get_close_matches(str(path[-1]), valid, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown key {str(path[-1])!r}{hint}; valid keys: {', '.join(valid)}"
        else:
            msg = err["msg"].removeprefix("Value error, ") + (
                "" if err["type"] in ("value_error", "missing") else f" (got {err.get('input')!r})"
            )
        lines.append(f"{mark}: {shown or '(top level)'}: {msg}")
    return ConfigError("Invalid SQL functions:\n  " + "\n  ".join(dict.fromkeys(lines)))


def register_all(
    spark: SparkSession,
    functions: str | os.PathLike[str] | Mapping[str, Any] | SqlConfig,
    overrides: Sequence[str] = (),
) -> dict[str, ModelUDF]:
    """Register every function of a functions file (or mapping) as a SQL function.

    Every model is checked on the driver (metadata only) before any is registered.
    ``models:/name@alias`` is pinned to the alias's current version: every executor runs the
    same model even if the alias moves. The ``spark:`` section is not applied here.

    Args:
        spark: a classic or Spark Connect session.
        functions: a YAML file, a mapping ``{name: {uri:, task:, ...}}`` or a SqlConfig.
        overrides: ``key.sub=value`` settings (see :func:`load_functions`).

    Returns:
        The ModelUDF of each function, by name (usable from Python too).

    Example:
        >>> udfs = register_all(spark, {"sentiment": {"uri": "/models/sst2", "errors": "column"}})
        >>> spark.sql("SELECT sentiment(text).label, sentiment(text).error FROM t")
    """
    from hfspark.errors import HfSparkError
    from hfspark.session import ensure_worker_python
    from hfspark.udfs import model_udf

    ensure_worker_python(spark)
    config = load_functions(functions, overrides)
    udfs: dict[str, ModelUDF] = {}
    for name, spec in config.functions.items():
        try:
            udfs[name] = model_udf(spec.uri, **spec.udf_kwargs())
        except HfSparkError as e:
            where = "" if spec.uri in str(e) else f" ({spec.uri})"
            e.add_context(f"SQL function {name!r}{where}")
            raise
    for name, udf in udfs.items():
        spark.udf.register(name, udf.sql_function(name))
        log.info(
            "SQL function %s: %s (%s) -> %s",
            name,
            udf.ref.uri,
            udf.ref.task,
            udf.returnType.simpleString(),
        )
    return udfs


# ----------------------------------------------------------------------------- statements
def _split(text: str) -> list[tuple[int, str]]:
    """(first line, statement) of each ``;``-separated statement, quotes and comments respected."""
    out: list[tuple[int, str]] = []
    start, i, n, quote = 0, 0, len(text), ""
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 2
                continue
            quote = "" if c == quote else quote
        elif c in "'\"`":
            quote = c
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif c == ";":
            out.append((start, text[start:i]))
            start = i + 1
        i += 1
    if quote:
        line = text.count("\n", 0, len(text) - len(text[start:].lstrip())) + 1
        raise ConfigError(
            f"line {line}: unterminated {quote} quote in the statement "
            f"starting {text[start:].strip()[:60]!r}"
        )
    out.append((start, text[start:]))
    comments = re.compile(r"--[^\n]*|/\*.*?(\*/|$)", re.S)
    return [
        (text.count("\n", 0, pos + len(s) - len(s.lstrip())) + 1, s.strip())
        for pos, s in out
        if comments.sub("", s).strip()
    ]


def split_statements(text: str) -> list[str]:
    """Split SQL at ``;`` outside quotes, backticks and comments (comment-only ones dropped).

    Example:
        >>> split_statements("SELECT ';' AS a; -- done;\\nSELECT 2")
        ["SELECT ';' AS a", '-- done;\\nSELECT 2']
    """
    return [s for _, s in _split(text)]


@dataclass
class StatementResult:
    """What one statement returned: its columns and up to ``limit`` rows (empty for commands)."""

    sql: str
    line: int
    columns: list[str]
    rows: list[Any]
    truncated: bool = False


def execute(
    spark: SparkSession, text: str, *, limit: int = 20, source: str = "<sql>"
) -> Iterator[StatementResult]:
    """Run SQL statements in order, yielding each result (queries: up to ``limit`` rows).

    Commands (``CREATE TABLE ... AS SELECT``, ``INSERT``...) run when reached. Bad SQL raises
    ConfigError naming the line; failures while running raise Spark's error.

    Example:
        >>> [r.rows for r in execute(spark, "CREATE TEMP VIEW v AS SELECT 1 AS x; SELECT * FROM v")]
        [[], [Row(x=1)]]
    """
    for line, stmt in _split(text):
        try:
            df = spark.sql(stmt)
            columns = list(df.columns)
            rows = df.limit(limit + 1).collect() if columns else []
        except Exception as e:
            if type(e).__name__ not in ("ParseException", "AnalysisException"):
                raise
            reason = str(e).strip().splitlines()[0]
            raise ConfigError(f"{source}:{line}: {stmt.splitlines()[0][:60]!r}: {reason}") from e
        yield StatementResult(stmt, line, columns, rows[:limit], len(rows) > limit)


def _cell(value: Any, width: int = 48) -> str:
    def text(v: Any) -> str:
        if v is None:
            return "NULL"
        if hasattr(v, "asDict") or isinstance(v, dict):
            items = (v.asDict() if hasattr(v, "asDict") else v).items()
            return "{" + ", ".join(f"{k}: {text(x)}" for k, x in items) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(text(x) for x in v) + "]"
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("\n", " ")

    out = text(value)
    return out if len(out) <= width else out[: width - 3] + "..."


def format_table(result: StatementResult) -> str:
    """A compact text table of a query's rows, ``(N rows)`` below (commands: ``OK: ...``).

    Example:
        >>> format_table(StatementResult("SELECT 1 AS x", 1, ["x"], [Row(x=1)])).splitlines()
        ['x', '-', '1', '(1 row)']
    """
    if not result.columns:
        return f"OK: {' '.join(result.sql.split())[:70]}"
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(result.columns)]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)).rstrip(),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [
        " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    n = len(result.rows)
    lines.append(f"(first {n} rows)" if result.truncated else f"({n} row{'s' * (n != 1)})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def sql_session(
    config: SqlConfig, *, embedded: bool = True, remote: str | None = None
) -> SparkSession:
    """The session of ``hfspark sql``: Spark Connect (``remote``), embedded local Spark with
    Delta, or (``embedded=False``) the one spark-submit configured, plus the ``spark:`` conf."""
    from pyspark.sql import SparkSession

    if remote:
        log.info("Spark Connect %s: the functions file's spark section is not applied", remote)
        return SparkSession.builder.remote(remote).getOrCreate()
    if embedded:
        from hfspark.session import local_spark

        return local_spark(config.spark.master, config.spark.app_name, config.spark.conf)
    builder = SparkSession.builder.appName(config.spark.app_name)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()
