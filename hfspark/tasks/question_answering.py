"""Extractive question answering: the span of the context that best answers the question.

transformers 5 removed the question-answering pipeline; this adapter runs
``AutoModelForQuestionAnswering`` itself and scores spans as that pipeline did. Input: a
struct (or two columns) ``question`` + ``context``. Output: ``struct<answer, score, start,
end>`` with ``start``/``end`` character offsets into the context.

A long context is split into windows of ``max_length`` tokens (default 384, at most the
model's limit) overlapping by ``doc_stride`` tokens, with the fast tokenizer's overflowing
tokens; questions are cut to ``max_question_len`` tokens first. In each window the start and
end logits of the context tokens (and of the CLS token) go through a softmax; a span
``(i, j)`` of context tokens with ``i <= j < i + max_answer_len`` scores ``p_start[i] *
p_end[j]``; the best span of all windows wins. With ``align_to_words`` (default) the span is
widened to whole words. With ``handle_impossible_answer`` the empty answer (``""``, 0, 0) wins
when the CLS score beats every span. ``doc_stride`` is lowered to half the room left for the
context when the windows are too small for it (the tokenizer would refuse it).

Example:
    >>> adapter = QuestionAnswering({"max_answer_len": 10})
    >>> loaded = adapter.load(folder, {}, "cpu", None)
    >>> item = adapter.convert({"question": "Where?", "context": "In Paris."})
    >>> adapter.forward(loaded, adapter.prepare(loaded, [item]))[0]
    {'answer': 'Paris', 'score': 0.93, 'start': 3, 'end': 8}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import PositiveInt

from hfspark.errors import ConfigError, RowError
from hfspark.tasks._text import (
    check_fast,
    collate_arrays,
    fields_of,
    logits_graph,
    require_text,
    resolve_max_length,
    softmax,
    token_inputs,
)
from hfspark.tasks.base import ENCODER_CALL_COST, LoadedModel, TaskAdapter, TaskOptions

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

    from hfspark.tasks._graph import Graph

__all__ = ["QuestionAnswering", "QuestionAnsweringOptions"]

_MASKED = -10000.0  # the pipeline's logit for tokens that cannot be part of an answer


class QuestionAnsweringOptions(TaskOptions):
    """Options of ``question-answering``.

    Attributes:
        max_length: tokens per window, question included (None: 384 or the model's limit).
        doc_stride: overlap in tokens between windows of a long context.
        max_answer_len: longest answer in tokens.
        max_question_len: questions are cut to this many tokens.
        align_to_words: widen the answer to whole words.
        handle_impossible_answer: allow the empty answer.
    """

    doc_stride: PositiveInt = 128
    max_answer_len: PositiveInt = 15
    max_question_len: PositiveInt = 64
    align_to_words: bool = True
    handle_impossible_answer: bool = False


class QuestionAnswering(TaskAdapter):
    """Adapter of extractive ``question-answering`` (alias ``qa``)."""

    name = "question-answering"
    auto_model = "AutoModelForQuestionAnswering"
    architectures = ("ForQuestionAnswering",)
    cpu_call_cost = ENCODER_CALL_COST
    input_fields = ("question", "context")
    input_types = {"question": ("string",), "context": ("string",)}
    result_field = "result"
    Options = QuestionAnsweringOptions
    options: QuestionAnsweringOptions

    def output_type(self) -> DataType:
        from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

        return StructType(
            [
                StructField("answer", StringType()),
                StructField("score", DoubleType()),
                StructField("start", IntegerType()),
                StructField("end", IntegerType()),
            ]
        )

    def load(
        self, model_dir: Path, components: Mapping[str, Path], device: Any, dtype: Any
    ) -> LoadedModel:
        loaded = super().load(model_dir, components, device, dtype)
        check_fast(loaded, self.name)
        tok = loaded.tokenizer
        max_length = resolve_max_length(loaded, self.options.max_length, default=384)
        room = max_length - self.options.max_question_len - tok.num_special_tokens_to_add(pair=True)
        if room < 2:
            raise ConfigError(
                f"question-answering windows of max_length={max_length} tokens leave no room for "
                f"the context after a question of max_question_len={self.options.max_question_len}"
                " tokens: raise max_length or lower max_question_len."
            )
        loaded.extras.update(
            max_length=max_length,
            stride=min(self.options.doc_stride, room // 2),
            question_first=tok.padding_side == "right",
        )
        return loaded

    def convert(self, value: Any) -> tuple[str, str]:
        row = fields_of(value, self.input_fields)
        question, context = (
            require_text(row["question"], "question"),
            require_text(row["context"], "context"),
        )
        for field, text in (("question", question), ("context", context)):
            if not text.strip():
                raise RowError(f"input {field!r} is empty: there is nothing to answer from")
        return question, context

    def prepare(self, loaded: LoadedModel, items: list[tuple[str, str]]) -> list[dict]:
        tok, ex = loaded.tokenizer, loaded.extras
        questions = _cut_questions(tok, [q for q, _ in items], self.options.max_question_len)
        contexts = [c for _, c in items]
        first, second = (questions, contexts) if ex["question_first"] else (contexts, questions)
        enc = tok(
            first,
            second,
            truncation="only_second" if ex["question_first"] else "only_first",
            max_length=ex["max_length"],
            stride=ex["stride"],
            padding=False,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        ctx_seq = 1 if ex["question_first"] else 0
        feats: list[dict] = [{"windows": [], "context": c} for c in contexts]
        names = [k for k in tok.model_input_names if k in enc]
        for w, row in enumerate(enc["overflow_to_sample_mapping"]):
            seq_ids = np.array(enc.sequence_ids(w), dtype=float)  # None -> nan
            feats[row]["windows"].append(
                {
                    **{k: enc[k][w] for k in names},
                    "in_context": (seq_ids == ctx_seq).tolist(),
                    "offsets": enc["offset_mapping"][w],
                    "word_ids": enc.word_ids(w),
                }
            )
        return feats

    def length(self, feature: dict) -> int:
        """Padded cost of a row: windows x longest window."""
        return len(feature["windows"]) * max(len(w["input_ids"]) for w in feature["windows"])

    def graph(self, loaded: LoadedModel) -> Graph:
        return logits_graph(loaded, self.graph_name(), ("start_logits", "end_logits"))

    def forward(self, loaded: LoadedModel, features: list[dict]) -> list[dict]:
        windows = [w for f in features for w in f["windows"]]
        batch = collate_arrays(loaded.tokenizer, windows, token_inputs(loaded.tokenizer))
        out = self.run(loaded, batch)
        ids = batch["input_ids"]
        ctx = _pad_bool([w["in_context"] for w in windows], ids.shape[1])
        cls_id = loaded.tokenizer.cls_token_id
        allowed = ctx | (ids == cls_id) if cls_id is not None else ctx  # CLS joins the softmax
        allowed = allowed & batch["attention_mask"].astype(bool)
        p_start = softmax(np.where(allowed, out["start_logits"], np.float32(_MASKED)))
        p_end = softmax(np.where(allowed, out["end_logits"], np.float32(_MASKED)))
        null = p_start[:, 0] * p_end[:, 0]
        p_start, p_end = p_start * ctx, p_end * ctx  # CLS (and everything else) out of the spans
        span_score, span_start, span_len = _best_spans(
            p_start, p_end, ctx, self.options.max_answer_len
        )
        results, w0 = [], 0
        for feat in features:
            n = len(feat["windows"])
            best = w0 + int(np.argmax(span_score[w0 : w0 + n]))
            null_score = float(null[w0 : w0 + n].min())
            w0 += n
            if span_score[best] < 0 or (
                self.options.handle_impossible_answer and null_score > span_score[best]
            ):
                score = null_score if self.options.handle_impossible_answer else 0.0
                results.append({"answer": "", "score": score, "start": 0, "end": 0})
                continue
            i = int(span_start[best])
            start, end = self._chars(windows[best], i, i + int(span_len[best]))
            results.append(
                {
                    "answer": feat["context"][start:end],
                    "score": float(span_score[best]),
                    "start": start,
                    "end": end,
                }
            )
        return results

    def _chars(self, window: dict, i: int, j: int) -> tuple[int, int]:
        """Character span of tokens ``i..j`` (widened to their words with ``align_to_words``)."""
        offsets, words, ctx = window["offsets"], window["word_ids"], window["in_context"]
        if self.options.align_to_words and words[i] is not None and words[j] is not None:
            while i > 0 and ctx[i - 1] and words[i - 1] == words[i]:
                i -= 1
            while j + 1 < len(words) and ctx[j + 1] and words[j + 1] == words[j]:
                j += 1
        return int(offsets[i][0]), int(offsets[j][1])


def _cut_questions(tok: Any, questions: list[str], max_tokens: int) -> list[str]:
    """Cut each question to its first ``max_tokens`` tokens (at a character offset)."""
    enc = tok(questions, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [
        q if len(off) <= max_tokens else q[: off[max_tokens - 1][1]]
        for q, off in zip(questions, enc["offset_mapping"], strict=True)
    ]


def _pad_bool(rows: list[list[bool]], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=bool)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out


def _best_spans(
    p_start: np.ndarray, p_end: np.ndarray, ctx: np.ndarray, max_answer_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: the best ``p_start[i] * p_end[i + d]`` over context spans with ``0 <= d < max_answer_len``.

    Returns (score, i, d); score is -1 for a window without any context token.
    """
    n_win, width = p_start.shape
    span = min(max_answer_len, width)
    end_padded = np.pad(p_end, ((0, 0), (0, span)))
    ctx_padded = np.pad(ctx, ((0, 0), (0, span)))
    # (windows, start i, length d): the pipeline's upper band of the start x end outer product
    ends = np.stack([end_padded[:, d : d + width] for d in range(span)], axis=-1)
    valid = np.stack([ctx_padded[:, d : d + width] for d in range(span)], axis=-1) & ctx[..., None]
    scores = np.where(valid, p_start[..., None] * ends, np.float32(-1.0)).reshape(n_win, -1)
    flat = scores.argmax(axis=-1)
    best = np.take_along_axis(scores, flat[:, None], axis=-1)[:, 0]
    return best, flat // span, flat % span
