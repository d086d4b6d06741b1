"""The code blocks of the README and docs/ run as written.

Every fenced block is extracted in document order. README blocks are run for real in a fresh
folder that holds the repository's ``conf/``, ``data/``, ``jobs/`` and ``hfspark/`` (as a
user would after cloning), in order: each ``bash`` block with ``bash -e`` (the venv's ``bin``
first on ``PATH``, as if it were activated), each ``yaml`` block parsed (and a functions file
loaded with hfspark's own loader). ``python`` blocks run as scripts of that folder, one after
another in one Python process, as in a notebook (:mod:`tests.helpers.block_runner`: a fresh
module namespace per block, the environment and working folder restored after it, the Spark
session's temporary views and functions dropped), so the imports, the JVM, the Python
workers' daemon and the workers' model caches start once instead of once per block. A block
that builds its own SparkSession (``SparkSession.builder``) or sets the environment before
Spark starts (``os.environ``) runs as its own process, since a process that already has a
session would not show what it does. A failing block is named, with its code and the tail of
its output. ``make run`` and ``make test`` are not run from here: ``make test`` is what runs
this test, and ``make run`` is the README's ``hfspark run conf/embeddings.yaml``, which the
spark-submit block runs.
Blocks of docs/*.md are compiled (python), parsed (yaml) and their ``hfspark`` commands checked
against the real argument parser; the runnable ones are marked ``<!-- run -->`` and run like
README blocks, each as its own process.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.block_runner import MARK

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"(?P<mark><!-- run -->\n)?^```(?P<lang>\w+)\n(?P<body>.*?)^```", re.M | re.S)
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(language, body, marked to run) of every fenced block, in order."""
    return [(m["lang"], m["body"], bool(m["mark"])) for m in FENCE.finditer(path.read_text())]


def _workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("conf", "data", "jobs", "hfspark", "examples"):
        (work / name).symlink_to(ROOT / name)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("SPARK_MASTER", None)
    return work, env


def _run_block(lang: str, body: str, work: Path, env: dict[str, str], n: int) -> None:
    if lang == "python":
        script = work / f"block_{n}.py"
        script.write_text(body)
        cmd = [sys.executable, str(script)]
    elif lang == "bash":
        lines = [ln for ln in body.splitlines() if not re.match(r"\s*make (run|test)\b", ln)]
        cmd = ["bash", "-euo", "pipefail", "-c", "\n".join(lines)]
    else:
        return
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"block {n} ({lang}) failed:\n{body}\n---\n{done.stderr[-4000:]}"


def _needs_own_process(body: str) -> bool:
    """A block whose point a process with a running SparkSession would hide.

    ``SparkSession.builder...getOrCreate()`` would get the session an earlier block started
    (not one built with the block's own settings), and environment variables set before Spark
    starts (e.g. ``MLFLOW_TRACKING_URI``, inherited by its Python workers) would come too late.
    """
    return "SparkSession.builder" in body or "os.environ" in body or ".stop()" in body


class SharedPython:
    """Python blocks run in order in one interpreter (:mod:`tests.helpers.block_runner`)."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.log = work / "blocks.log"
        self.proc: subprocess.Popen[str] | None = None

    def run(self, body: str, n: int, timeout: float = 900) -> None:
        (self.work / f"block_{n}.py").write_text(body)
        if self.proc is None:
            runner = Path(__file__).parent / "helpers" / "block_runner.py"
            self.proc = subprocess.Popen(
                [sys.executable, str(runner)],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        answer = self.proc.stdout.readline().split() if ready else ["timed out"]
        if answer != [str(n), "ok"]:
            out = self.log.read_text(errors="replace") if self.log.exists() else ""
            out = out.rsplit(f"{MARK} {n}\n", 1)[-1]
            self.close()
            raise AssertionError(
                f"block {n} (python) failed ({' '.join(answer) or 'runner exited'}):\n"
                f"{body}\n---\n{out[-4000:]}"
            )

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_yaml(body: str) -> None:
    data = yaml.safe_load(body)
    assert isinstance(data, dict), body
    first = body.lstrip().splitlines()[0]
    if first.startswith("# conf/models.yaml") or "functions" in data:
        from hfspark.sql import load_functions

        assert load_functions(data if "functions" not in data else data).functions


def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    work, env = _workdir(tmp_path)
    found = blocks(ROOT / "README.md")
    assert {lang for lang, _, _ in found} >= {"python", "bash", "yaml"}
    shared = SharedPython(work, env)
    took: list[str] = []
    try:
        for n, (lang, body, _) in enumerate(found):
            start = time.perf_counter()
            if lang == "yaml":
                _check_yaml(body)
            elif lang == "python" and not _needs_own_process(body):
                shared.run(body, n)
            else:
                _run_block(lang, body, work, env, n)
            took.append(f"block {n} ({lang}): {time.perf_counter() - start:.1f} s")
    finally:
        shared.close()
        print("\n".join(took))
    assert (work / "output" / "readme-vectors" / "_delta_log").is_dir()
    assert (work / "output" / "embeddings" / "_delta_log").is_dir()


def _hfspark_commands(body: str) -> list[list[str]]:
    text = body.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("hfspark "):
            out.append(shlex.split(line)[1:])
    return out


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_blocks_are_valid(path: Path, tmp_path: Path) -> None:
    from hfspark.cli import build_parser

    parser = build_parser()
    work, env = _workdir(tmp_path)
    for n, (lang, body, run) in enumerate(blocks(path)):
        if lang == "python":
            compile(body, f"{path.name} block {n}", "exec")
        elif lang == "yaml":
            assert yaml.safe_load(body) is not None
        elif lang == "bash":
            for argv in _hfspark_commands(body):
                parser.parse_args(argv)  # exits (SystemExit) on a command that does not exist
        if run:
            _run_block(lang, body, work, env, n)
