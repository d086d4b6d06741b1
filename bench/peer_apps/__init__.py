"""One small runner per system of the peers section (see :mod:`bench.peers`).

Each runs as ``python -m bench.peer_apps.<name> SPEC.json`` in a fresh process: the peers
run with the peers environment's interpreter, hfspark with the project's. A runner times a
*cold* query (from the parent's ``t0``, taken right before it started the process: imports,
session and worker start, model loads, all rows) and a *warm* one (the same query again in
the same process/session), writes both queries' vectors to ``cold.npy`` / ``warm.npy`` in
id order, and prints one ``PEER_RESULT {json}`` line. Only the standard library, numpy and
pyarrow are imported at module level (:mod:`bench.peer_apps._common`).
"""
