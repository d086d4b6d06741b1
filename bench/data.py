"""Benchmark data: real mixed-length English text that ships with Python and its packages.

Sources (read as files, nothing imported or downloaded):

* docstrings of the standard library's modules, classes and functions (``ast``-parsed),
* the help topics of ``pydoc_data.topics`` (the Python reference manual, in paragraphs),
* license texts from ``*.dist-info`` folders in site-packages.

Texts are deduplicated, cut to at most 10,000 characters on a paragraph boundary, binned by
length and picked by SHA-1 order within each bin (deterministic for a given environment), so
the mix goes from a few words to several paragraphs (p50 ≈ 450 characters).

Example:
    >>> texts = bench_texts(2000)
    >>> len(texts), min(map(len, texts)) < 80 < 5000 < max(map(len, texts))
    (2000, True)
"""

from __future__ import annotations

import ast
import hashlib
import site
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["bench_texts", "corpus", "cycled", "describe", "fingerprint"]

MAX_CHARS = 10_000
MIN_CHARS = 20
#: (upper bound in characters, share of the rows), from a few words to several paragraphs.
BINS: tuple[tuple[int, float], ...] = (
    (150, 0.15),
    (400, 0.30),
    (1500, 0.35),
    (4000, 0.14),
    (MAX_CHARS + 1, 0.06),
)
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo"}


def _docstrings(root: Path) -> Iterable[str]:
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def _paragraph_chunks(text: str, target: int) -> Iterable[str]:
    """Consecutive paragraphs joined until about ``target`` characters."""
    chunk: list[str] = []
    size = 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        chunk.append(para)
        size += len(para)
        if size >= target:
            yield "\n\n".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield "\n\n".join(chunk)


def _cut(text: str) -> str:
    """At most MAX_CHARS characters, ending on a paragraph (or line) boundary."""
    text = text.strip()
    if len(text) <= MAX_CHARS:
        return text
    head = text[:MAX_CHARS]
    for sep in ("\n\n", "\n", " "):
        pos = head.rfind(sep)
        if pos > MAX_CHARS // 2:
            return head[:pos].strip()
    return head


def _topics() -> Iterable[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        # Alternate chunk sizes so the manual gives medium and long texts alike.
        target = (600, 2500, 8000)[int(hashlib.sha1(name.encode()).hexdigest(), 16) % 3]
        yield from _paragraph_chunks(topics[name], target)


def _licenses() -> Iterable[str]:
    dirs = sorted({Path(p) for p in site.getsitepackages() if Path(p).is_dir()})
    for sp in dirs:
        for path in sorted(sp.glob("*.dist-info/**/*")):
            upper = path.name.upper()
            if path.is_file() and ("LICEN" in upper or "COPYING" in upper):
                yield path.read_text(encoding="utf-8", errors="ignore")


def corpus() -> list[str]:
    """Every candidate text, deduplicated, in a stable order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, None] = {}
    for source in (_docstrings(stdlib), _topics(), _licenses()):
        for text in source:
            text = _cut(text)
            if len(text) >= MIN_CHARS:
                seen.setdefault(text, None)
    return list(seen)


def bench_texts(n: int) -> list[str]:
    """``n`` distinct texts (fewer only if the corpus is too small), mixed lengths, deterministic.

    Each length bin gets its share of the rows, picked in SHA-1 order of the text; a bin
    short of texts hands its remainder to the next one. The result is shuffled by hash so
    long and short texts are spread evenly over partitions.
    """
    pool = corpus()
    by_bin: list[list[str]] = [[] for _ in BINS]
    for text in sorted(pool, key=lambda t: hashlib.sha1(t.encode()).hexdigest()):
        index = next(i for i, (upper, _) in enumerate(BINS) if len(text) < upper)
        by_bin[index].append(text)
    chosen: list[str] = []
    carry = 0
    for (_, share), texts in zip(BINS, by_bin, strict=True):
        want = round(n * share) + carry
        chosen.extend(texts[:want])
        carry = max(0, want - len(texts))
    if len(chosen) < n:  # rounding, or a short bin at the end: top up from the rest
        rest = [t for texts in by_bin for t in texts if t not in set(chosen)]
        chosen.extend(rest[: n - len(chosen)])
    chosen = chosen[:n]
    return sorted(chosen, key=lambda t: hashlib.sha1(b"order" + t.encode()).hexdigest())


def cycled(texts: list[str], n: int) -> list[str]:
    """``n`` rows cycling through ``texts`` (for the scaling series only)."""
    return [texts[i % len(texts)] for i in range(n)]


def fingerprint(texts: list[str]) -> str:
    """A short hash of the rows, to tell whether two runs used the same data."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def describe(texts: list[str], tokens: list[int] | None = None) -> dict[str, float]:
    """Row count and length percentiles (characters, and tokens when given)."""
    chars = np.array([len(t) for t in texts])
    out = {
        "rows": float(len(texts)),
        "chars_p10": float(np.percentile(chars, 10)),
        "chars_p50": float(np.percentile(chars, 50)),
        "chars_p90": float(np.percentile(chars, 90)),
        "chars_max": float(chars.max()),
    }
    if tokens is not None:
        tok = np.array(tokens)
        out.update(
            tokens_p50=float(np.percentile(tok, 50)),
            tokens_p90=float(np.percentile(tok, 90)),
            tokens_total=float(tok.sum()),
            tokens_at_max_length=float((tok >= tok.max()).mean()),
        )
    return out
