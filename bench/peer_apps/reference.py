"""The reference vectors: sentence-transformers ``encode(normalize_embeddings=True)``.

Writes ``reference.npy`` (id order) to the spec's out folder; not timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.peer_apps._common import load_spec, read_texts, stack


def main() -> None:
    """Encode every row once and save the matrix."""
    spec = load_spec()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(spec["cores"])
    model = SentenceTransformer(spec["model"], device="cpu")
    model.max_seq_length = spec["max_length"]
    ids, texts = read_texts(spec)
    vectors = stack(ids, model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "reference.npy", vectors)


if __name__ == "__main__":
    main()
