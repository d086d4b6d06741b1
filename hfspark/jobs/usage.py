"""Token usage of a job's model steps, for the run report.

Generative steps (their results carry ``prompt_tokens``/``completion_tokens``): prompt and
completion totals, finish reasons and, with structured output, the rows that failed their
schema (cut off before the JSON closed). Encoder steps (embeddings, classification...):
their input tokens, counted with the step's own tokenizer (truncated to the model's limit as
the model reads them), since their results carry no counts.

Example:
    >>> aggs = usage_aggs(steps)                  # Spark aggregate columns, one chunk at a time
    >>> add_usage(report_usage, steps, out.agg(*aggs).collect()[0])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

    from hfspark.jobs.models import Step

__all__ = [
    "FINISH_REASONS",
    "is_generative",
    "usage_aggs",
    "add_usage",
    "input_tokens",
    "finalize_usage",
]

FINISH_REASONS = ("stop", "length")


def is_generative(step: Step) -> bool:
    """Whether the step's results carry token counts (the generative tasks)."""
    from pyspark.sql.types import StructType

    rtype = step.udf.returnType
    return isinstance(rtype, StructType) and "completion_tokens" in rtype.fieldNames()


def _structured(step: Step) -> bool:
    opts = step.udf.adapter.options
    return any(getattr(opts, k, None) is not None for k in ("output_schema", "choices", "regex"))


def usage_aggs(steps: list[Step]) -> list[Column]:
    """Aggregate columns (``u{i}_...``) of every generative step's usage in one chunk."""
    from pyspark.sql import functions as F

    aggs: list[Column] = []
    for i, s in enumerate(steps):
        if not is_generative(s):
            continue
        col = s.config.output_column
        aggs += [
            F.sum(F.coalesce(F.col(f"{col}.prompt_tokens"), F.lit(0))).alias(f"u{i}_prompt"),
            F.sum(F.coalesce(F.col(f"{col}.completion_tokens"), F.lit(0))).alias(
                f"u{i}_completion"
            ),
        ]
        aggs += [
            F.sum(F.when(F.col(f"{col}.finish_reason") == r, 1).otherwise(0)).alias(f"u{i}_{r}")
            for r in FINISH_REASONS
        ]
        if _structured(s) and s.has_error_field:
            failed = F.col(f"{col}.error").contains("cut off") | F.col(f"{col}.error").contains(
                "not valid JSON"
            )
            aggs.append(F.sum(F.when(failed, 1).otherwise(0)).alias(f"u{i}_schema"))
    return aggs


def add_usage(usage: dict[str, dict[str, Any]], steps: list[Step], row: Any) -> int:
    """Add one chunk's aggregates to ``usage`` (by step name); returns the chunk's tokens."""
    total = 0
    for i, s in enumerate(steps):
        if not is_generative(s):
            continue
        u = usage.setdefault(
            s.config.name,
            {
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "finish_reasons": dict.fromkeys(FINISH_REASONS, 0),
            },
        )
        prompt, completion = int(row[f"u{i}_prompt"] or 0), int(row[f"u{i}_completion"] or 0)
        u["prompt_tokens"] += prompt
        u["completion_tokens"] += completion
        total += prompt + completion
        for r in FINISH_REASONS:
            u["finish_reasons"][r] += int(row[f"u{i}_{r}"] or 0)
        if f"u{i}_schema" in row.asDict():
            u["schema_failures"] = u.get("schema_failures", 0) + int(row[f"u{i}_schema"] or 0)
    return total


def _count_tokens(folder: str, limit: int | None) -> Any:
    """An Arrow UDF body: the token count of each row's text inputs (null rows count 0)."""

    def count(batches: Iterator[Any]) -> Iterator[pa.Array]:
        import pyarrow as pa
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        for batch in batches:
            arrays = list(batch) if isinstance(batch, (tuple, list)) else [batch]
            texts: list[list[str]] = [[] for _ in range(len(arrays[0]))]
            for arr in arrays:
                for j, v in enumerate(arr.to_pylist()):
                    if isinstance(v, str):
                        texts[j].append(v)
                    elif isinstance(v, dict):
                        texts[j] += [x for x in v.values() if isinstance(x, str)]
            flat = [t for row in texts for t in row]
            lengths = (
                [
                    len(ids)
                    for ids in tok(flat, truncation=limit is not None, max_length=limit)[
                        "input_ids"
                    ]
                ]
                if flat
                else []
            )
            out, k = [], 0
            for row in texts:
                out.append(sum(lengths[k : k + len(row)]))
                k += len(row)
            yield pa.array(out, pa.int64())

    return count


def input_tokens(df: DataFrame, steps: list[Step]) -> dict[str, int]:
    """Input tokens of each encoder step (one with a tokenizer and no token counts) in ``df``."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import ArrowUDFType, arrow_udf
    from pyspark.sql.types import LongType

    from hfspark.jobs.models import _input_exprs

    out: dict[str, int] = {}
    for s in steps:
        if is_generative(s) or "tokenizer" not in s.udf.adapter.components:
            continue
        refs = (
            [s.config.inputs]
            if isinstance(s.config.inputs, str)
            else list(
                s.config.inputs if isinstance(s.config.inputs, list) else s.config.inputs.values()
            )
        )
        if any(r.split(".")[0] not in df.columns for r in refs):
            continue  # reads an earlier step's output: not counted (it would run that step again)
        tok = s.info.components.get("tokenizer", s.info.model_dir)
        limit = s.udf.adapter.options.max_length or getattr(s.udf.ref.options, "max_length", None)
        fn = arrow_udf(
            _count_tokens(str(tok), limit or 512),
            LongType(),  # type: ignore[call-overload]
            ArrowUDFType.SCALAR_ITER,
        )
        exprs = [e for _, e in _input_exprs(s.config)]
        got = df.select(F.sum(fn(*exprs)).alias("n")).collect()[0]["n"]
        out[s.config.name] = int(got or 0)
    return out


def finalize_usage(usage: dict[str, dict[str, Any]], infer_s: float) -> None:
    """Add tokens/s to each step's usage (over the job's inference time)."""
    for u in usage.values():
        tokens = u.get("completion_tokens", u.get("input_tokens", 0))
        u["tokens_per_s"] = round(tokens / infer_s, 3) if infer_s > 0 else None
