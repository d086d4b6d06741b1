"""Daft ``embed_text(provider="transformers")`` on the native runner.

``daft.read_parquet(...).with_column("vector", embed_text(col("text"),
provider="transformers", model=folder, concurrency=cores, batch_size=64))``: ``concurrency``
is the number of UDF instances (for a sync UDF, actor-pool processes); each runs with
``OMP_NUM_THREADS=1`` (set by the parent), so ``cores`` workers x one torch thread.
batch_size 64 is the provider's own default when no options are given. The model's
``max_seq_length`` comes from the folder (256).
"""

from __future__ import annotations

from typing import Any

from bench.peer_apps._common import cold_seconds, finish, load_spec, stack, timed

#: embed_text's batch size (the transformers provider's default, kept when passing options)
BATCH = 64


def main() -> None:
    """Cold and warm Daft queries in one process."""
    spec = load_spec()
    import daft
    from daft.functions import embed_text

    def query() -> Any:
        df = daft.read_parquet(spec["data"]).with_column(
            "vector",
            embed_text(
                daft.col("text"),
                provider="transformers",
                model=spec["model"],
                concurrency=spec["cores"],
                batch_size=BATCH,
            ),
        )
        out = df.select("id", "vector").to_pydict()
        return stack(out["id"], out["vector"])

    cold = query()
    cold_s = cold_seconds(spec)
    warm_s, warm = timed(query)
    finish(
        spec,
        cold_s=cold_s,
        cold=cold,
        warm_s=warm_s,
        warm=warm,
        config=f"native runner, embed_text(provider='transformers', concurrency={spec['cores']}, "
        f"batch_size={BATCH}), OMP_NUM_THREADS=1 per UDF process",
        packages=["daft", "sentence-transformers"],
    )


if __name__ == "__main__":
    main()
