"""Training samples: one per click, with K unclicked candidates drawn from the same impression."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from once.data.prepare import Split
from once.data.tables import Ragged


@dataclass
class TrainingSamples:
    """Every click of the training split: its impression row and the clicked item."""

    impressions: np.ndarray
    positives: np.ndarray
    unclicked: Ragged  # per impression, the candidates not clicked

    @classmethod
    def from_split(cls, split: Split) -> TrainingSamples:
        labels, candidates = split.labels.values, split.candidates.values
        impression_of = np.repeat(np.arange(len(split)), split.candidates.lengths)
        clicked = labels == 1
        not_clicked = labels == 0
        offsets = np.zeros(len(split) + 1, dtype=np.int64)
        np.cumsum(np.bincount(impression_of[not_clicked], minlength=len(split)), out=offsets[1:])
        return cls(impression_of[clicked], candidates[clicked], Ragged(candidates[not_clicked], offsets))

    def __len__(self) -> int:
        return len(self.positives)

    def negatives(self, k: int, num_items: int, rng: np.random.Generator) -> np.ndarray:
        """(samples, k) unclicked items drawn without replacement from each sample's impression, topped up at
        random from the whole catalogue when the impression has fewer than k."""
        counts = self.unclicked.lengths[self.impressions]
        owner = np.repeat(np.arange(len(self)), counts)  # sample of each drawn entry
        segment_start = np.repeat(np.cumsum(counts) - counts, counts)
        position = np.arange(len(owner)) - segment_start
        values = self.unclicked.values[np.repeat(self.unclicked.offsets[self.impressions], counts) + position]
        order = np.lexsort((rng.random(len(owner)), owner))  # shuffle within each sample's segment
        keep = position < k  # positions stay segment-relative since `owner` is already sorted
        chosen = np.zeros((len(self), k), dtype=np.int64)
        filled = np.zeros((len(self), k), dtype=bool)
        chosen[owner[keep], position[keep]] = values[order][keep]
        filled[owner[keep], position[keep]] = True
        missing = ~filled
        while missing.any():  # top up at random, never with the sample's own click
            chosen[missing] = rng.integers(1, num_items, int(missing.sum()))
            missing &= chosen == self.positives[:, None]
        return chosen


def training_batches(
    samples: TrainingSamples,
    histories: np.ndarray,
    users: np.ndarray,
    negatives: np.ndarray,
    order: np.ndarray,
    batch_size: int,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches in `order`: history (batch, max_history), candidates (batch, 1 + K) with the click first, users."""
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        impressions = samples.impressions[rows]
        candidates = np.concatenate([samples.positives[rows, None], negatives[rows]], axis=1)
        yield {
            "history": torch.from_numpy(histories[impressions]),
            "candidates": torch.from_numpy(candidates),
            "users": torch.from_numpy(users[impressions]),
        }
