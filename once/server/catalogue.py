"""One served run: the trained model, the data's items and the posted ones, and the index that proposes items.

Scores always come from the model's own predictor (`TrainedModel.pool_scores`): with the exact index over every
item, so a user's list equals `once recommend`'s; with HNSW over the items the index proposes for the user's
vector(s), so a score equals the model's and only the choice of items can differ (recall, at `/info`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from once.data.prepare import source_fields
from once.errors import DataError, OnceError
from once.registry import Registry
from once.server.index import HnswIndex
from once.server.store import ItemStore
from once.trained import TrainedModel

log = logging.getLogger(__name__)
RECALL_USERS = 200  # users whose exact and approximate top 10 are compared when an HNSW index is built
RECALL_K = 10


@dataclass(frozen=True)
class Query:
    """Whom to rank for: a known user (index into the data's users) with their latest history, or a history of
    item indices from a user the model has never seen (user 0)."""

    user: int
    history: np.ndarray | None = None  # None: the user's own latest history


class Catalogue:
    """A run ready to serve; `add` posts items, everything else reads."""

    def __init__(self, run_dir: Path, index: str, store: ItemStore, registry: Registry | None = None) -> None:
        self.trained = TrainedModel(run_dir, registry)
        self.index_kind = index
        self.posted = 0
        self.index: HnswIndex | None = None
        self.recall: float | None = None
        if index == "hnsw":
            self.index = self._hnsw()
        self._restore(store)
        if self.index is not None:
            self.recall = self._recall()

    def _restore(self, store: ItemStore) -> None:
        """Encode the stored items into this run: all of them, but those it cannot take (an id its data has now, a
        field it does not read, a run that encodes no new items), which are left out with a warning, never a
        refusal to load."""
        stored = store.items()
        if not stored:
            return
        why = self.trained.encodes_new_items
        if why is not None:
            log.warning("%d posted item(s) not served: %s", len(stored), why)
            return
        fields = source_fields(self.trained.resolved.recipe.items)
        fresh = [(i, f) for i, f in stored if i not in self.trained.item_index and set(f) <= fields]
        if len(fresh) < len(stored):
            log.warning(
                "%d posted item(s) not served: their id is in this run's data now, or they have fields it does not "
                "read",
                len(stored) - len(fresh),
            )
        if fresh:
            self._append([item for item, _ in fresh], [f for _, f in fresh])

    @property
    def items(self) -> int:
        return len(self.trained.item_ids) - 1

    def _hnsw(self) -> HnswIndex:
        model = self.trained.model
        if model.candidate_aware or not getattr(model.predictor, "retrieves_by_inner_product", False):
            raise OnceError(
                "this model does not score by an inner product of a user vector and an item vector (its user vector "
                "depends on the candidate, or its predictor is a network), so no index can propose its items",
                hint="Serve it with --index exact: every item is scored by the model.",
            )
        index = HnswIndex(self.trained.item_vectors.shape[1])
        vectors = self.trained.item_vectors.cpu().numpy()
        index.add(np.arange(1, len(vectors)), vectors[1:])
        return index

    def _recall(self) -> float | None:
        """The HNSW lists' recall@10 against the exact ones, over up to RECALL_USERS of the data's users."""
        users = sorted(self.trained._latest)[:: max(1, len(self.trained._latest) // RECALL_USERS)][:RECALL_USERS]
        if not users:
            return None
        found = [
            len(
                set(self.rank(Query(u), RECALL_K, exclude=[])[0])
                & set(self.rank(Query(u), RECALL_K, [], exact=True)[0])
            )
            for u in users
        ]
        return float(np.mean(found) / RECALL_K)

    def user_query(self, user_id: str) -> Query:
        return Query(self.trained.user_index(user_id, suggest=False))

    def history_query(self, item_ids: list[str]) -> Query:
        return Query(0, np.array(self.item_indices(item_ids), dtype=np.int64))

    def item_indices(self, item_ids: list[str]) -> list[int]:
        lookup = self.trained.item_index
        unknown = [item for item in item_ids if item not in lookup]
        if unknown:
            raise DataError(
                f"unknown item id(s): {', '.join(map(repr, unknown[:5]))}" + (" ..." if len(unknown) > 5 else "")
            )
        return [lookup[item] for item in item_ids]

    def seen(self, query: Query) -> np.ndarray:
        """What a list leaves out by default: a known user's history and clicks, or the given history."""
        return self.trained.seen(query.user) if query.history is None else query.history

    @torch.no_grad()
    def user_vector(self, query: Query) -> torch.Tensor | None:
        """The query's user vector ((dim,) or (K, dim)); None for a candidate-aware model."""
        if self.trained.model.candidate_aware:
            return None
        given = None if query.history is None else [query.history]
        return self.trained.user_vectors([query.user], given)[0]

    @torch.no_grad()
    def scores(self, query: Query, pool: list[int] | torch.Tensor) -> torch.Tensor:
        pool = torch.as_tensor(pool, dtype=torch.long, device=self.trained.device)
        return self.trained.pool_scores(query.user, pool, self.user_vector(query), query.history)

    @torch.no_grad()
    def rank(
        self,
        query: Query,
        k: int,
        exclude: list[int] | np.ndarray | None = None,
        candidates: list[int] | None = None,
        exact: bool = False,
    ) -> tuple[list[int], list[float]]:
        """The k best items (indices, scores) for the query among `candidates` (default: the index proposes them,
        or every item), leaving out `exclude` (default: `seen`)."""
        exclude = np.asarray(self.seen(query) if exclude is None else exclude, dtype=np.int64)
        vector = self.user_vector(query)
        device = self.trained.device
        if candidates is not None:
            pool = torch.tensor(candidates, dtype=torch.long, device=device)
        elif self.index is None or exact:
            pool = torch.arange(1, len(self.trained.item_ids), device=device)
        else:
            queries = vector.reshape(-1, vector.shape[-1]).cpu().numpy()
            proposed = self.index.search(queries, max(4 * k, 100) + len(exclude))
            proposed = np.unique(proposed[(proposed > 0) & (proposed < len(self.trained.item_ids))])
            pool = torch.from_numpy(proposed).to(device)
        scores = self.trained.pool_scores(query.user, pool, vector, query.history)
        if len(exclude):
            scores = scores.masked_fill(torch.isin(pool, torch.from_numpy(exclude).to(device)), float("-inf"))
        best = scores.topk(min(k, len(pool)))
        kept = best.values != float("-inf")
        return pool[best.indices[kept]].tolist(), best.values[kept].tolist()

    def add(self, item_ids: list[str], fields: list[dict[str, str]], store: ItemStore) -> None:
        """Encode new items, store them (all or none), then make them servable: vectors first, then ids, then the
        index, so a request running meanwhile never sees an id without its vector. Callers post one at a time
        (`Served.writing`)."""
        self.trained.check_new_ids(item_ids)  # before encoding and storing anything
        vectors = self.trained.encode_new_items(fields)
        store.add(list(zip(item_ids, fields, strict=True)))
        self._extend(item_ids, fields, vectors)

    def _append(self, item_ids: list[str], fields: list[dict[str, str]]) -> None:
        self._extend(item_ids, fields, self.trained.encode_new_items(fields))

    def _extend(self, item_ids: list[str], fields: list[dict[str, str]], vectors: torch.Tensor) -> None:
        titles = [row.get("title", next(iter(row.values()), "")) for row in fields]
        indices = self.trained.add_items(item_ids, titles, vectors)
        if self.index is not None:
            self.index.add(np.asarray(indices), vectors.cpu().numpy())
        self.posted += len(item_ids)
