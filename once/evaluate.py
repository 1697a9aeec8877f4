"""Scoring whole splits: the fast path encodes every item and every distinct user once, then scores by lookup."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from once.data.prepare import PreparedData, Split
from once.distributed import World
from once.metrics import mind_metrics
from once.model import Recommender
from once.progress import tracked
from once.recipe import ResolvedRecipe


def evaluation_settings(
    resolved: ResolvedRecipe, data: PreparedData, device: torch.device, world: World | None = None
) -> dict[str, Any]:
    """The keyword arguments of `score_split` and `evaluate` that a recipe and its data fix."""
    return {
        "num_items": data.num_items,
        "max_history": resolved.recipe.train.max_history,
        "batch_size": resolved.recipe.eval.batch_size,
        "device": device,
        "precision": resolved.recipe.precision,
        "world": world or World(),
    }


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision: bf16`, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _chunks(total: int, size: int) -> Iterator[np.ndarray]:
    for start in range(0, total, size):
        yield np.arange(start, min(start + size, total))


@torch.no_grad()
def encode_items(
    model: Recommender,
    items: np.ndarray,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    world: World | None = None,
) -> torch.Tensor:
    """(len(items), item_dim): the vectors of `items`, in eval mode. Items are encoded in order of length, so that
    each chunk is trimmed to its own longest text; under torchrun each rank encodes its share."""
    world = world or World()
    model.eval()
    order = np.argsort(model.token_counts(torch.from_numpy(items)).numpy(), kind="stable")
    mine = items[order][world.shard(len(items))]
    # each chunk goes straight into its rows: two copies of the vectors at most (a baseline's vectors can be as
    # wide as the vocabulary)
    mine_vectors = torch.empty(len(mine), model.item_encoder.dim, device=device)
    with autocast(device, precision):
        for rows in tracked(_chunks(len(mine), batch_size), -(-len(mine) // batch_size), "encoding items"):
            mine_vectors[rows[0] : rows[-1] + 1] = model.encode_items(torch.from_numpy(mine[rows]).to(device))
    in_order = world.unshard(mine_vectors, len(items))
    del mine_vectors
    vectors = torch.empty_like(in_order)
    vectors[torch.from_numpy(order).to(device)] = in_order
    return vectors


def encode_all_items(model: Recommender, num_items: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """(num_items, item_dim): every item's vector, in eval mode."""
    return encode_items(model, np.arange(num_items), batch_size, device)


@torch.no_grad()
def split_item_vectors(
    model: Recommender,
    split: Split,
    *,
    num_items: int,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    world: World | None = None,
    **_: Any,
) -> torch.Tensor:
    """(num_items, item_dim): the vectors of every item the split names (its histories and candidates), zeros for
    the others; the fast path scores from them. Takes `evaluation_settings` as they are."""
    needed = np.union1d(np.union1d(split.history.values, split.candidates.values), [0]).astype(np.int64)  # 0: pad
    encoded = encode_items(model, needed, batch_size, device, precision, world)
    items = torch.zeros(num_items, model.item_encoder.dim, device=device)
    items[torch.from_numpy(needed).to(device)] = encoded
    return items


@torch.no_grad()
def score_split(
    model: Recommender,
    split: Split,
    *,
    num_items: int,
    max_history: int,
    batch_size: int,
    device: torch.device,
    fast: bool = True,
    precision: str = "fp32",
    world: World | None = None,
    items: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """Scores of every impression's candidates, in candidate order.

    fast=True encodes each item the split names once and each distinct (user, history) once, then scores by
    lookup; fast=False runs the full model on every impression, as training does. Both give the same scores.
    A candidate-aware user encoder has no vector per user: the fast path then runs it per impression on the
    cached item vectors (no item is encoded twice), in chunks of about `batch_size` (impression, candidate) pairs.
    A user-conditioned item encoder (NPA) gives no vector per item: both paths are then the full model.
    Under torchrun each rank scores its share of the impressions and every rank gets all the scores. The fast
    path takes `items` from `split_item_vectors` when given (to share them with metrics that read vectors).
    """
    world = world or World()
    model.eval()
    fast = fast and not model.user_conditioned  # items read by their user have no vectors to cache: full model
    rows_of_rank = world.shard(len(split))
    histories = split.history.padded(rows_of_rank, split.history.width(max_history))
    users = np.asarray(split.user_ids)[rows_of_rank]
    lengths = split.candidates.lengths[rows_of_rank]
    if fast and items is None:
        items = split_item_vectors(
            model, split, num_items=num_items, batch_size=batch_size, device=device, precision=precision, world=world
        )
    per_user = fast and not model.candidate_aware
    if per_user:
        keys = np.concatenate([users[:, None], histories], axis=1)
        distinct, user_of_impression = np.unique(keys, axis=0, return_inverse=True)
        user_of_impression = user_of_impression.ravel()  # numpy 2.0.0 returned it 2-D
        user_parts = []
        with autocast(device, precision):
            for rows in tracked(_chunks(len(distinct), batch_size), -(-len(distinct) // batch_size), "encoding users"):
                history = torch.from_numpy(distinct[rows, 1:]).to(device)
                user_ids = torch.from_numpy(distinct[rows, 0]).to(device)
                user_parts.append(model.encode_users(items[history], history, user_ids).float())
        user_vectors = torch.cat(user_parts) if user_parts else items[:0]
    chunk = batch_size
    if model.candidate_aware or model.attends_history:  # work per (impression, candidate): keep chunks that size
        chunk = max(1, batch_size // max(1, int(lengths.max(initial=1))))
    scores: list[np.ndarray] = []
    with autocast(device, precision):
        for rows in tracked(_chunks(len(rows_of_rank), chunk), -(-len(rows_of_rank) // chunk), "scoring"):
            width = int(lengths[rows].max())
            candidates = torch.from_numpy(split.candidates.padded(rows_of_rank[rows], width)).to(device)
            history = torch.from_numpy(histories[rows]).to(device)
            user_ids = torch.from_numpy(users[rows]).to(device)
            if per_user:
                vectors = user_vectors[torch.from_numpy(user_of_impression[rows]).to(device)]
                history_vectors = items[history] if model.attends_history else None
                batch_scores = model.predict(vectors, items[candidates], user_ids, candidates, history, history_vectors)
            elif fast:  # candidate-aware users, on the cached item vectors
                batch_scores = model.score_vectors(items[history], history, user_ids, items[candidates], candidates)
            else:
                batch_scores = model(history, candidates, user_ids)
            batch_scores = batch_scores.float().cpu().numpy()
            scores.extend(batch_scores[i, : lengths[row]] for i, row in enumerate(rows))
    if not world.distributed or not len(split):
        return scores
    flat = world.gather(torch.from_numpy(np.concatenate(scores) if scores else np.zeros(0, np.float32))).numpy()
    order = world.order(len(split))
    pieces = np.split(flat, np.cumsum(split.candidates.lengths[order])[:-1])
    gathered: list[np.ndarray] = [np.empty(0)] * len(split)
    for row, piece in zip(order, pieces, strict=True):
        gathered[row] = piece
    return gathered


def evaluate(model: Recommender, split: Split, **kwargs) -> dict[str, float]:
    """MIND metrics of a labeled split."""
    return split_metrics(split, score_split(model, split, **kwargs))


def split_metrics(split: Split, scores: list[np.ndarray], rows: Iterable[int] | None = None) -> dict[str, float]:
    """MIND metrics of the given impressions (all by default) from their scores."""
    rows = range(len(split)) if rows is None else rows
    return mind_metrics([split.labels[i] for i in rows], [scores[i] for i in rows])


def user_groups(split: Split, cold_history: int) -> dict[str, np.ndarray]:
    """Impressions of cold users (at most `cold_history` really clicked items before) and of warm users."""
    cold = split.real_history <= cold_history
    return {f"cold users (history <= {cold_history})": np.flatnonzero(cold), "warm users": np.flatnonzero(~cold)}


def prediction_archive(text: str, name: str = "prediction.txt") -> bytes:
    """The zip a leaderboard takes: the rankings file alone at its root (MIND's `prediction.txt`, EB-NeRD's
    `predictions.txt`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def prediction_lines(split: Split, scores: list[np.ndarray]) -> str:
    """The MIND leaderboard's prediction.txt: `ImpId [rank of candidate 1,rank of candidate 2,...]`."""
    lines = []
    for impression_id, impression_scores in zip(split.impression_ids, scores, strict=True):
        ranks = np.empty(len(impression_scores), dtype=np.int64)
        ranks[np.argsort(-impression_scores, kind="stable")] = np.arange(1, len(impression_scores) + 1)
        lines.append(f"{impression_id} [{','.join(map(str, ranks))}]\n")
    return "".join(lines)
