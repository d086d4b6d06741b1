"""The peers section of the report: one table, the configurations, PASS/FAIL targets.

Reads what :func:`bench.peers.run_peers` returns (``results["peers"]``).

Example:
    >>> lines = section(results["peers"]); checks = targets(results["peers"])
"""

from __future__ import annotations

from typing import Any

__all__ = ["TARGET_COLD", "TARGET_CEILING", "TARGET_COSINE", "section", "targets"]

#: hfspark's cold rows/s over every peer's, at each partition count
TARGET_COLD = 1.1
#: hfspark's warm rows/s over the compute ceiling's best mode
TARGET_CEILING = 1.0
#: the smallest cosine to sentence-transformers' vectors any row may show
TARGET_COSINE = 0.999
BASE = "hfspark"  # the hfspark row the targets use (other variants are rows too)


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _hfspark(p: dict[str, Any], parts: int) -> dict[str, Any] | None:
    return next(
        (r for r in p["rows"] if r["system"] == BASE and r["partitions"] == parts),
        None,
    )


def _ceiling(p: dict[str, Any]) -> dict[str, Any] | None:
    return max(p.get("ceiling") or [], key=lambda c: c["rows_per_s"], default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _peers_at(p: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """The peer rows an hfspark row at ``parts`` partitions is compared with."""
    return [r for r in p["rows"] if r["kind"] == "peer" and r["partitions"] in (parts, None)]


def targets(p: dict[str, Any]) -> list[tuple[bool, str]]:
    """(passed, line): hfspark >= 1.1x every peer cold and >= 1.0x the ceiling warm, at each
    partition count; every measured row's vectors match sentence-transformers'."""
    if not p or not p.get("rows"):
        return []
    out: list[tuple[bool, str]] = []
    ceiling = _ceiling(p)
    for parts in p["partitions"]:
        hf = _hfspark(p, parts)
        if hf is None or hf["cold_rows_per_s"] is None:
            why = hf["note"] if hf else "not run"
            out.append((False, f"peers: hfspark at {parts} partitions not measured: {why}"))
            continue
        peers = _peers_at(p, parts)
        measured = [r for r in peers if r["cold_rows_per_s"] is not None]
        missing = [r["system"] for r in peers if r["cold_rows_per_s"] is None]
        if measured:
            fastest = max(measured, key=lambda r: r["cold_rows_per_s"])
            ratio = hf["cold_rows_per_s"] / fastest["cold_rows_per_s"]
            line = (
                f"peers: hfspark >= {TARGET_COLD}x every peer cold at {parts} partitions: "
                f"{ratio:.2f}x the fastest, {fastest['system']}"
                + (f" at {fastest['partitions']}" if fastest["partitions"] else "")
                + f" ({hf['cold_rows_per_s']:.1f} vs {fastest['cold_rows_per_s']:.1f} rows/s, "
                f"{hf['cold_s']:.1f} vs {fastest['cold_s']:.1f} s)"
                + (f"; not measured: {', '.join(missing)}" if missing else "")
            )
            out.append((ratio >= TARGET_COLD, line))
        else:
            out.append((False, f"peers: no peer measured at {parts} partitions"))
        if ceiling is not None:
            ratio = hf["warm_rows_per_s"] / ceiling["rows_per_s"]
            out.append(
                (
                    ratio >= TARGET_CEILING,
                    f"peers: hfspark warm >= {TARGET_CEILING}x compute ceiling at {parts} "
                    f"partitions: {ratio:.2f}x ({hf['warm_rows_per_s']:.1f} vs "
                    f"{ceiling['rows_per_s']:.1f} rows/s, ceiling {ceiling['mode']}, best of "
                    f"{len(ceiling['all_seconds'])} rounds beside the hfspark rows)",
                )
            )
    checked = [r for r in p["rows"] if r["cosine_min"] is not None]
    if checked:
        worst = min(checked, key=lambda r: r["cosine_min"])
        out.append(
            (
                worst["cosine_min"] >= TARGET_COSINE,
                f"peers: every row's vectors match sentence-transformers (min cosine >= "
                f"{TARGET_COSINE}): lowest {worst['cosine_min']:.6f} ({worst['system']}), "
                f"{len(checked)} of {len(p['rows'])} rows checked",
            )
        )
    return out


def section(p: dict[str, Any]) -> list[str]:
    """The markdown lines of the section (table, ceiling, configurations)."""
    partitions = p["partitions"]
    ceiling = _ceiling(p)
    header = [
        "system",
        "partitions",
        "cold rows/s",
        "warm rows/s",
        "cold s",
        "warm x ceiling",
        "min cosine",
        *[f"hfspark cold x it ({n} partitions)" for n in partitions],
        "note",
    ]
    rows = []
    for r in p["rows"]:
        ratios = []
        for n in partitions:
            hf = _hfspark(p, n)
            comparable = r["partitions"] in (n, None) and hf is not None
            ratio = _ratio(hf["cold_rows_per_s"], r["cold_rows_per_s"]) if comparable else None
            ratios.append(_fmt(ratio, 2, "x"))
        rows.append(
            [
                r["system"],
                str(r["partitions"] or "-"),
                _fmt(r["cold_rows_per_s"]),
                _fmt(r["warm_rows_per_s"]),
                _fmt(r["cold_s"]),
                _fmt(_ratio(r["warm_rows_per_s"], ceiling and ceiling["rows_per_s"]), 2, "x"),
                _fmt(r["cosine_min"], 6),
                *ratios,
                r["note"].replace("|", "/") or "",
            ]
        )
    for c in sorted(p.get("ceiling") or [], key=lambda c: c["mode"]):
        rows.append(
            [
                f"compute ceiling ({c['mode']})",
                "-",
                "-",
                _fmt(c["rows_per_s"]),
                "-",
                _fmt(_ratio(c["rows_per_s"], ceiling and ceiling["rows_per_s"]), 2, "x"),
                "-",
                *["-" for _ in partitions],
                f"{c['processes']} processes x 1 thread, load excluded, "
                f"best of {len(c['all_seconds'])}",
            ]
        )
    lines = [
        "",
        f"## Embeddings: hfspark and its peers ({p['n_rows']:,} rows, {p['cores']} cores, "
        f"max_length {p['max_length']}, CPU)",
        "",
        "Each row is a fresh process. Cold: from just before the process starts to the end "
        "of its first query (imports, session/worker start, model loads, all vectors back in "
        "the driver); warm: the same query again in that process. Min cosine: both queries' "
        f"vectors against {p.get('reference') or '(no reference vectors)'}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        "Configured as:",
    ]
    seen: dict[str, str] = {}
    for r in p["rows"]:
        if r["config"] and r["system"] not in seen:
            seen[r["system"]] = r["config"]
            versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
            lines.append(f"- {r['system']}: {r['config']} ({versions})")
    return lines
