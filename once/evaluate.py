"""Scoring whole splits: the fast path encodes every item and every distinct user once, then scores by lookup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from once.data.prepare import PreparedData, Split
from once.metrics import mind_metrics
from once.model import Recommender
from once.progress import tracked
from once.recipe import ResolvedRecipe


def evaluation_settings(resolved: ResolvedRecipe, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """The keyword arguments of `score_split` and `evaluate` that a recipe and its data fix."""
    return {
        "num_items": data.num_items,
        "max_history": resolved.recipe.train.max_history,
        "batch_size": resolved.recipe.eval.batch_size,
        "device": device,
    }


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield np.arange(start, min(start + size, total))


@torch.no_grad()
def encode_all_items(model: Recommender, num_items: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """(num_items, item_dim): every item's vector, in eval mode."""
    model.eval()
    chunks = tracked(_chunks(num_items, batch_size), -(-num_items // batch_size), "encoding items")
    return torch.cat([model.encode_items(torch.from_numpy(rows).to(device)) for rows in chunks])


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
) -> list[np.ndarray]:
    """Scores of every impression's candidates, in candidate order.

    fast=True encodes each item once and each distinct (user, history) once; fast=False runs the full model on
    every impression, as training does. Both give the same scores.
    """
    model.eval()
    histories = split.history.all_padded(max_history)
    if fast:
        items = encode_all_items(model, num_items, batch_size, device)
        keys = np.concatenate([split.user_ids[:, None], histories], axis=1)
        distinct, user_of_impression = np.unique(keys, axis=0, return_inverse=True)
        user_of_impression = user_of_impression.ravel()  # numpy 2.0.0 returned it 2-D
        user_parts = []
        for rows in tracked(_chunks(len(distinct), batch_size), -(-len(distinct) // batch_size), "encoding users"):
            history = torch.from_numpy(distinct[rows, 1:]).to(device)
            users = torch.from_numpy(distinct[rows, 0]).to(device)
            user_parts.append(model.encode_users(items[history], history, users))
        user_vectors = torch.cat(user_parts)
    scores: list[np.ndarray] = []
    lengths = split.candidates.lengths
    for rows in tracked(_chunks(len(split), batch_size), -(-len(split) // batch_size), "scoring impressions"):
        candidates = torch.from_numpy(split.candidates.padded(rows, int(lengths[rows].max()))).to(device)
        if fast:
            batch_scores = model.predictor(user_vectors[torch.from_numpy(user_of_impression[rows])], items[candidates])
        else:
            history = torch.from_numpy(histories[rows]).to(device)
            batch_scores = model(history, candidates, torch.from_numpy(split.user_ids[rows]).to(device))
        batch_scores = batch_scores.float().cpu().numpy()
        scores.extend(batch_scores[i, : lengths[row]] for i, row in enumerate(rows))
    return scores


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


def prediction_lines(split: Split, scores: list[np.ndarray]) -> str:
    """The MIND leaderboard's prediction.txt: `ImpId [rank of candidate 1,rank of candidate 2,...]`."""
    lines = []
    for impression_id, impression_scores in zip(split.impression_ids, scores, strict=True):
        ranks = np.empty(len(impression_scores), dtype=np.int64)
        ranks[np.argsort(-impression_scores, kind="stable")] = np.arange(1, len(impression_scores) + 1)
        lines.append(f"{impression_id} [{','.join(map(str, ranks))}]\n")
    return "".join(lines)
