"""Using a trained run: recommendations for users, and item and user vectors for an ANN index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from once.assembly import assemble, load_data, pick_device, set_execution
from once.checkpoint import load_model, save_tensors
from once.data.prepare import PreparedData, new_item_features
from once.errors import DataError, OnceError, closest
from once.evaluate import encode_all_items
from once.files import read_text, write_json
from once.model import Recommender
from once.recipe import ResolvedRecipe
from once.registry import Registry
from once.runs import BEST, Run


@dataclass
class Recommendation:
    item: str
    title: str
    score: float


@dataclass
class LoadedRun:
    """A run's recipe and data with its best checkpoint loaded into the model, in eval mode."""

    run: Run
    resolved: ResolvedRecipe
    data: PreparedData
    model: Recommender
    device: torch.device


def load_run(run_dir: Path, registry: Registry | None = None) -> LoadedRun:
    run = Run.open(run_dir)
    resolved = run.resolve(registry)
    set_execution(resolved)
    data = load_data(resolved)
    device = pick_device(resolved.recipe.device)
    model = assemble(resolved, data, device, cache="existing")
    load_model(run.path / BEST, model, resolved.fingerprint)
    return LoadedRun(run, resolved, data, model.eval(), device)


class TrainedModel:
    """A run's best checkpoint with its data: every item encoded once, users encoded on demand."""

    def __init__(self, run_dir: Path, registry: Registry | None = None) -> None:
        loaded = load_run(run_dir, registry)
        if loaded.model.user_conditioned:
            raise OnceError(
                "this model reads each item in the light of its user (a user-conditioned item encoder, like NPA), so "
                "items have no vectors to rank or export",
                where=str(run_dir),
                hint="once eval scores it with the full model; recommend, export and serve need per-item vectors.",
            )
        self.run, self.resolved, self.data = loaded.run, loaded.resolved, loaded.data
        self.model, self.device = loaded.model, loaded.device
        batch_size = self.resolved.recipe.eval.batch_size
        self.item_vectors = encode_all_items(self.model, self.data.num_items, batch_size, self.device)
        self.item_ids, self.titles = list(self.data.item_ids), list(self.data.titles)  # grow with added items
        self.item_index = {item: i for i, item in enumerate(self.item_ids) if i}
        self._tokenizer = None
        self.user_lookup = {user: i for i, user in enumerate(self.data.users) if i}
        self._latest = self._latest_histories()
        self._clicked = self._clicked_items()

    def _latest_histories(self) -> dict[int, tuple[str, int]]:
        """User index -> (split, impression row) of the user's most recent impression (test > dev > train)."""
        latest = {}
        for name in ("train", "dev", "test"):
            split = self.data.splits.get(name)
            if split is not None:
                latest.update({int(user): (name, row) for row, user in enumerate(split.user_ids)})
        return latest

    def _clicked_items(self) -> dict[int, np.ndarray]:
        """User index -> every item the user clicked in any impression (MIND histories leave these out)."""
        users, items = [], []
        for split in self.data.splits.values():
            clicked = np.flatnonzero(split.labels.values == 1)
            users.append(np.asarray(split.user_ids)[split.candidates.rows_at(clicked)])  # each click's impression
            items.append(split.candidates.values[clicked])
        users, items = np.concatenate(users), np.concatenate(items)
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.array([], dtype=int)
        return {int(users[s]): part for s, part in zip(starts, np.split(items, starts[1:]), strict=True)}

    def seen(self, user: int) -> np.ndarray:
        """Items a user already has: the latest history and every click."""
        return np.concatenate([self.history(user), self._clicked.get(user, np.zeros(0, dtype=np.int64))])

    def user_index(self, user: str, suggest: bool = True) -> int:
        """The user's index; an unknown user is an error, with the closest known id when `suggest` (a scan over
        every user: for the command line, not for a server's every request)."""
        index = self.user_lookup.get(user)
        if index is None:
            guess = closest(user, self.data.users[1:]) if suggest and len(self.data.users) < 200_000 else None
            raise OnceError(
                f"user '{user}' is not in this run's data",
                hint=(f"Did you mean '{guess}'? " if guess else "") + "Users come from the dataset's behaviors files.",
            )
        return index

    def history(self, user: int) -> np.ndarray:
        split, row = self._latest[user]
        return self.data.splits[split].history[row]

    def histories(self, users: list[int], given: list[np.ndarray] | None = None) -> torch.Tensor:
        """(len(users), max_history) item indices, padded with 0: each user's most recent history, or the
        histories `given` (their latest max_history items)."""
        width = self.resolved.recipe.train.max_history
        histories = np.zeros((len(users), width), dtype=np.int64)
        for i, user in enumerate(users):
            items = (self.history(user) if given is None else given[i])[-width:]
            histories[i, : len(items)] = items
        return torch.from_numpy(histories).to(self.device)

    @torch.no_grad()
    def user_vectors(self, users: list[int], given: list[np.ndarray] | None = None) -> torch.Tensor:
        """(len(users), dim), or (len(users), K, dim) for a multi-interest model: each user from their most recent
        history, or from the histories `given` (user 0 with a history: a user the model has never seen). A
        candidate-aware model has no vector per user: an error that says so."""
        if self.model.candidate_aware:
            raise OnceError(
                "this model's user vectors depend on the candidate (a candidate-aware user encoder), so users have "
                "no vectors of their own to export",
                hint="Export the item vectors and score with the model (once recommend), or use another user encoder.",
            )
        parts = []
        batch_size = self.resolved.recipe.eval.batch_size
        for start in range(0, len(users), batch_size):
            chunk = users[start : start + batch_size]
            history = self.histories(chunk, None if given is None else given[start : start + batch_size])
            users_tensor = torch.tensor(chunk, dtype=torch.long, device=self.device)
            parts.append(self.model.encode_users(self.item_vectors[history], history, users_tensor))
        return torch.cat(parts) if parts else torch.zeros(0, self.model.user_encoder.dim)

    @torch.no_grad()
    def pool_scores(
        self, user: int, pool: torch.Tensor, vector: torch.Tensor | None, given: np.ndarray | None = None
    ) -> torch.Tensor:
        """(len(pool),) scores of one user for the items in `pool`: through the user's vector, or for a
        candidate-aware model through the user encoder with the pool as candidates (from the user's latest
        history, or the history `given`). Work per (user, candidate) — a candidate-aware user encoder, a
        history-attending predictor — runs in chunks of eval.batch_size candidates."""
        history = self.histories([user], None if given is None else [given])
        users_tensor = torch.tensor([user], dtype=torch.long, device=self.device)
        history_vectors = self.item_vectors[history]
        per_pair = vector is None or self.model.attends_history
        step = max(1, self.resolved.recipe.eval.batch_size) if per_pair else max(1, len(pool))
        parts = []
        for start in range(0, len(pool), step):
            candidates = pool[start : start + step].unsqueeze(0)
            vectors = self.item_vectors[candidates]
            if vector is None:
                parts.append(self.model.score_vectors(history_vectors, history, users_tensor, vectors, candidates)[0])
            else:
                user_vector = vector.unsqueeze(0)
                parts.append(
                    self.model.predict(user_vector, vectors, users_tensor, candidates, history, history_vectors)[0]
                )
        return torch.cat(parts) if parts else torch.zeros(0, device=self.device)

    def candidates_from_file(self, path: Path) -> list[int]:
        """Item indices listed in a file, whitespace-separated, one or more per line; repeats count once."""
        found = []
        for number, line in enumerate(read_text(path).splitlines(), 1):
            for item in line.split():
                if item not in self.item_index:
                    raise DataError(f"unknown item id '{item}'", where=f"{path}:{number}")
                found.append(self.item_index[item])
        if not found:
            raise DataError("no item ids in the candidate file", where=str(path))
        return list(dict.fromkeys(found))  # each candidate once, in file order

    @torch.no_grad()
    def scored_pools(
        self, users: list[str], candidates: list[int] | None = None, include_history: bool = False
    ) -> Iterator[tuple[str, int, torch.Tensor, torch.Tensor]]:
        """(user, user index, pool, scores) per user: the model's scores of `candidates` (default: every item),
        -inf for the items the user already has unless `include_history`."""
        indices = [self.user_index(u) for u in users]
        pool = torch.tensor(candidates if candidates is not None else range(1, len(self.item_ids)), device=self.device)
        vectors = [None] * len(indices) if self.model.candidate_aware else self.user_vectors(indices)
        for user, index, vector in zip(users, indices, vectors, strict=True):
            scores = self.pool_scores(index, pool, vector)
            if not include_history:
                seen = torch.from_numpy(self.seen(index)).to(self.device)
                scores = scores.masked_fill(torch.isin(pool, seen), float("-inf"))
            yield user, index, pool, scores

    def recommend(
        self, users: list[str], top: int = 10, candidates: list[int] | None = None, include_history: bool = False
    ) -> dict[str, list[Recommendation]]:
        """The `top` best-scored items for each user, among `candidates` (default: every item)."""
        results = {}
        for user, _, pool, scores in self.scored_pools(users, candidates, include_history):
            best = scores.topk(min(top, len(pool)))
            results[user] = [
                Recommendation(self.item_ids[i], self.titles[i], float(s))
                for i, s in zip(pool[best.indices].tolist(), best.values.tolist(), strict=True)
                if s != float("-inf")
            ]
        return results

    @property
    def encodes_new_items(self) -> str | None:
        """None when the run can encode items it has never seen; else why not."""
        if not getattr(self.model.item_encoder, "encodes_new_items", True):
            return (
                "this run's item encoder cannot encode items the data lacks: its vectors come from per-item state "
                "(the popularity baseline; DIRE's cached hidden states, whose frozen layers were not loaded)"
            )
        if not hasattr(self._new_item_tokenizer(), "restore"):
            return "this run's tokenizer cannot restore its vocabulary (it has no restore(state))"
        return None

    def _new_item_tokenizer(self):
        """The run's tokenizer with its vocabulary restored, built once (a checkpoint's tokenizer is slow to load)."""
        if self._tokenizer is None:
            self._tokenizer = self.resolved.build("tokenizer")
            if hasattr(self._tokenizer, "restore"):
                self._tokenizer.restore(self.data.tokenizer_state)
        return self._tokenizer

    @torch.no_grad()
    def encode_new_items(self, rows: list[dict[str, str]]) -> torch.Tensor:
        """(len(rows), item_dim): items the data does not have, from their fields, by the run's tokenizer and item
        encoder (`new_item_features`); item index -1 tells the encoder they are new."""
        why = self.encodes_new_items
        if why is not None:
            raise OnceError(why, hint="Serve a run whose item encoder reads the items' text.")
        features = new_item_features(self.data, self.resolved.recipe.items, self._new_item_tokenizer(), rows)
        step = self.resolved.recipe.eval.batch_size
        parts = []
        for start in range(0, len(rows), step):
            chunk = {field: values[start : start + step].to(self.device) for field, values in features.items()}
            chunk["item"] = torch.full((len(next(iter(chunk.values()))),), -1, dtype=torch.long, device=self.device)
            parts.append(self.model.item_encoder(chunk).float())
        return torch.cat(parts) if parts else torch.zeros(0, self.model.item_encoder.dim, device=self.device)

    def check_new_ids(self, ids: list[str]) -> None:
        """An error naming the ids that the catalogue has or that repeat; nothing when all are new."""
        taken = [item for item in ids if item in self.item_index]
        repeated = sorted({item for item in ids if ids.count(item) > 1})
        if taken or repeated:
            raise DataError(
                f"item id(s) already in the catalogue or repeated: {', '.join(map(repr, (taken + repeated)[:5]))}"
            )

    def add_items(self, ids: list[str], titles: list[str], vectors: torch.Tensor) -> list[int]:
        """Append items with their vectors (from `encode_new_items`); returns their indices. Ids must be new."""
        self.check_new_ids(ids)
        first = len(self.item_ids)
        self.item_vectors = torch.cat([self.item_vectors, vectors.to(self.item_vectors)])
        self.item_ids += ids
        self.titles += titles
        self.item_index.update({item: first + i for i, item in enumerate(ids)})
        return list(range(first, first + len(ids)))

    def export(self, out: Path) -> dict[str, int]:
        """Item and user vectors as safetensors with their id maps, ready for an ANN index."""
        users = sorted(self._latest)
        user_vectors = self.user_vectors(users)  # first: a model without user vectors fails before writing anything
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "items.safetensors", {"vectors": self.item_vectors[1:]})
        save_tensors(out / "users.safetensors", {"vectors": user_vectors})
        write_json(out / "item_ids.json", self.data.item_ids[1:])
        write_json(out / "user_ids.json", [self.data.users[u] for u in users])
        write_json(
            out / "meta.json",
            {
                "run": str(self.run.path),
                "fingerprint": self.run.info["fingerprint"],
                "score": self.resolved.data["model"]["predictor"]["name"],
                "item_dim": int(self.item_vectors.shape[1]),
                "vectors_per_user": int(user_vectors.shape[1]) if user_vectors.dim() == 3 else 1,  # K (MINER)
                "items": self.data.num_items - 1,
                "users": len(users),
                "user_history": "each user's most recent history in the data (test, else dev, else train)",
            },
        )
        return {"items": self.data.num_items - 1, "users": len(users)}
