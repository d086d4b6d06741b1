"""The benchmark's output: tables, PASS/FAIL targets, ``latest.md``/``.json`` and a PNG chart.

Example:
    >>> text = write(results, Path("bench/results"))   # also printed by bench.run
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from bench import coldstart, peers_report
from bench.ceiling import mode_batch

__all__ = ["targets", "write", "render"]

TARGET_CEILING = 0.95
TARGET_MLFLOW = {2: 1.05, 32: 1.10}
TARGET_SCALING = 0.10
TARGET_OVERHEAD = 1.5
TARGET_ONNX_TORCH = 1.8  # hfspark's ONNX Runtime engine vs the torch compute ceiling
TARGET_ONNX_CEILING = 0.95  # ... vs the ONNX Runtime ceiling


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ceilings(results: dict[str, Any], task: str, parts: int | None = None) -> list[Any]:
    """The task's ceiling runs (best per mode); with ``parts``, those timed beside those jobs."""
    runs = list(results["ceiling"].get(task) or [])
    beside = [c for c in runs if c.partitions == parts]
    return beside if parts is not None and beside else runs


def _best_ceiling(
    results: dict[str, Any], task: str, parts: int | None = None, engine: str = "torch"
) -> Any:
    """The fastest ceiling mode of ``engine`` (torch modes, or ``onnx-*`` ONNX Runtime modes),
    beside the jobs at ``parts`` partitions when it was timed there."""
    runs = [
        c
        for c in _ceilings(results, task, parts)
        if c.mode.startswith("onnx-") == (engine == "onnx")
    ]
    return max(runs, key=lambda c: c.rows_per_s, default=None)


def _best_mlflow(results: dict[str, Any], task: str, parts: int) -> Any:
    runs = [
        r
        for r in results["spark"]
        if r.task == task and r.partitions == parts and r.system.startswith("mlflow")
    ]
    return max(runs, key=lambda r: r.rows_per_s, default=None)


def _hfspark(results: dict[str, Any], task: str, parts: int, system: str = "hfspark") -> Any:
    return next(
        (
            r
            for r in results["spark"]
            if r.task == task and r.partitions == parts and r.system == system
        ),
        None,
    )


def onnx_targets(results: dict[str, Any]) -> list[tuple[bool, str]]:
    """The ONNX Runtime engine's targets, per text task and partition count."""
    out = []
    for task in dict.fromkeys(r.task for r in results["spark"] if r.system == "hfspark onnx"):
        for parts in results["settings"]["partitions"]:
            hf = _hfspark(results, task, parts, "hfspark onnx")
            if hf is None:
                continue
            where = f"{task}, {parts} partitions"
            torch_c = _best_ceiling(results, task, parts)
            onnx_c = _best_ceiling(results, task, parts, "onnx")
            if torch_c is not None:
                ratio = hf.rows_per_s / torch_c.rows_per_s
                out.append(
                    (
                        ratio >= TARGET_ONNX_TORCH,
                        f"hfspark onnx >= {TARGET_ONNX_TORCH}x the torch ceiling ({where}): "
                        f"{ratio:.2f}x ({hf.rows_per_s:.1f} vs {torch_c.rows_per_s:.1f} rows/s, "
                        f"{torch_c.mode})",
                    )
                )
            if onnx_c is not None:
                ratio = hf.rows_per_s / onnx_c.rows_per_s
                out.append(
                    (
                        ratio >= TARGET_ONNX_CEILING,
                        f"hfspark onnx >= {TARGET_ONNX_CEILING}x the ONNX Runtime ceiling "
                        f"({where}): {ratio:.2f}x ({hf.rows_per_s:.1f} vs "
                        f"{onnx_c.rows_per_s:.1f} rows/s, {onnx_c.mode})",
                    )
                )
    return out


def targets(results: dict[str, Any]) -> list[tuple[bool, str]]:
    """(passed, line) for each target of the text-classification table and the scaling series."""
    task, out = "text-classification", []
    for parts in results["settings"]["partitions"]:
        hf = _hfspark(results, task, parts)
        ceiling = _best_ceiling(results, task, parts)
        if hf is None:
            continue
        if ceiling is not None:
            ratio = hf.rows_per_s / ceiling.rows_per_s
            out.append(
                (
                    ratio >= TARGET_CEILING,
                    f"hfspark >= {TARGET_CEILING}x compute ceiling at {parts} partitions: "
                    f"{ratio:.2f}x ({hf.rows_per_s:.1f} vs {ceiling.rows_per_s:.1f} rows/s, "
                    f"ceiling {ceiling.mode}, best of {len(ceiling.all_seconds)} rounds "
                    f"timed beside the hfspark jobs vs best of {len(hf.all_seconds)} jobs)",
                )
            )
        best = _best_mlflow(results, task, parts)
        if best is not None:
            need = TARGET_MLFLOW.get(parts, TARGET_MLFLOW[32])
            ratio = hf.rows_per_s / best.rows_per_s
            out.append(
                (
                    ratio >= need,
                    f"hfspark >= {need}x MLflow best at {parts} partitions: "
                    f"{ratio:.2f}x ({hf.rows_per_s:.1f} vs {best.system} "
                    f"{best.rows_per_s:.1f} rows/s)",
                )
            )
        ok = (
            hf.loads_total is not None
            and hf.loads_total == hf.load_pids
            and hf.loads_total <= hf.workers
            and (hf.loads_timed or 0) == 0
        )
        out.append(
            (
                ok,
                f"hfspark model loads = Python workers at {parts} partitions: "
                f"{hf.loads_total} loads by {hf.load_pids} processes, {hf.workers} workers "
                f"seen, over {1 + len(hf.all_seconds)} jobs ({hf.loads_cold} in the cold job, "
                f"{hf.loads_timed} per timed job)",
            )
        )
    over = results.get("overhead") or {}
    if over.get("ratios"):
        ratio = over["ratios"]["hfspark x hand-written"]
        speeds = over["rows_per_s"]
        out.append(
            (
                ratio >= TARGET_OVERHEAD,
                f"framework overhead: hfspark >= {TARGET_OVERHEAD}x a hand-written cached-model "
                f"pandas UDF: {ratio:.2f}x ({speeds['hfspark']:.0f} vs "
                f"{speeds['hand-written']:.0f} rows/s; Spark's floor {speeds['floor']:.0f})",
            )
        )
    out += peers_report.targets(results.get("peers") or {})
    series = results.get("scaling") or []
    if len(series) > 1:
        speeds = [p["rows_per_s"] for p in series]
        spread = (max(speeds) - min(speeds)) / max(speeds)
        out.append(
            (
                spread <= TARGET_SCALING,
                f"hfspark rows/s within {TARGET_SCALING:.0%} from {series[0]['rows']:,} to "
                f"{series[-1]['rows']:,} rows: spread {spread:.1%} "
                f"({', '.join(f'{s:.1f}' for s in speeds)} rows/s)",
            )
        )
    return out


def _spark_table(results: dict[str, Any], task: str) -> str:
    keyed: list[tuple[tuple, list[str]]] = []
    for r in results["spark"]:
        if r.task != task:
            continue
        best, ceiling = (
            _best_mlflow(results, task, r.partitions),
            _best_ceiling(results, task, r.partitions),
        )
        keyed.append(
            (
                (r.partitions, 0, r.system != "hfspark", r.system),
                [
                    r.system,
                    str(r.partitions),
                    _fmt(r.rows_per_s),
                    _fmt(r.tokens_per_s, 0),
                    _fmt(r.rows_per_s / ceiling.rows_per_s, 2) + "x" if ceiling else "-",
                    _fmt(r.rows_per_s / best.rows_per_s, 2) + "x" if best else "-",
                    f"{_fmt(r.loads_cold, 0)} / {_fmt(r.loads_timed, 0)}",
                    str(r.workers),
                    _fmt(r.peak_rss_mib, 0),
                    _fmt(r.cold_seconds),
                    _fmt(r.rows / r.cpu_seconds if r.cpu_seconds else None),
                ],
            )
        )
    for c in _ceilings(results, task):
        ceiling = _best_ceiling(results, task, c.partitions)
        keyed.append(
            (
                (c.partitions or 0, 1, False, f"{mode_batch(c.mode):05d}"),
                [
                    f"compute ceiling ({c.mode})",
                    f"beside {c.partitions}" if c.partitions else "-",
                    _fmt(c.rows_per_s),
                    _fmt(c.tokens_per_s, 0),
                    _fmt(c.rows_per_s / ceiling.rows_per_s, 2) + "x",
                    "-",
                    f"{c.processes} / -",
                    str(c.processes),
                    _fmt(c.peak_rss_mib, 0),
                    "-",
                    _fmt(c.rows / c.cpu_seconds if c.cpu_seconds else None),
                ],
            )
        )
    header = [
        "system",
        "partitions",
        "rows/s",
        "tokens/s",
        "x ceiling",
        "x MLflow best",
        "loads: cold job / timed job",
        "Python workers",
        "peak RSS/worker MiB",
        "cold job s",
        "rows per worker CPU-s",
    ]
    return _table(header, [row for _, row in sorted(keyed, key=lambda kr: kr[0])])


def render(results: dict[str, Any]) -> str:
    """The whole report as markdown (also what bench.run prints)."""
    st, m = results["settings"], results["machine"]
    parts = [
        "# hfspark benchmark"
        + (" (QUICK mode: timings are not meaningful)" if st["quick"] else ""),
        "",
        f"Machine: {m['cpu']} ({m['cpus']} CPUs), load average {_fmt(m['load_avg_start'][0], 2)} "
        f"at start, {_fmt(m.get('load_avg_end', [0])[0], 2)} at end. Python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, pyspark {m['pyspark']}, "
        f"mlflow {m['mlflow']}.",
        f"Spark: local[{st['cores']}], spark.task.cpus=1, Arrow batches of 2048 rows, output to the "
        f"`{st['sink']}` sink; one fresh session per (system, partitions). hfspark engine: "
        f"{', '.join(f'{k}={v}' for k, v in st['engine'].items())}, max_length={st['max_length']}, "
        f"torch threads = task cpus (1). Timed jobs per configuration: {st['reps']} (best). "
        f"Compute ceiling: {st['reps']} rounds of every mode per partition count, half right "
        "before and half right after the hfspark jobs (same machine state, same number of "
        "tries); a row's 'x ceiling' divides by the best ceiling mode timed beside the hfspark "
        "jobs at its partition count. "
        "'rows per worker CPU-s' counts the Python workers' CPU only (robust to a shared "
        "machine; wall-clock rates are not).",
        "",
    ]
    for key, d in results["data"].items():
        parts.append(
            f"Data ({key}): {d['rows']:.0f} rows, fingerprint {d['fingerprint']}, "
            f"chars p10/p50/p90/max {d['chars_p10']:.0f}/{d['chars_p50']:.0f}/"
            f"{d['chars_p90']:.0f}/{d['chars_max']:.0f}, tokens p50/p90 "
            f"{d.get('tokens_p50', 0):.0f}/{d.get('tokens_p90', 0):.0f}, total "
            f"{d.get('tokens_total', 0):,.0f} (at most {st['max_length']} per row)."
        )
    for task in dict.fromkeys(r.task for r in results["spark"]) | dict.fromkeys(results["ceiling"]):
        parts += ["", f"## {task}", "", _spark_table(results, task)]
    if results.get("speech"):
        sp = results["speech"]
        keys = list(sp[0].keys())
        parts += [
            "",
            "## automatic-speech-recognition (Whisper tiny.en, espeak-ng speech)",
            "",
            _table(
                keys,
                [
                    [_fmt(v, 2) if isinstance(v, float) else str(v) for v in row.values()]
                    for row in sp
                ],
            ),
        ]
    if results["quant"]:
        q = results["quant"]
        parts += [
            "",
            "## CPU paths: hfspark's default pruning and the opt-in ones (one process, one thread, engine batching)",
            "",
            _table(
                [
                    "task",
                    "variant",
                    "rows/s",
                    "speed-up",
                    "max |score diff|",
                    "label agreement",
                    "cosine mean",
                    "cosine min",
                ],
                [
                    [
                        r.task,
                        r.variant,
                        _fmt(r.rows_per_s),
                        _fmt(r.speedup, 2) + "x",
                        _fmt(r.max_abs_score_diff, 5),
                        _pct(r.label_agreement),
                        _fmt(r.cosine_mean, 5),
                        _fmt(r.cosine_min, 5),
                    ]
                    for r in q
                ],
            ),
        ]
    if results.get("overhead"):
        o = results["overhead"]
        parts += [
            "",
            f"## Framework overhead ({o['model']}, {o['rows']:,} short sentences, "
            f"local[{o['cores']}], warm workers, noop sink)",
            "",
            _table(
                ["system", "rows/s", "hfspark x it"],
                [
                    [name, _fmt(v, 0), _fmt(o["ratios"].get(f"hfspark x {name}"), 2)]
                    for name, v in o["rows_per_s"].items()
                ],
            ),
        ]
    if results.get("generation"):
        parts += _generation_section(results["generation"])
    if results.get("peers"):
        parts += peers_report.section(results["peers"])
    if results.get("coldstart"):
        parts += coldstart.section(results["coldstart"])
    if results.get("scaling"):
        parts += [
            "",
            "## Scaling (hfspark, text-classification, 2 partitions, texts cycled)",
            "",
            _table(
                ["rows", "seconds", "rows/s", "tokens/s"],
                [
                    [
                        f"{p['rows']:,}",
                        _fmt(p["seconds"]),
                        _fmt(p["rows_per_s"]),
                        _fmt(p["tokens_per_s"], 0),
                    ]
                    for p in results["scaling"]
                ],
            ),
        ]
    parts += ["", "## Targets", ""]
    parts += [
        f"{'PASS' if ok else 'FAIL'}  {line}"
        for ok, line in [
            *targets(results),
            *onnx_targets(results),
            *coldstart.targets(results.get("coldstart") or {}),
        ]
    ] or ["(none measured)"]
    if results["failures"]:
        parts += ["", "## Failures", ""] + [f"- {f}" for f in results["failures"]]
    parts += ["", f"Total bench time: {results.get('seconds', 0):.0f} s."]
    return "\n".join(parts) + "\n"


def _generation_section(g: dict[str, Any]) -> list[str]:
    """The generation table (see :mod:`bench.generation`)."""
    names = [
        ("static", "static length-sorted generate() (hfspark)"),
        ("continuous", "continuous batching generate_batch()"),
        ("prefix_off", f"~{g['prefix_tokens']}-token shared prefix, reuse off"),
        ("prefix_on", "same, prefix reuse on"),
        ("free", "free text"),
        ("structured", "output_schema (xgrammar)"),
        ("dedupe_off", "30 % duplicates, dedupe off"),
        ("dedupe_on", "same, dedupe on"),
    ]
    lens = g["output_lengths"]
    return [
        "",
        f"## Generation ({g['model']}, {g['rows']} rows, 1 thread, outputs "
        f"{lens['min']}-{lens['max']} tokens)",
        "",
        _table(
            ["variant", "rows/s", "tokens/s"],
            [
                [label, _fmt(g[k]["rows_per_s"]), _fmt(g[k]["tokens_per_s"], 0)]
                for k, label in names
                if k in g
            ],
        ),
        "",
        f"continuous / static tokens/s: {g['continuous_vs_static']:.2f}x (static kept); "
        f"prefix reuse: {g['prefix_speedup']:.2f}x, same outputs: {g['prefix_same_outputs']}; "
        f"grammar: compiled in {g['grammar_compile_s']:.2f}s, "
        f"{g['constraint_ms_per_row_token']:.3f} ms per row-token "
        f"({100 * (g['constraint_share'] or 0):.1f} % of the time); "
        f"dedupe: {g['dedupe_speedup']:.2f}x with {100 * g['duplicate_share']:.0f} % duplicate rows",
    ]


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    task = "text-classification"
    runs = [r for r in results["spark"] if r.task == task]
    systems = list(dict.fromkeys(r.system for r in runs))
    partitions = results["settings"]["partitions"]
    width = 0.8 / max(1, len(partitions))
    for i, parts in enumerate(partitions):
        speeds = [
            next((r.rows_per_s for r in runs if r.system == s and r.partitions == parts), 0)
            for s in systems
        ]
        bars = left.bar(
            [x + i * width for x in range(len(systems))], speeds, width, label=f"{parts} partitions"
        )
        ceiling = _best_ceiling(results, task, parts)
        if ceiling is not None:
            left.axhline(
                ceiling.rows_per_s,
                color=bars.patches[0].get_facecolor(),
                linestyle="--",
                label=f"compute ceiling ({ceiling.mode}) beside {parts} partitions",
            )
    left.set_xticks([x + width * (len(partitions) - 1) / 2 for x in range(len(systems))])
    left.set_xticklabels(systems, rotation=20, ha="right")
    left.set_ylabel("rows/s")
    left.set_title(f"{task}: rows/s (higher is better)")
    left.legend(fontsize=8)
    series = results.get("scaling") or []
    if series:
        xs = [p["rows"] for p in series]
        ys = [p["rows_per_s"] for p in series]
        right.plot(xs, ys, marker="o", label="hfspark")
        right.fill_between(
            xs,
            [max(ys) * (1 - TARGET_SCALING)] * len(xs),
            [max(ys)] * len(xs),
            alpha=0.2,
            label="within 10% of best",
        )
        right.set_xscale("log", base=2)
        right.set_ylim(0, max(ys) * 1.2)
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no scaling series (quick mode)", ha="center", va="center")
    right.set_xlabel("rows")
    right.set_ylabel("rows/s")
    right.set_title("hfspark scaling, 2 partitions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {
            **asdict(obj),
            **{k: getattr(obj, k) for k in ("rows_per_s", "tokens_per_s") if hasattr(type(obj), k)},
        }
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def write(results: dict[str, Any], out: Path) -> str:
    """Write latest.md, latest.json and latest.png to ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = render(results)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(_jsonable(results), indent=1, default=str))
    _chart(results, out / "latest.png")
    return text
