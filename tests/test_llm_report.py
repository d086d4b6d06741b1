"""Token usage in the job report: generative steps (prompt/completion totals, tokens/s, finish
reasons, rows failing their schema) and encoder steps (input tokens instead of 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.llm_models import build_gpt

TEXTS = ["I love this movie", "bad", "The cat sat on the mat", "Spark runs pandas", "Hello", None]


@pytest.fixture(scope="session")
def llm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_models import build_feature_extraction

    root = tmp_path_factory.getbasetemp() / "llm-models"
    bert = root / "bert"
    if not (bert / "config.json").exists():
        build_feature_extraction(bert)
    return {"gpt": build_gpt(root / "gpt"), "bert": bert}


def test_report_usage_for_generative_and_encoder_steps(spark, llm_models, tmp_path) -> None:
    import transformers

    from hfspark.jobs import load_config, run_job
    from tests.test_jobs_helpers import write_conf

    spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "id int, text string") \
        .coalesce(1).write.parquet(str(tmp_path / "in"))
    opts = {"device": "cpu", "errors": "column", "batch_size": 4}
    conf = {
        "spark": {"master": "local[2]"},
        "input": {"format": "parquet", "path": str(tmp_path / "in")},
        "models": [
            {"name": "gen", "uri": str(llm_models["gpt"]), "task": "text-generation",
             "inputs": "text", "options": {**opts, "params": {"max_new_tokens": 3}}},
            {"name": "typed", "uri": str(llm_models["gpt"]), "task": "text-generation",
             "inputs": "text", "options": {**opts, "params": {"output_schema": "label string",
                                                              "max_new_tokens": 4}}},
            {"name": "vec", "uri": str(llm_models["bert"]), "task": "feature-extraction",
             "inputs": "text", "options": opts},
        ],
        "output": {"format": "delta", "path": str(tmp_path / "out")},
        "run": {"progress": "off", "report_path": str(tmp_path / "reports")},
    }
    report = run_job(load_config(write_conf(tmp_path / "job.yaml", conf)), spark)
    gen, typed, vec = (report.usage[k] for k in ("gen", "typed", "vec"))
    gpt_tok = transformers.AutoTokenizer.from_pretrained(llm_models["gpt"])
    texts = [t for t in TEXTS if t is not None]
    assert gen["prompt_tokens"] == sum(len(gpt_tok(t)["input_ids"]) for t in texts)
    assert gen["completion_tokens"] == 3 * len(texts)
    assert gen["finish_reasons"] == {"stop": 0, "length": len(texts)}
    assert gen["tokens_per_s"] > 0
    assert typed["schema_failures"] == len(texts)  # all cut off before the JSON closed
    bert_tok = transformers.AutoTokenizer.from_pretrained(llm_models["bert"])
    assert vec["input_tokens"] == sum(len(bert_tok(t)["input_ids"]) for t in texts)
    assert report.rows["tokens"] >= gen["prompt_tokens"] + gen["completion_tokens"] + vec["input_tokens"]
    assert report.tokens_per_s and report.tokens_per_s > 0
    md = Path(report.paths["markdown"]).read_text()
    assert "rows failing the schema" in md and "input tokens" in md
