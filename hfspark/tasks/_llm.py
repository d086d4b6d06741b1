"""What the LLM tasks (text-generation, text2text-generation, summarization, translation) share
beyond plain generation: prompts from several columns, a system prompt, structured output
(``output_schema``, ``choices``, ``regex``), dedupe of identical prompts and prefix reuse.

Example:
    >>> adapter = TextGeneration({"prompt_template": "Title: {title}\\nReview: {body}\\nSentiment:",
    ...                           "output_schema": "label string, confidence double"})
    >>> adapter.input_fields
    ('title', 'body')
    >>> adapter.output_type().simpleString()
    'struct<label:string,confidence:double,finish_reason:string,prompt_tokens:int,completion_tokens:int>'
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from hfspark.errors import InputSchemaError, RowError
from hfspark.tasks._generation import GenerationOptions, generation_output_type
from hfspark.tasks._prompt import (
    SCALAR_TYPES,
    bound_values,
    check_bound_inputs,
    check_template,
    is_single_prompt,
    render,
    template_fields,
)
from hfspark.tasks._schema import grammar_schema, normalize_schema, spark_type, to_spark_value
from hfspark.tasks.base import LoadedModel, TaskAdapter

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["LLMOptions", "LLMAdapter", "META_FIELDS"]

#: fields every structured result carries after the schema's own fields.
META_FIELDS = ("finish_reason", "prompt_tokens", "completion_tokens", "error")


class LLMOptions(GenerationOptions):
    """Generation options plus prompts from columns, structured output, dedupe and prefix reuse.

    Attributes:
        prompt_template: ``{prompt}`` once (MLflow style: wraps the one input), or fields
            named after input columns (``"Title: {title}\\nReview: {body}"``).
        system_prompt: a system message (chat models: the chat template's system turn; else
            text put before the prompt). With it, or a template over columns, a model whose
            tokenizer has a chat template gets the prompt as a user message.
        output_schema: the result's fields: a Spark DDL string (``"label string, n int"``), a
            JSON Schema dict or a pydantic model class; decoding is constrained to that JSON.
        choices: the output is exactly one of these strings (field ``label``).
        regex: the output matches this regular expression (field ``generated_text``).
        dedupe: identical prompts of one batch are generated once (deterministic decoding).
        reuse_prefix: compute the prompts' common prefix once and reuse its cache
            (decoder-only models; None: when the prefix has at least 32 tokens).
    """

    system_prompt: str | None = None
    output_schema: dict[str, Any] | None = None
    choices: tuple[str, ...] | None = None
    regex: str | None = None
    dedupe: bool = True
    reuse_prefix: bool | None = None
    min_prefix_tokens: int = Field(default=32, ge=1)

    @field_validator("prompt_template")
    @classmethod
    def _one_prompt_field(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @field_validator("output_schema", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        return None if value is None else normalize_schema(value)

    @field_validator("choices", mode="before")
    @classmethod
    def _choices(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) or not value or not all(isinstance(c, str) and c for c in value):
            raise ValueError("choices must be a non-empty list of non-empty strings")
        if len(set(value)) != len(value):
            raise ValueError("choices must be distinct")
        return tuple(value)

    @model_validator(mode="after")
    def _one_constraint(self) -> LLMOptions:
        given = [k for k in ("output_schema", "choices", "regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"set only one of output_schema, choices and regex (got {', '.join(given)})"
            )
        if given and (self.num_beams or 1) > 1:
            raise ValueError(
                f"{given[0]} needs num_beams=1 (constrained beam search is not supported)"
            )
        if given and self.stop:
            raise ValueError(f"{given[0]} ends where the grammar ends: drop 'stop'")
        if self.output_schema is not None:
            clash = [f for f in spark_type(self.output_schema).fieldNames() if f in META_FIELDS]
            if clash:
                raise ValueError(
                    f"output_schema field {clash[0]!r} clashes with the result's own "
                    f"{clash[0]!r}: rename it"
                )
        return self

    @property
    def constraint(self) -> tuple[str, Any] | None:
        """(kind, spec) of the output constraint, or None."""
        if self.output_schema is not None:
            return "json", grammar_schema(self.output_schema)
        if self.choices is not None:
            return "choices", list(self.choices)
        if self.regex is not None:
            return "regex", self.regex
        return None


class LLMAdapter(TaskAdapter):
    """Base of the LLM task adapters: input binding, prompt text, result type and parsing.

    With a template over named fields, the instance's :attr:`input_fields` are the fields
    (in template order; SQL binds positional arguments in that order) and a null in any of
    them gives a null result (:attr:`all_inputs_required`).
    """

    options: LLMOptions
    #: whether inputs bind to template fields by name (several columns become one struct).
    binds_by_name: bool = False
    #: a null in any input field makes the row null (no model call).
    all_inputs_required: bool = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        template = self.options.prompt_template
        if not is_single_prompt(template):
            fields = template_fields(template or "")
            # the instance's own inputs (base.py: an instance may override these ClassVars)
            self.input_fields = fields  # type: ignore[misc]
            self.input_types = {f: SCALAR_TYPES for f in fields}  # type: ignore[misc]
            self.binds_by_name = True
            self.all_inputs_required = True

    def picklable_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A pydantic ``output_schema`` class replaced by its JSON Schema (shipped to executors)."""
        out = dict(params)
        if isinstance(out.get("output_schema"), type):
            out["output_schema"] = self.options.output_schema
        return out

    def check_input(self, types: Sequence[DataType]) -> None:
        """Template fields bind by name: one struct's fields, or one column per field, in order."""
        from pyspark.sql.types import StructType

        if not self.binds_by_name:
            super().check_input(types)
            return
        fields = self.input_fields
        if len(types) == 1 and isinstance(types[0], StructType):
            inputs = [(f.name, f.dataType) for f in types[0].fields]
        elif len(types) == len(fields):
            inputs = list(zip(fields, types, strict=True))
        else:
            raise InputSchemaError(
                f"Task {self.name!r}: prompt_template takes {len(fields)} inputs "
                f"({', '.join(fields)}), got {len(types)}. Pass one column per field, or a struct."
            )
        check_bound_inputs(self.name, fields, inputs)

    def prompt_text(self, value: Any) -> str:
        """A row's prompt: its template rendered with its inputs."""
        if self.binds_by_name:
            return render(
                self.options.prompt_template or "", bound_values(self.input_fields, value)
            )
        if not isinstance(value, str):
            raise RowError(f"task {self.name!r} takes a string, got {type(value).__name__}")
        return self.options.render(value)

    def uses_chat(self, tokenizer: Any) -> bool:
        """Whether string prompts go through the tokenizer's chat template (system + user)."""
        wants = self.options.system_prompt is not None or self.binds_by_name
        return wants and bool(getattr(tokenizer, "chat_template", None))

    def plain_text(self, text: str) -> str:
        """The prompt with the system prompt before it (models without a chat template)."""
        system = self.options.system_prompt
        return f"{system}\n\n{text}" if system else text

    def output_type(self) -> DataType:
        from pyspark.sql.types import StringType, StructField, StructType

        opts, base = self.options, generation_output_type()
        if opts.output_schema is not None:
            fields = list(spark_type(opts.output_schema).fields)
        elif opts.choices is not None:
            fields = [StructField("label", StringType())]
        elif opts.regex is not None:
            fields = [StructField("generated_text", StringType())]
        else:
            return base
        return StructType([*fields, *base.fields[1:]])

    def dedupe_key(self, feature: Any) -> Hashable | None:
        """Identical token ids give identical outputs unless sampling is unseeded."""
        opts = self.options
        if not opts.dedupe or (opts.do_sample and opts.seed is None):
            return None
        return tuple(feature["input_ids"])

    def constraint_processors(self, loaded: LoadedModel, batch_size: int) -> list[Any]:
        """The grammar's logits processor for one generate() call (empty without a constraint)."""
        from hfspark.tasks._constrain import compiled_grammar, grammar_processor

        constraint = self.options.constraint
        if constraint is None:
            return []
        return [grammar_processor(compiled_grammar(loaded, *constraint), batch_size)]

    def finish_result(self, row: dict[str, Any], max_new_tokens: Any) -> dict[str, Any] | RowError:
        """The output struct of one row: parsed structured fields, or a RowError if cut off."""
        opts = self.options
        if opts.constraint is None:
            return row
        meta = {k: row[k] for k in ("finish_reason", "prompt_tokens", "completion_tokens")}
        text = row["generated_text"]
        if row["finish_reason"] != "stop":
            what = "JSON closed" if opts.output_schema is not None else "output matched"
            return RowError(
                f"the output was cut off at max_new_tokens={max_new_tokens} before the "
                f"{what} ({row['completion_tokens']} tokens: {text[:80]!r}); raise "
                f"max_new_tokens"
            )
        if opts.choices is not None:
            return {"label": text, **meta}
        if opts.regex is not None:
            return {"generated_text": text, **meta}
        try:
            value = json.loads(text)
        except ValueError as e:
            return RowError(f"the output is not valid JSON ({e}): {text[:80]!r}")
        dtype = spark_type(opts.output_schema or {})
        return {**to_spark_value(value, dtype), **meta}
