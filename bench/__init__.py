"""hfspark's benchmark (``make bench``): hfspark vs MLflow vs a naive pandas UDF vs the compute ceiling.

Modules: :mod:`bench.run` (entry point and knobs), :mod:`bench.data` (real mixed-length text),
:mod:`bench.models` (MiniLM classifier/embedder in three saved forms), :mod:`bench.systems`
(the Spark jobs), :mod:`bench.ceiling` (no-Spark multiprocess ceiling), :mod:`bench.quant`
(int8/bf16), :mod:`bench.speech` + :mod:`bench.whisper` (Whisper tiny.en), :mod:`bench.monitor`
(peak RSS, load counting), :mod:`bench.report` (tables, targets, chart), :mod:`bench.tune`
(CPU batch settings).
"""
