"""Ray Data ``map_batches`` with one actor per core (sentence-transformers inside each actor).

``ray.init(num_cpus=cores)``; the parquet is read in the driver and handed to Ray as blocks
of BATCH rows (``from_arrow``), then ``map_batches(Embedder, compute=ActorPoolStrategy(
size=cores), num_cpus=1, batch_size=BATCH)``; each actor sets ``torch.set_num_threads(1)``
(Ray also sets ``OMP_NUM_THREADS`` to an actor's ``num_cpus``). The query ends with every
batch back in the driver (``iter_batches``). Not ``ray.data.read_parquet``: its file-listing
task needs a CPU that the actors (one per core) already hold, and the job never starts
(seen with Ray 2.60 on 2 cores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.peer_apps._common import cold_seconds, finish, load_spec, stack, timed

#: rows per map_batches call (encode sorts each call's rows by length, batches of 32)
BATCH = 128


class Embedder:
    """One Ray actor: a SentenceTransformer on one torch thread."""

    def __init__(self, folder: str, max_length: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        self.model = SentenceTransformer(folder, device="cpu")
        self.model.max_seq_length = max_length

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.encode(list(batch["text"]), convert_to_numpy=True)
        return {"id": batch["id"], "vector": vectors}


def main() -> None:
    """Cold and warm Ray Data pipelines in one Ray session."""
    spec = load_spec()
    import pyarrow.parquet as pq
    import ray

    ray.init(
        num_cpus=spec["cores"],
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=512 * 1024 * 1024,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False

    def query() -> Any:
        table = pq.read_table(spec["data"], columns=["id", "text"])
        blocks = [table.slice(i, BATCH) for i in range(0, table.num_rows, BATCH)]
        ds = ray.data.from_arrow(blocks).map_batches(
            Embedder,
            fn_constructor_args=(spec["model"], spec["max_length"]),
            compute=ray.data.ActorPoolStrategy(size=spec["cores"]),
            num_cpus=1,
            batch_size=BATCH,
            batch_format="numpy",
        )
        ids: list[int] = []
        vectors: list[np.ndarray] = []
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            ids.extend(int(i) for i in batch["id"])
            vectors.extend(batch["vector"])
        return stack(ids, vectors)

    cold = query()
    cold_s = cold_seconds(spec)
    warm_s, warm = timed(query)
    ray.shutdown()
    finish(
        spec,
        cold_s=cold_s,
        cold=cold,
        warm_s=warm_s,
        warm=warm,
        config=f"ray.init(num_cpus={spec['cores']}), from_arrow(blocks of {BATCH} rows), map_batches(compute=ActorPoolStrategy("
        f"size={spec['cores']}), num_cpus=1, batch_size={BATCH}), sentence-transformers "
        "encode() in each actor, torch.set_num_threads(1)",
        packages=["ray", "sentence-transformers"],
    )


if __name__ == "__main__":
    main()
