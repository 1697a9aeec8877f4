"""Training samples: for matching one per click, with K unclicked candidates drawn from the same impression; for
ranking every labeled candidate row, grouped by impression."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from once.data.prepare import Split
from once.data.tables import Ragged

T = TypeVar("T")


@dataclass
class TrainingSamples:
    """Every click of the training split: its impression row and the clicked item. Negatives are drawn from the
    split's own candidate and label arrays (memory-mapped), a block of samples at a time, so that no per-candidate
    copy of the split is ever made (MIND-large's training split has about half a billion candidates)."""

    impressions: np.ndarray
    positives: np.ndarray
    candidates: Ragged  # the split's candidates; labels.values aligned with them
    labels: np.ndarray
    unclicked: np.ndarray  # per impression, its candidates not clicked

    SAMPLES_PER_BLOCK = 1 << 16

    @classmethod
    def from_split(cls, split: Split) -> TrainingSamples:
        labels, candidates = split.labels.values, split.candidates
        clicked = np.flatnonzero(labels == 1)
        impressions = candidates.rows_at(clicked)
        return cls(impressions, candidates.values[clicked], candidates, labels, _unclicked_counts(split))

    def __len__(self) -> int:
        return len(self.positives)

    def negatives(self, k: int, num_items: int, rng: np.random.Generator) -> np.ndarray:
        """(samples, k) unclicked items drawn without replacement from each sample's impression, topped up at
        random from the whole catalogue when the impression has fewer than k.

        Each of a sample's unclicked candidates gets a uniform key, and the k with the smallest keys are taken,
        smallest first (a uniform ordered draw without replacement). They are found by k passes of a segmented
        minimum, not by sorting every key: MIND-large's epoch has about 760 million keys. The keys are drawn block
        after block of samples, which is the same stream as one draw for all of them."""
        chosen = np.zeros((len(self), k), dtype=np.int64)
        filled = np.zeros((len(self), k), dtype=bool)
        for start in range(0, len(self), self.SAMPLES_PER_BLOCK):
            block = slice(start, min(start + self.SAMPLES_PER_BLOCK, len(self)))
            impressions = self.impressions[block]
            counts, values = self.unclicked[impressions], self._unclicked_of(impressions)
            keys = rng.random(int(counts.sum()))
            firsts = np.cumsum(counts) - counts
            for rank in range(k):
                live = np.flatnonzero(counts > rank)  # samples with a candidate left to take
                if not len(live):
                    break
                # each live sample's segment runs to the next live one: what lies between is taken already (inf)
                starts = firsts[live]
                lowest = np.minimum.reduceat(keys, starts)
                spans = np.diff(starts, append=len(keys))
                at = starts[0] + np.flatnonzero(keys[starts[0] :] == np.repeat(lowest, spans))
                _, first = np.unique(np.searchsorted(starts, at, side="right") - 1, return_index=True)
                at = at[first]  # a tie keeps the earlier candidate, as a stable sort would
                chosen[block][live, rank] = values[at]
                filled[block][live, rank] = True
                keys[at] = np.inf
        missing = ~filled
        while missing.any():  # top up at random, never with the sample's own click
            chosen[missing] = rng.integers(1, num_items, int(missing.sum()))
            missing &= chosen == self.positives[:, None]
        return chosen

    def _unclicked_of(self, impressions: np.ndarray) -> np.ndarray:
        """The unclicked candidates of each sample's impression, in impression order, sample after sample."""
        offsets = self.candidates.offsets
        lengths = offsets[impressions + 1] - offsets[impressions]
        at = np.repeat(offsets[impressions] - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        at = at[self.labels[at] == 0]
        return self.candidates.values[at]


def _unclicked_counts(split: Split) -> np.ndarray:
    """Per impression, how many of its candidates were not clicked (label 0), counted a block of rows at a time."""
    offsets, labels = split.candidates.offsets, split.labels.values
    counts = np.zeros(len(split), dtype=np.int64)
    rows_per_block = 1 << 18
    for first in range(0, len(split), rows_per_block):
        last = min(first + rows_per_block, len(split))
        unclicked = labels[offsets[first] : offsets[last]] == 0
        row = np.repeat(np.arange(last - first), np.diff(offsets[first : last + 1]))
        counts[first:last] = np.bincount(row[unclicked], minlength=last - first)
    return counts


def training_batches(
    samples: TrainingSamples,
    history: Ragged,
    users: np.ndarray,
    negatives: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    max_history: int,
    *,
    full_width: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches in `order`: history (batch, width), candidates (batch, 1 + K) with the click first, users.

    Each batch is gathered by vectorised indexing. Its history is as wide as its longest history (at most
    `max_history`, the most recent items); `full_width` pads every batch to `max_history` instead, as
    implementations with fixed-size inputs do (bench/ measures the difference).
    """
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        impressions = samples.impressions[rows]
        width = max_history if full_width else max(1, min(max_history, int(history.lengths_of(impressions).max())))
        candidates = np.concatenate([samples.positives[rows, None], negatives[rows]], axis=1)
        yield {
            "history": torch.from_numpy(history.padded(impressions, width)),
            "candidates": torch.from_numpy(candidates),
            "users": torch.from_numpy(users[impressions]),
        }


@dataclass
class RankingRows:
    """Every labeled candidate of the training split as a row (impression, item, label), in impression order."""

    impressions: np.ndarray
    items: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_split(cls, split: Split) -> RankingRows:
        impression_of = np.repeat(np.arange(len(split)), split.candidates.lengths)
        labeled = split.labels.values >= 0
        return cls(impression_of[labeled], split.candidates.values[labeled], split.labels.values[labeled])

    def __len__(self) -> int:
        return len(self.items)

    def kept(self, unclicked_rate: float, rng: np.random.Generator) -> np.ndarray:
        """(rows,) True for the rows an epoch trains on: every click, and each unclicked row with probability
        `unclicked_rate` (all of them at 1)."""
        if unclicked_rate >= 1:
            return np.ones(len(self), bool)
        return (self.labels == 1) | (rng.random(len(self)) < unclicked_rate)


def ranking_batches(
    rows: RankingRows,
    kept: np.ndarray,
    history: Ragged,
    users: np.ndarray,
    rng: np.random.Generator,
    batch_size: int,
    max_history: int,
) -> tuple[int, Iterator[dict[str, torch.Tensor]]]:
    """(number of batches, batches): the kept rows of whole impressions in random impression order, about
    `batch_size` rows a batch (an impression's rows are never split, so its user is encoded once per batch).

    Each batch: history (impressions, width), candidates (impressions, most rows) padded with item 0, labels
    of the same shape (1 clicked, 0 not, -1 padding), users (impressions,).
    """
    impressions, counts = np.unique(rows.impressions[kept], return_counts=True)
    items, labels = rows.items[kept], rows.labels[kept]
    offsets = np.cumsum(counts) - counts
    order = rng.permutation(len(impressions))
    batch_of = (np.cumsum(counts[order]) - 1) // batch_size  # an impression joins the batch its last row falls in
    if not len(order):
        return 0, iter(())
    ends = np.r_[np.flatnonzero(np.diff(batch_of)) + 1, len(order)]

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for start, end in zip(np.r_[0, ends[:-1]], ends, strict=True):
            chosen = order[start:end]
            valid = np.arange(int(counts[chosen].max())) < counts[chosen][:, None]
            positions = np.where(valid, offsets[chosen][:, None] + np.arange(valid.shape[1]), 0)
            of = impressions[chosen]
            width = max(1, min(max_history, int(history.lengths_of(of).max())))
            yield {
                "history": torch.from_numpy(history.padded(of, width)),
                "candidates": torch.from_numpy(np.where(valid, items[positions], 0).astype(np.int64)),
                "labels": torch.from_numpy(np.where(valid, labels[positions], -1).astype(np.float32)),
                "users": torch.from_numpy(users[of]),
            }

    return len(ends), batches()


def prefetched(batches: Iterator[T], depth: int) -> Iterator[T]:
    """`batches`, built `depth` ahead in a background thread so that building overlaps with compute (depth 0:
    built on demand). Closing the returned iterator early stops the thread."""
    if depth == 0:
        yield from batches
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item: object) -> bool:
        """Queue `item` unless the consumer has stopped; False if it has."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(done)
        except BaseException as error:  # handed to the consumer, raised there
            hand_over(error)

    thread = threading.Thread(target=produce, name="once-batches", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
