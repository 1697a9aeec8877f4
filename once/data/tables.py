"""What a dataset plugin returns: items with their fields, and impressions per split."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "dev", "test")
UNLABELED = -1


@dataclass
class Ragged:
    """Variable-length integer rows stored as one flat array plus offsets (row i = values[offsets[i]:offsets[i+1]]).

    With `rows`, row i is the stored row `rows[i]`: rows that repeat share one copy (EB-NeRD's and MIND's history is
    the same for every impression of a user in a split, so it is stored once per user). `values` are then the stored
    values, each shared row's once: what holds for the set of items (which items occur) holds for them.

    Item indices are stored as int32 (MIND-large's splits hold about 600 million candidates); `padded` hands rows
    out as int64, the index type torch takes.
    """

    values: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray | None = None

    @classmethod
    def from_rows(cls, rows: list[list[int]], dtype: type = np.int32) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((v for r in rows for v in r), dtype=dtype, count=int(offsets[-1]))
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.rows is None else len(self.rows)

    def __getitem__(self, row: int) -> np.ndarray:
        stored = row if self.rows is None else self.rows[row]
        return self.values[self.offsets[stored] : self.offsets[stored + 1]]

    @property
    def lengths(self) -> np.ndarray:
        lengths = np.diff(self.offsets)
        return lengths if self.rows is None else lengths[self.rows]

    def lengths_of(self, rows: np.ndarray) -> np.ndarray:
        """The lengths of `rows` alone (a batch's: `lengths` computes every row's, 15.8 million at MIND-large)."""
        stored = rows if self.rows is None else self.rows[rows]
        return self.offsets[stored + 1] - self.offsets[stored]

    def rows_at(self, positions: np.ndarray) -> np.ndarray:
        """The row holding each value position (a position in `values`; rows not shared)."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def width(self, limit: int) -> int:
        """Columns needed to hold every row, capped at `limit` (at least 1): no all-padding columns."""
        return max(1, min(limit, int(self.lengths.max(initial=0))))

    def all_padded(self, limit: int) -> np.ndarray:
        """Every row as a matrix of `width(limit)` columns (see `padded`)."""
        return self.padded(np.arange(len(self)), self.width(limit))

    def padded(self, rows: np.ndarray, width: int, fill: int = 0) -> np.ndarray:
        """Rows as a (len(rows), width) int64 matrix, left-aligned; longer rows keep their last `width` values."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        ends = self.offsets[rows + 1]
        lengths = np.minimum(ends - self.offsets[rows], width)
        columns = np.arange(width)
        valid = columns < lengths[:, None]
        if not len(self.values):
            return np.full((len(rows), width), fill, dtype=np.int64)
        positions = np.minimum((ends - lengths)[:, None] + columns, len(self.values) - 1)
        return np.where(valid, self.values[positions], fill).astype(np.int64)


@dataclass
class Items:
    """Item ids and their raw fields; index 0 is the padding item."""

    ids: list[str]
    text: dict[str, list[str]]  # e.g. title, abstract
    categories: dict[str, list[str]]  # e.g. category, subcategory
    in_train: np.ndarray  # bool per item: listed in the training split (the tokenizer's vocabulary comes from these)
    # text field -> per item, the entities linked in that text as (entity id, surface form) pairs (MIND's
    # title/abstract entities); a recipe's items.entities turns them into token-aligned entity ids
    entities: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    entity_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # entity id -> pretrained vector (TransE)
    # vector field -> (items, dim) float32 pretrained item vectors (EB-NeRD's document embeddings); row 0 and items
    # without one are zero; a recipe's items.vectors keeps them as item features
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Impressions:
    """One split's impressions: who saw which candidates after which history, and what they clicked."""

    impression_ids: Sequence[str]  # a list, or a numpy str array (MIND's reader: 15.8 million at MIND-large)
    user_ids: list[str]
    history: Ragged  # item indices, oldest first
    candidates: Ragged  # item indices
    labels: Ragged  # 1 clicked, 0 not, -1 unlabeled (e.g. the MIND-large test split)
    synthetic: np.ndarray | None = None  # per impression: generated items appended to the history (GENRE)

    def __len__(self) -> int:
        return len(self.impression_ids)

    def parts(self) -> Iterator[Impressions]:
        """The split as consecutive parts: an in-memory split is one part (see `ImpressionParts`)."""
        yield self


@dataclass
class ImpressionParts:
    """A split read part by part, for splits too large to hold (EB-NeRD-large's test set: 13.5 million
    impressions): `parts()` reads the files again each time it is called and yields `Impressions` of consecutive
    rows, so memory holds one part. The engine writes the parts to its cache as they come; export and GENRE read
    them again the same way.

    Parts may share one stored history table (their `history.values` and `history.offsets` the same arrays,
    `history.rows` indexing it: one row per user): it is stored once, whatever parts come between them.
    """

    read: Callable[[], Iterator[Impressions]]
    rows: int  # impressions in all parts (progress bars)

    def __len__(self) -> int:
        return self.rows

    def parts(self) -> Iterator[Impressions]:
        return self.read()


SplitSource = Impressions | ImpressionParts  # what a dataset gives per split: both have `parts()` and a length


@dataclass
class Corpus:
    """A dataset as read from disk."""

    items: Items
    splits: dict[str, SplitSource]
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user (e.g. skipped ids)
