"""Loopback Spark servers for tests, the benchmark and trying things locally.

Nothing in the package imports this (it sits above every layer): a standalone master and
workers, a Spark Connect server, and ``spark-submit`` with the Delta jars hfspark caches.

Example:
    >>> from hfspark.testing.cluster import StandaloneCluster
    >>> with StandaloneCluster(workers=2) as cluster:
    ...     print(cluster.master_url)
"""
