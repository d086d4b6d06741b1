"""spark-submit entry point: run an hfspark job configuration on any Spark cluster.

    spark-submit --master spark://host:7077 --py-files hfspark-0.1.0-py3-none-any.whl \
        --packages io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
        jobs/run_job.py conf/embeddings.yaml [--set key=value ...]

The session is the one spark-submit configures (its --master wins over the conf's
``spark.master``); ``spark.conf`` entries of the YAML are added to it. Exit codes are the
``hfspark run`` ones: 0 done, 1 failed, 2 invalid configuration, 3 error budget exceeded.
See docs/spark-submit.md.
"""

import sys

from hfspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]], embedded=False))
