"""A fault-test job: classify texts with hfspark ``model_udf`` and write Delta tables, in phases.

Submitted by tests/test_faults.py with spark-submit (it runs as the driver, not under pytest)::

    spark-submit classify.py PLAN.json

The plan (written by the test) names the input (JSON lines with ``id`` and ``text``), the
models (name -> URI) and a list of phases. Each phase writes the same job's result (ids and
predictions) with one model into one Delta table; the test injects its fault while a phase runs:

- ``pace`` (seconds per Arrow batch) slows a phase down in a pass-through Arrow UDF chained
  *before* the model UDF (an Arrow UDF too). Spark evaluates chained UDFs of one kind in one
  Python worker, so
  each marker file ``<phase>-<pid>-p<partition>-a<attempt>-<n>`` names the Python worker that
  runs inference on that batch, and the attempt shows retried tasks. Nothing sleeps in hfspark.
- ``wait``: before the phase the app writes ``<ctl>/<phase>.ready`` and waits for
  ``<ctl>/<phase>.go`` (the test prepares the fault in between).
- After each phase the app writes ``<ctl>/<phase>.done``: ``{"ok": ..., "error": ..., "seconds":
  ...}``. A failed write does not stop the app: the next phase runs. The exit code is 0.

Every model UDF is built (on the driver: metadata only) before the first phase.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import SparkSession
from pyspark.sql.functions import arrow_udf

from hfspark.udfs import model_udf

plan = json.loads(Path(sys.argv[1]).read_text())
ctl, markers = Path(plan["ctl"]), plan["markers"]
spark = SparkSession.builder.getOrCreate()  # before arrow_udf parses its type


def make_pace(phase: str, seconds: float):
    """A pass-through Arrow UDF that leaves a marker per batch and pauses ``seconds``."""

    @arrow_udf("string")
    def pace(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        ctx = TaskContext.get()
        for n, texts in enumerate(batches):
            name = f"{phase}-{os.getpid()}-p{ctx.partitionId()}-a{ctx.attemptNumber()}-{n}"
            open(os.path.join(markers, name), "w").close()
            if seconds:
                time.sleep(seconds)
            yield texts

    return pace


# The input file split by bytes into about ``partitions`` tasks: the same rows in the same
# partitions on every attempt, no shuffle (nothing lost with an executor) and no Python worker.
size = Path(plan["input"]).stat().st_size
spark.conf.set("spark.sql.files.maxPartitionBytes", str(size // plan["partitions"] + 1))
data = spark.read.schema("id long, text string").json(plan["input"])
udfs = {name: model_udf(uri, batch_size=8, device="cpu") for name, uri in plan["models"].items()}
print("MODELS READY", sorted(udfs), flush=True)

for phase in plan["phases"]:
    name = phase["name"]
    if phase.get("wait"):
        (ctl / f"{name}.ready").touch()
        deadline = time.monotonic() + 300
        while not (ctl / f"{name}.go").exists():
            if time.monotonic() > deadline:
                sys.exit(f"no go for phase {name}")
            time.sleep(0.1)
    pace = make_pace(name, float(phase.get("pace", 0.0)))
    result = data.select("id", udfs[phase["model"]](pace("text")).alias("pred"))
    started = time.monotonic()
    try:
        result.write.format("delta").mode(phase.get("mode", "errorifexists")).save(phase["output"])
        outcome = {"ok": True, "error": None}
    except Exception as e:  # noqa: BLE001 - the test reads the error
        outcome = {
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc()[-4000:],
        }
    outcome["seconds"] = round(time.monotonic() - started, 2)
    print(f"PHASE {name} ok={outcome['ok']} in {outcome['seconds']}s", flush=True)
    (ctl / f"{name}.tmp").write_text(json.dumps(outcome))
    (ctl / f"{name}.tmp").rename(ctl / f"{name}.done")

spark.stop()
