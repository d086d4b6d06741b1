"""The run report: ``report.json``, a short ``report.md`` and ``throughput.png``.

Example:
    >>> report = RunReport(run_id="20261125-101500-ab12cd", job="conf/embeddings.yaml")
    >>> report.chunks.append(ChunkStat(chunk=0, rows=500, errors=0, infer_s=9.5, write_s=1.2, at_s=12.0))
    >>> paths = report.write("output/reports")     # {"json": ..., "markdown": ..., "chart": ...}
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hfspark.jobs.startup import describe

__all__ = ["ChunkStat", "RunReport", "versions"]

_PACKAGES = (
    "hfspark",
    "pyspark",
    "delta-spark",
    "transformers",
    "torch",
    "tokenizers",
    "pyarrow",
    "pandas",
    "pydantic",
)


@dataclass
class ChunkStat:
    """One committed chunk: its rows, errors, time in inference and write, and when it ended."""

    chunk: int
    rows: int
    errors: int
    infer_s: float
    write_s: float
    at_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows per second of inference plus write for this chunk."""
        spent = self.infer_s + self.write_s
        return self.rows / spent if spent > 0 else 0.0


@dataclass
class RunReport:
    """Everything worth knowing about one run (secrets already masked by the runner)."""

    run_id: str
    job: str = ""
    status: str = "running"
    reason: str | None = None
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    fingerprint: str = ""
    txn_app_id: str = ""
    resume: bool = False
    rows: dict[str, int] = field(
        default_factory=lambda: {
            "input": 0,
            "already_done": 0,
            "pending": 0,
            "processed": 0,
            "written": 0,
            "errors": 0,
        }
    )
    error_samples: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "infer": 0.0, "write": 0.0}
    )
    rows_per_s: float = 0.0
    tokens_per_s: float | None = None
    #: per model step: generative (prompt/completion tokens, finish reasons, schema failures,
    #: tokens/s) or encoder (input tokens, tokens/s); see :mod:`hfspark.jobs.usage`.
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunks: list[ChunkStat] = field(default_factory=list)
    model_loads: dict[str, int] = field(default_factory=dict)
    #: where the workers' first seconds went (see :mod:`hfspark.jobs.startup`).
    startup: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    output: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, int] | None = None
    spark: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    conf: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)  # the MLflow run (run.mlflow)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        data = asdict(self)
        data["chunks"] = [{**asdict(c), "rows_per_s": round(c.rows_per_s, 3)} for c in self.chunks]
        return data

    def markdown(self) -> str:
        """A short human summary."""
        r = self.rows
        lines = [
            f"# hfspark run {self.run_id}: {self.status}",
            "",
            f"- job: `{self.job}`" + (f" — **{self.reason}**" if self.reason else ""),
            f"- rows: {r['input']} in input, {r['already_done']} already written, "
            f"{r['processed']} processed, {r['written']} written, {r['errors']} with errors",
            f"- throughput: {self.rows_per_s:.1f} rows/s"
            + (f", {self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else ""),
            f"- time: {self.duration_s:.1f}s (read {self.timings_s.get('read', 0):.1f}s, "
            f"infer {self.timings_s.get('infer', 0):.1f}s, write {self.timings_s.get('write', 0):.1f}s)",
            f"- output: {self.output.get('format', '')} `{self.output.get('location', '')}`"
            + (f" (version {self.output['version']})" if "version" in self.output else ""),
            f"- model loads per executor: {self.model_loads or 'n/a'}",
            f"- worker startup: {describe(self.startup)}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
        ]
        for name, u in self.usage.items():
            if "completion_tokens" in u:
                lines.append(
                    f"- {name}: {u['prompt_tokens']} prompt + {u['completion_tokens']} completion "
                    f"tokens ({u.get('tokens_per_s') or 0:.0f} completion tokens/s), finish "
                    + ", ".join(f"{k} {v}" for k, v in u["finish_reasons"].items())
                    + (
                        f", {u['schema_failures']} rows failing the schema"
                        if "schema_failures" in u
                        else ""
                    )
                )
            else:
                lines.append(
                    f"- {name}: {u.get('input_tokens', 0)} input tokens "
                    f"({u.get('tokens_per_s') or 0:.0f}/s)"
                )
        if self.tracking:
            lines.append(
                f"- MLflow run: {self.tracking.get('mlflow_run_id')}"
                + (f" ({self.tracking['url']})" if self.tracking.get("url") else "")
            )
        if self.verification is not None:
            lines.append(
                f"- check: {self.verification['missing']} input ids missing, "
                f"{self.verification['duplicates']} written twice"
            )
        if self.models:
            lines += ["", "| step | task | model | hash |", "|---|---|---|---|"]
            lines += [
                f"| {m['name']} | {m['task']} | `{m['uri']}` | {m['content_hash'][:12]} |"
                for m in self.models
            ]
        if self.error_samples:
            lines += ["", "First row errors:", ""]
            lines += [f"- {e}" for e in self.error_samples]
        return "\n".join(lines) + "\n"

    def chart(self, path: Path) -> Path | None:
        """A PNG of rows/s per chunk and rows done over time (matplotlib, Agg backend)."""
        if not self.chunks:
            return None
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        at = [c.at_s for c in self.chunks]
        rate = [c.rows_per_s for c in self.chunks]
        done, total = [], self.rows.get("already_done", 0)
        for c in self.chunks:
            total += c.rows
            done.append(total)
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
        ax.plot(at, rate, marker="o", color="tab:blue", label="rows/s (per chunk)")
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("rows/s", color="tab:blue")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.step(at, done, where="post", color="tab:gray", alpha=0.6, label="rows written")
        ax2.set_ylabel("rows written", color="tab:gray")
        ax2.set_ylim(bottom=0)
        ax.set_title(f"hfspark run {self.run_id}: throughput")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path

    def write(self, folder: str | Path) -> dict[str, str]:
        """Write ``report.json``, ``report.md`` and ``throughput.png`` into ``folder/run_id``."""
        out = Path(folder) / self.run_id
        out.mkdir(parents=True, exist_ok=True)
        self.paths = {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
        chart = self.chart(out / "throughput.png")
        if chart is not None:
            self.paths["chart"] = str(chart)
        (out / "report.md").write_text(self.markdown(), encoding="utf-8")
        (out / "report.json").write_text(
            json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8"
        )
        return self.paths


def versions(spark: Any = None) -> dict[str, str]:
    """Python, Spark (running) and package versions."""
    out = {"python": platform.python_version()}
    if spark is not None:
        try:
            out["spark"] = spark.version
        except Exception:  # noqa: BLE001
            pass
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
