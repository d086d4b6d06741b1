"""Fetch and cache the Delta Lake jars (Maven Central only; no PyPI wheel ships them).

``python -m hfspark.jars`` resolves ``io.delta:delta-spark_4.2_2.13`` with Maven into a
per-user cache and keeps only the jars that the pyspark distribution does not already
carry (older copies of jackson, hadoop or parquet on the classpath would break Spark).

``python -m hfspark.jars --list`` prints them comma-separated, for ``spark-submit --jars``.

Example:
    >>> from hfspark.jars import delta_jars
    >>> jars = delta_jars()          # fetched once, then read from the cache
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

__all__ = ["DELTA_VERSION", "DELTA_ARTIFACT", "jars_dir", "delta_jars", "fetch_delta_jars"]

DELTA_VERSION = "4.4.0"
DELTA_ARTIFACT = "io.delta:delta-spark_4.2_2.13"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>hfspark</groupId><artifactId>delta-jars</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies><dependency>
    <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
  </dependency></dependencies>
</project>
"""


def jars_dir() -> Path:
    """The cache folder of the Delta jars (``$HFSPARK_JARS_DIR`` or ``~/.cache/hfspark/jars``)."""
    root = os.environ.get("HFSPARK_JARS_DIR") or Path.home() / ".cache" / "hfspark" / "jars"
    return Path(root) / f"delta-{DELTA_VERSION}"


def _artifact_name(jar: str) -> str:
    return re.sub(r"-\d[\w.\-]*\.jar$", "", jar)


def _spark_jar_names() -> set[str]:
    import pyspark

    spark_jars = Path(pyspark.__file__).parent / "jars"
    return {_artifact_name(p.name) for p in spark_jars.glob("*.jar")}


def fetch_delta_jars(force: bool = False) -> list[Path]:
    """Resolve the Delta jars with Maven into :func:`jars_dir` (safe across processes)."""
    target = jars_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / ".complete").exists() and not force:
            return sorted(target.glob("*.jar"))
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "Maven (mvn) is needed once to fetch the Delta Lake jars from Maven Central; "
                "install it (apt-get install maven) or set HFSPARK_JARS_DIR to a folder of jars"
            )
        group, artifact = DELTA_ARTIFACT.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(_POM.format(group=group, artifact=artifact, version=DELTA_VERSION))
            out = Path(tmp) / "jars"
            subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={out}",
                    "-DincludeScope=runtime",
                ],
                check=True,
            )
            have = _spark_jar_names()
            staging = Path(tmp) / "keep"
            staging.mkdir()
            for jar in out.glob("*.jar"):
                if _artifact_name(jar.name) not in have:
                    shutil.copy2(jar, staging / jar.name)
            (staging / ".complete").write_text(DELTA_ARTIFACT + ":" + DELTA_VERSION + "\n")
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(staging), target)
        return sorted(target.glob("*.jar"))


def delta_jars() -> list[Path]:
    """The cached Delta jars, fetching them first when the cache is empty."""
    target = jars_dir()
    if (target / ".complete").exists():
        return sorted(target.glob("*.jar"))
    return fetch_delta_jars()


if __name__ == "__main__":
    # python -m hfspark.jars [--force]: fetch; --list: the jars comma-separated, for --jars
    jars = fetch_delta_jars(force="--force" in sys.argv)
    if "--list" in sys.argv:
        print(",".join(str(j) for j in jars))
    else:
        print(f"{len(jars)} Delta jars in {jars_dir()}")
