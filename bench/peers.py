"""The peers section: hfspark vs other ways of computing embeddings, cold and warm.

Every system runs one after another, each in a fresh process, on the same parquet rows
(``id``, ``text``), the same model folder (the bench's all-MiniLM-L6-v2 transformers folder),
``max_length`` and cores (see :mod:`bench.peer_apps` for the runners and how each is set):

* hfspark ``model_udf(folder, task="feature-extraction")`` (:data:`HFSPARK_VARIANTS`, run
  with the project's interpreter) at every partition count;
* MLflow's sentence_transformers flavor + ``spark_udf`` and distribatch ``EmbedJob`` (Spark
  backend), at every partition count;
* sentence-transformers ``encode()`` in one process, Ray Data ``map_batches`` with one actor
  per core, Daft ``embed_text(provider="transformers")`` (no partitions).

*Cold*: from just before the process starts to the end of its first query (imports, session
and worker start, model loads, all rows back in the driver). *Warm*: the same query again in
that process/session. Vectors of both queries are compared with sentence-transformers
``encode(normalize_embeddings=True)`` (cosine per row). The compute ceiling
(:class:`bench.ceiling.CeilingPool`: one process per core, one thread, sorted batches, load
excluded) runs right before and after the hfspark rows.

The peers install into their own environment (``$HFSPARK_BENCH_WORK/peers-venv``, made with
``uv`` from the project's torch/transformers/pyspark/numpy/pyarrow/pandas versions plus
:data:`PEER_PACKAGES`), never into the project's. A peer that cannot install or run gets a
row saying why.

Example:
    >>> results["peers"] = run_peers(work, texts, cores=2, partitions=(2, 32), reps=2)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.ceiling import CeilingPool, CeilingResult, keep_best
from bench.data import fingerprint
from bench.models import MAX_LENGTH, prepare_models
from bench.peer_apps._common import MARKER

__all__ = [
    "HFSPARK_VARIANTS",
    "PEERS",
    "PEER_PACKAGES",
    "PINNED",
    "Peer",
    "peers_env",
    "run_peers",
]

#: the project's packages whose exact versions the peers environment gets
PINNED = ("torch", "transformers", "pyspark", "numpy", "pyarrow", "pandas")
#: what the peers environment adds
PEER_PACKAGES = (
    "sentence-transformers",
    "ray[data]",
    "daft",
    "distribatch[transformers,spark]",
    "mlflow",
)
#: the ceiling's modes: sorted batches (one row at a time is slower for this model)
CEILING_MODES = ("sorted8", "sorted16")
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Peer:
    """One row kind of the section: a runner module and how it runs."""

    name: str
    app: str  # module under bench.peer_apps
    spark: bool  # runs at every partition count
    threads: int | None = 1  # OMP_NUM_THREADS for the process (None: the cores)
    project_env: bool = False  # the project's interpreter (hfspark) instead of the peers'
    udf_kwargs: dict[str, Any] = field(default_factory=dict)  # hfspark variants only


#: hfspark rows, each with its extra ``model_udf`` options (the targets use "hfspark"). The
#: onnx row's first cold run on a machine includes the one-time ONNX export (cached after).
HFSPARK_VARIANTS: list[Peer] = [
    Peer("hfspark", "hfspark_udf", spark=True, project_env=True),
    Peer(
        "hfspark onnx", "hfspark_udf", spark=True, project_env=True, udf_kwargs={"engine": "onnx"}
    ),
]
PEERS: list[Peer] = [
    Peer("MLflow sentence_transformers + spark_udf", "mlflow_st", spark=True),
    Peer("distribatch EmbedJob (Spark)", "distribatch_spark", spark=True),
    Peer("sentence-transformers encode()", "st_encode", spark=False, threads=None),
    Peer("Ray Data map_batches", "ray_data", spark=False),
    Peer("Daft embed_text", "daft_embed", spark=False),
]


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] peers: {msg}", flush=True)


def _last_error(text: str) -> str:
    """The most telling line of a runner's output: its last ``...Error: ...`` line."""
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if re.match(r"^[\w.]*(Error|Exception|Exit)\b", ln.strip()) and "PythonException" not in ln
    ]
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else (tail[-1] if tail else "no output"))[:300]


# ----------------------------------------------------------------------- environment
class PeerEnvError(RuntimeError):
    """The peers environment could not be made (the message says which step failed)."""


def peers_env(work: Path) -> Path:
    """The peers environment's interpreter, made (or reused when its stamp matches).

    Raises:
        PeerEnvError: uv is missing or a step failed (last line of its output).
    """
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
    stamp = json.dumps({"python": "3.11", "pins": pins, "packages": list(PEER_PACKAGES)})
    venv = Path(work) / "peers-venv"
    python = venv / "bin" / "python"
    stamp_file = venv / ".hfspark-bench-stamp"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise PeerEnvError("uv not found on PATH (pip install uv)")
    _say(f"making the peers environment at {venv} ({', '.join(pins)} + {len(PEER_PACKAGES)})")
    steps = [
        [uv, "venv", "-q", "--clear", "--python", "3.11", str(venv)],
        [uv, "pip", "install", "-q", "--python", str(python), *pins, *PEER_PACKAGES],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise PeerEnvError(f"{' '.join(step[:3])}: {_last_error(proc.stdout + proc.stderr)}")
    stamp_file.write_text(stamp)
    return python


# ----------------------------------------------------------------------------- runs
def _env(python: Path, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        {
            "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
            "PYSPARK_PYTHON": str(python),
            "PYSPARK_DRIVER_PYTHON": str(python),
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TQDM_DISABLE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "DAFT_ANALYTICS_ENABLED": "0",
            "DO_NOT_TRACK": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    return env


def _run_app(
    python: Path,
    app: str,
    spec: dict[str, Any],
    env: dict[str, str],
    timeout: float,
    *extra: str,
) -> dict[str, Any]:
    """Run one runner in a fresh process (its own process group); its result line as a dict.

    ``extra`` arguments select a runner's untimed step (``prepare``, the reference), which
    prints no result line.
    """
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    spec = {**spec, "t0": time.time()}
    spec_file.write_text(json.dumps(spec))
    cmd = [str(python), "-m", f"bench.peer_apps.{app}", str(spec_file), *extra]
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and what it started (JVM, actors)
            proc.communicate()
            raise RuntimeError(
                f"timed out after {timeout:.0f} s (log: {out / 'log.txt'})"
            ) from None
    (out / "stdout.txt").write_text(stdout)
    results = [ln[len(MARKER) :] for ln in stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or (not results and not extra):
        text = (out / "log.txt").read_text(errors="replace") + stdout
        raise RuntimeError(f"exit {proc.returncode}: {_last_error(text)}")
    return json.loads(results[-1]) if results else {}


def _cosines(out: Path, reference: np.ndarray | None) -> tuple[float | None, float | None]:
    """(min, mean) cosine of both queries' vectors against the reference."""
    if reference is None:
        return None, None
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    mins, means = [], []
    for name in ("cold", "warm"):
        vectors = np.load(out / f"{name}.npy").astype(np.float64)
        if vectors.shape != ref.shape:
            raise RuntimeError(f"{name} vectors have shape {vectors.shape}, expected {ref.shape}")
        cos = (vectors * ref).sum(1) / np.linalg.norm(vectors, axis=1).clip(min=1e-12)
        mins.append(float(cos.min()))
        means.append(float(cos.mean()))
    return min(mins), float(np.mean(means))


def _row(peer: Peer, parts: int | None) -> dict[str, Any]:
    return {
        "system": peer.name,
        "kind": "hfspark" if peer.project_env else "peer",
        "partitions": parts,
        "rows": None,
        "cold_s": None,
        "warm_s": None,
        "cold_rows_per_s": None,
        "warm_rows_per_s": None,
        "cosine_min": None,
        "cosine_mean": None,
        "config": "",
        "omp_threads": None,  # OMP_NUM_THREADS of the process (and its Spark workers)
        "versions": {},
        "note": "",
    }


def _measure(
    peer: Peer,
    parts: int | None,
    spec: dict[str, Any],
    python: Path | str,
    reference: np.ndarray | None,
    cores: int,
) -> dict[str, Any]:
    """One row: run the peer's app (or say why it could not run)."""
    row = _row(peer, parts)
    if isinstance(python, str):  # the peers environment's error
        row["note"] = python
        return row
    label = peer.name + (f" at {parts} partitions" if parts else "")
    _say(label)
    slug = re.sub(r"\W+", "-", peer.name).strip("-").lower()
    out = Path(spec["work"]) / "peer-runs" / f"{slug}-{parts or 0}"
    shutil.rmtree(out, ignore_errors=True)
    run_spec = {
        **spec,
        "partitions": parts or cores,
        "out": str(out),
        "udf_kwargs": peer.udf_kwargs,
    }
    env = _env(python, peer.threads or cores)
    try:
        res = _run_app(python, peer.app, run_spec, env, timeout=300 + 0.6 * spec["rows"])
        row.update(
            rows=res["rows"],
            cold_s=res["cold_s"],
            warm_s=res["warm_s"],
            cold_rows_per_s=res["rows"] / res["cold_s"],
            warm_rows_per_s=res["rows"] / res["warm_s"],
            config=res["config"],
            omp_threads=peer.threads or cores,
            versions=res["versions"],
        )
        row["cosine_min"], row["cosine_mean"] = _cosines(out, reference)
        _say(
            f"{label}: cold {row['cold_s']:.1f} s, warm {row['warm_rows_per_s']:.1f} rows/s, "
            f"min cosine {row['cosine_min']}"
        )
    except Exception as e:  # noqa: BLE001 - a peer that fails is a row saying why
        row["note"] = f"{type(e).__name__}: {e}"[:300]
        _say(f"{label} failed: {row['note']}")
    return row


def _reference(python: Path | str, spec: dict[str, Any], cores: int) -> np.ndarray | None:
    """sentence-transformers ``encode(normalize_embeddings=True)``, cached per data, model
    folder and peers environment (its stamp)."""
    if isinstance(python, str):
        return None
    stamp = python.parent.parent / ".hfspark-bench-stamp"
    key = hashlib.sha1(
        f"{spec['fingerprint']}|{spec['model']}|{spec['max_length']}|"
        f"{stamp.read_text() if stamp.exists() else ''}".encode()
    ).hexdigest()[:12]
    out = Path(spec["work"]) / "peer-runs" / f"reference-{key}"
    if (out / "reference.npy").exists():
        return np.load(out / "reference.npy")
    _say("reference vectors: sentence-transformers encode(normalize_embeddings=True)")
    try:
        _run_app(python, "reference", {**spec, "out": str(out)}, _env(python, cores), 1800, "once")
        return np.load(out / "reference.npy")
    except Exception as e:  # noqa: BLE001 - rows then show no cosine
        _say(f"no reference vectors: {e}")
        return None


def _prepare_mlflow(python: Path | str, spec: dict[str, Any]) -> Path | str:
    """The MLflow sentence_transformers model, saved once with the peers' mlflow."""
    if isinstance(python, str):
        return python
    path = Path(spec["mlflow_model"])
    if (path / "MLmodel").exists():
        return python
    shutil.rmtree(path, ignore_errors=True)
    try:
        out = {**spec, "out": str(path.parent / "mlflow-st-prepare")}
        _run_app(python, "mlflow_st", out, _env(python, 1), 600, "prepare")
        return python
    except Exception as e:  # noqa: BLE001 - the MLflow rows say why
        return f"saving the MLflow model failed: {e}"[:300]


def run_peers(
    work: Path,
    texts: list[str],
    *,
    cores: int,
    partitions: tuple[int, ...],
    reps: int,
) -> dict[str, Any]:
    """Every row of the section plus the ceiling beside the hfspark rows (a JSON-able dict)."""
    import pandas as pd

    work = Path(work)
    model = prepare_models(work, ["feature-extraction"])["feature-extraction"]
    data = work / "data" / f"peers-{len(texts)}-{fingerprint(texts)}.parquet"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(data, index=False)
    spec: dict[str, Any] = {
        "model": str(model.folder),
        "data": str(data),
        "rows": len(texts),
        "cores": cores,
        "max_length": MAX_LENGTH,
        "work": str(work),
        "fingerprint": fingerprint(texts),
        "mlflow_model": str(work / "models" / "peers" / "mlflow-sentence-transformers"),
    }
    try:
        python: Path | str = peers_env(work)
    except (PeerEnvError, OSError, subprocess.SubprocessError) as e:
        python = f"peers environment: {e}"[:300]
        _say(python)
    reference = _reference(python, spec, cores)
    rows: list[dict[str, Any]] = []
    best: dict[str, CeilingResult] = {}
    _say(f"compute ceiling: {cores} processes loading the model")
    with CeilingPool(model.folder, "feature-extraction", texts, cores=cores, max_length=MAX_LENGTH) as pool:  # fmt: skip

        def ceiling(n: int) -> None:
            for _ in range(n):
                _say("compute ceiling round")
                for res in pool.round(CEILING_MODES).values():
                    keep_best(best, res)

        ceiling((reps + 1) // 2)
        for peer in HFSPARK_VARIANTS:
            for parts in partitions:
                rows.append(_measure(peer, parts, spec, Path(sys.executable), reference, cores))
        ceiling(reps // 2)
    mlflow_python = _prepare_mlflow(python, spec)
    for peer in PEERS:
        runner = mlflow_python if peer.app == "mlflow_st" else python
        for parts in partitions if peer.spark else (None,):
            rows.append(_measure(peer, parts, spec, runner, reference, cores))
    return {
        "rows": rows,
        "ceiling": [{**vars(c), "rows_per_s": c.rows_per_s} for c in best.values()],
        "partitions": list(partitions),
        "cores": cores,
        "n_rows": len(texts),
        "max_length": MAX_LENGTH,
        "reference": "sentence-transformers encode(normalize_embeddings=True)"
        if reference is not None
        else None,
        "env": str(python),
    }
