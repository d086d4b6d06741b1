"""sentence-transformers ``encode()`` in one process (torch threads = cores: its default).

The query: read the parquet, ``SentenceTransformer(folder).encode(texts)`` at its default
batch size (32; encode sorts each call's texts by length).
"""

from __future__ import annotations

from bench.peer_apps._common import cold_seconds, finish, load_spec, read_texts, stack, timed


def main() -> None:
    """Cold and warm ``encode()`` over all rows in this process."""
    spec = load_spec()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(spec["cores"])
    model = SentenceTransformer(spec["model"], device="cpu")
    model.max_seq_length = spec["max_length"]

    def query() -> object:
        ids, texts = read_texts(spec)
        return stack(ids, model.encode(texts, convert_to_numpy=True))

    cold = query()
    cold_s = cold_seconds(spec)
    warm_s, warm = timed(query)
    finish(
        spec,
        cold_s=cold_s,
        cold=cold,
        warm_s=warm_s,
        warm=warm,
        config=f"one process, torch.set_num_threads({spec['cores']}), encode() batch_size 32 "
        f"(default), max_seq_length {spec['max_length']}",
        packages=["sentence-transformers"],
    )


if __name__ == "__main__":
    main()
