"""Approximate nearest neighbours by inner product over the item vectors: usearch's HNSW.

usearch is the ANN library here because it ships wheels (hnswlib builds from source), adds vectors one batch at a
time to a live index (a posted item is searchable at once; faiss's HNSW adds too but is a far larger package),
and searches by inner product natively. The index only proposes candidates: the model's own predictor scores
them, so a served score always equals the model's.
"""

from __future__ import annotations

import numpy as np

from once.errors import OnceError


def _usearch():
    try:
        from usearch.index import Index
    except ImportError:
        raise OnceError(
            "--index hnsw needs the usearch package, which is not installed",
            hint='Install the serving extra: pip install "once[serve]" (or --index exact, which needs nothing).',
        ) from None
    return Index


class HnswIndex:
    """HNSW over item vectors by inner product; keys are item indices."""

    def __init__(self, dim: int, connectivity: int = 16, expansion_add: int = 128, expansion_search: int = 128):
        self.index = _usearch()(
            ndim=dim,
            metric="ip",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )

    def __len__(self) -> int:
        return len(self.index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self.index.add(np.asarray(keys, np.uint64), np.ascontiguousarray(vectors, np.float32))

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        """(queries, at most count) item indices, best first; fewer where the index has fewer."""
        count = min(count, len(self.index))
        if count == 0:
            return np.zeros((len(queries), 0), np.int64)
        matches = self.index.search(np.ascontiguousarray(queries, np.float32), count)
        keys = np.asarray(matches.keys, np.int64).reshape(len(queries), -1)
        return keys
