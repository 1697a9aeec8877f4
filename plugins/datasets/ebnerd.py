"""The EB-NeRD reader (Ekstra Bladet, RecSys Challenge 2024): `articles.parquet` beside `train/`, `validation/`
(and the test set's `test/`) folders of `behaviors.parquet` + `history.parquet`, as the demo, small and large
downloads and the unlabeled test set lay them out (schema: ebanalyse/ebnerd-benchmark, `ebrec.utils._constants`).

An impression's candidates are its `article_ids_inview`, the clicked ones (`article_ids_clicked`) its labels; a
test split without that column is unlabeled. A user's history is their `article_id_fixed` in the same split's
`history.parquet`: the 21 days before the split's behaviours, fixed for every impression of that split, as the
challenge defines it. `train` becomes ONCE's train split, `validation` its dev split. Items: `title`, `subtitle`
and `body` as text, `category_str` as the category and the first of `subcategory` as the subcategory. The
pre-computed document embeddings (`artifacts/*/...parquet`: `article_id` and one column of vectors) named in
`dataset.embeddings` become item vector fields (recipe `items.vectors`); an article without a vector gets zeros.

pyarrow reads the files (column by column, only the columns used): it is the reference implementation of Parquet
in Python, gives list columns as flat arrays with offsets (ONCE's own ragged layout) without a Python object per
value, and streams row groups for the large split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from once.api import SPLITS, Corpus, DataError, ImpressionParts, Impressions, Items, Ragged, file_stamp
from once_plugins.datasets.parts import EbnerdOptions

FOLDERS = {"train": "train", "validation": "dev", "test": "test"}  # EB-NeRD's split folders -> ONCE's splits
ARTICLE_COLUMNS = ("article_id", "title", "subtitle", "body", "category_str", "subcategory")
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "article_ids_inview")
CLICKED = "article_ids_clicked"
HISTORY_COLUMNS = ("user_id", "article_id_fixed")
PART_ROWS = 1 << 18  # behaviour rows read, indexed and handed to the engine at a time
# what pyarrow raises on a damaged file: its own errors, and Python's when damaged bytes reach a conversion
DAMAGED = (pa.ArrowException, OSError, UnicodeDecodeError, ValueError, IndexError, OverflowError)


def split_folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(
            "EB-NeRD folder not found",
            where=str(root),
            hint="Point dataset.path at the unpacked ebnerd_demo, ebnerd_small or ebnerd_large folder.",
        )
    found = {FOLDERS[f.name]: f for f in root.iterdir() if f.is_dir() and f.name in FOLDERS}
    if "train" not in found:
        raise DataError("no train/ folder with behaviors.parquet and history.parquet", where=str(root))
    return {split: found[split] for split in SPLITS if split in found}


def columns_of(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[str]:
    """`columns` and those of `optional` the file has; a missing file or column, or a file that is not Parquet, is
    an error naming it."""
    if not path.is_file():
        raise DataError("file not found", where=str(path), hint="EB-NeRD's folders hold these files as downloaded.")
    try:
        schema = pq.read_schema(path)
    except DAMAGED as error:
        raise DataError(f"not a readable Parquet file ({error})", where=str(path)) from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DataError(
            f"column(s) {', '.join(missing)} missing (the file has {', '.join(schema.names)})", where=str(path)
        )
    return [*columns, *(c for c in optional if c in schema.names)]


def read_table(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pa.Table:
    """The columns of a Parquet file (see `columns_of`)."""
    names = columns_of(path, columns, optional)
    try:
        return pq.read_table(path, columns=names)
    except DAMAGED as error:
        raise DataError(f"cannot read the Parquet file ({error})", where=str(path)) from None


def read_parts(path: Path, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """(first row, table) of consecutive PART_ROWS-row parts of a Parquet file's columns (checked by `columns_of`),
    read a row group at a time: memory holds one part."""
    first = 0
    try:
        # without pre-buffering: it keeps every row group read so far (190 MB against 55 MB over 4 million rows)
        with pq.ParquetFile(path, pre_buffer=False) as parquet:
            for batch in parquet.iter_batches(batch_size=PART_ROWS, columns=columns):
                yield first, pa.Table.from_batches([batch])
                first += batch.num_rows
    except DAMAGED as error:
        raise DataError(f"cannot read the Parquet file ({error})", where=str(path)) from None


@contextmanager
def decoding(path: Path) -> Iterator[None]:
    """Values Arrow read but cannot give back (bytes that are not UTF-8, broken offsets in a damaged file): an
    error naming the file, never a traceback."""
    try:
        yield
    except DAMAGED as error:
        raise DataError(
            f"damaged values in the Parquet file ({type(error).__name__}: {error})", where=str(path)
        ) from None


def integers(table: pa.Table, column: str, path: Path) -> np.ndarray:
    array = table.column(column).combine_chunks()
    if not pa.types.is_integer(array.type) or array.null_count:
        raise DataError(f"column {column} must hold integers without nulls (it is {array.type})", where=str(path))
    return array.to_numpy(zero_copy_only=False).astype(np.int64)


def id_lists(table: pa.Table, column: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column as (flat values, offsets); a null list reads as empty."""
    array = table.column(column).combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) or not pa.types.is_integer(
        array.type.value_type
    ):
        raise DataError(f"column {column} must hold lists of article ids (it is {array.type})", where=str(path))
    array = array.fill_null(pa.scalar([], array.type))
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy(zero_copy_only=False).astype(np.int64)[offsets[0] : offsets[-1]]
    return values, offsets - offsets[0]


def texts(table: pa.Table, column: str) -> list[str]:
    return [value or "" for value in table.column(column).to_pylist()]


def read_articles(path: Path) -> tuple[Items, Indexer]:
    with decoding(path):
        return _articles(read_table(path, ARTICLE_COLUMNS), path)


def _articles(table: pa.Table, path: Path) -> tuple[Items, Indexer]:
    ids = integers(table, "article_id", path)
    subcategories = [str(first[0]) if first else "" for first in table.column("subcategory").to_pylist()]
    items = Items(
        ["", *map(str, ids)],
        {field: ["", *texts(table, field)] for field in ("title", "subtitle", "body")},
        {"category": ["", *texts(table, "category_str")], "subcategory": ["", *subcategories]},
        np.zeros(len(ids) + 1, bool),
    )
    return items, Indexer(ids)


class Indexer:
    """Article ids -> item indices (row in the article table + 1; 0: an id the table lacks), for whole arrays: a
    dense table over the id range (EB-NeRD's ids are below ten million: 40 MB), binary search when it is wider."""

    DENSE = 100_000_000

    def __init__(self, ids: np.ndarray) -> None:
        self.dense = None
        if len(ids) and ids.min() >= 0 and ids.max() < self.DENSE:
            self.dense = np.zeros(int(ids.max()) + 1, np.int32)
            self.dense[ids] = np.arange(1, len(ids) + 1)
        else:
            order = np.argsort(ids, kind="stable")
            self.keys, self.items = ids[order], (order + 1).astype(np.int32)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            inside = (ids >= 0) & (ids < len(self.dense))
            return np.where(inside, self.dense[np.where(inside, ids, 0)], 0).astype(np.int32, copy=False)
        if not len(self.keys):
            return np.zeros(len(ids), np.int32)
        at = np.minimum(np.searchsorted(self.keys, ids), len(self.keys) - 1)
        return np.where(self.keys[at] == ids, self.items[at], 0)


def rows_of(offsets: np.ndarray) -> np.ndarray:
    """The row of every value of a ragged array."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def kept(values: np.ndarray, offsets: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ragged array with only the values where `keep` holds."""
    if keep.all():
        return values, offsets
    counts = np.bincount(rows_of(offsets)[keep], minlength=len(offsets) - 1)
    return values[keep], np.concatenate([[0], np.cumsum(counts)])


class Reader:
    """Reads the splits against one article table, counting the unknown ids it skips (`unknown_items: skip`)."""

    def __init__(self, indexer: Indexer, unknown: str) -> None:
        self.indexer, self.unknown, self.skipped = indexer, unknown, 0

    def index(self, ids: np.ndarray, offsets: np.ndarray, where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item indices, offsets, which ids were known) of a ragged array of article ids; an unknown id is an
        error naming `where(row)` unless they are skipped."""
        found = self.indexer(ids)
        known = found != 0
        if not known.all():
            if self.unknown == "error":
                first = int(np.flatnonzero(~known)[0])
                raise DataError(
                    f"article id {int(ids[first])} is not in articles.parquet",
                    where=where(int(rows_of(offsets)[first])),
                    hint="Set dataset.unknown_items: skip to leave such ids out.",
                )
            self.skipped += int((~known).sum())
        return (*kept(found, offsets, known), known)

    def histories(self, path: Path) -> tuple[np.ndarray, Ragged]:
        """(users sorted, their histories as item indices) of a split's history.parquet, read PART_ROWS users at
        a time: what stays is 4 bytes per history item."""
        columns_of(path, HISTORY_COLUMNS)
        users, items, lengths = [], [], []
        for _, table in read_parts(path, list(HISTORY_COLUMNS)):
            with decoding(path):
                part_users = integers(table, "user_id", path)
                values, offsets = id_lists(table, "article_id_fixed", path)
            found, offsets, _ = self.index(values, offsets, lambda row, u=part_users: f"{path}: user {int(u[row])}")
            users.append(part_users)
            items.append(found)
            lengths.append(np.diff(offsets))
        users, items, lengths = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (users, items, lengths))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        if (users[1:] > users[:-1]).all():  # sorted by user, as the files are shipped
            return users, Ragged(items.astype(np.int32, copy=False), offsets)
        order = np.argsort(users, kind="stable")
        users, starts, lengths = users[order], offsets[:-1][order], lengths[order]
        gathered = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        items = items[gathered + np.arange(int(lengths.sum()))] if len(items) else items
        return users, Ragged(items.astype(np.int32, copy=False), np.concatenate([[0], np.cumsum(lengths)]))

    def survey(self, path: Path, users_sorted: np.ndarray, listed: np.ndarray | None) -> int:
        """Check a behaviors.parquet before anything is written: every impression's in-view ids (an unknown one is
        an error, or counted as skipped; none at all is an error) and user (one with no history row is an error);
        mark the in-view items of the training split in `listed`. Returns its row count."""
        columns_of(path, BEHAVIOR_COLUMNS)
        rows = 0
        for first, table in read_parts(path, list(BEHAVIOR_COLUMNS)):
            rows = first + table.num_rows
            with decoding(path):
                users = integers(table, "user_id", path)
                inview, offsets = id_lists(table, "article_ids_inview", path)

            def row_of(row: int, first: int = first, table: pa.Table = table) -> str:
                return f"row {first + row + 1}, impression {table.column('impression_id')[row]}"

            def where(row: int) -> str:
                return f"{path}: {row_of(row)}"

            empty = np.flatnonzero(np.diff(offsets) == 0)
            if len(empty):
                raise DataError("article_ids_inview is empty", where=where(int(empty[0])))
            owner = np.minimum(np.searchsorted(users_sorted, users), max(len(users_sorted) - 1, 0))
            missing = np.flatnonzero(users_sorted[owner] != users) if len(users_sorted) else np.arange(len(users))
            if len(missing):
                row = int(missing[0])
                raise DataError(
                    f"user {int(users[row])} (behaviors.parquet {row_of(row)}) has no row in history.parquet",
                    where=str(path.with_name("history.parquet")),
                )
            found, _, _ = self.index(inview, offsets, where)
            if listed is not None:
                listed[found] = True
        return rows

    def parts(self, folder: Path, users_sorted: np.ndarray, history: Ragged) -> Iterator[Impressions]:
        """A split's impressions, PART_ROWS behaviour rows at a time; every part indexes the same history table."""
        path = folder / "behaviors.parquet"
        columns = columns_of(path, BEHAVIOR_COLUMNS, optional=(CLICKED,))
        for _, table in read_parts(path, columns):
            yield self.part(path, table, users_sorted, history)

    def part(self, path: Path, table: pa.Table, users_sorted: np.ndarray, history: Ragged) -> Impressions:
        labeled = CLICKED in table.column_names
        with decoding(path):
            impression_ids = integers(table, "impression_id", path)
            users = integers(table, "user_id", path)
            inview, inview_offsets = id_lists(table, "article_ids_inview", path)
            if labeled:
                clicked, clicked_offsets = id_lists(table, CLICKED, path)

        owner = np.searchsorted(users_sorted, users)  # each user's history row (the survey found every user)
        if labeled:  # a candidate is clicked when (row, article) is among the row's clicked pairs
            shown = rows_of(inview_offsets) * 2**32 + (inview & 0xFFFFFFFF)
            chosen = np.sort(rows_of(clicked_offsets) * 2**32 + (clicked & 0xFFFFFFFF))
            near = np.minimum(np.searchsorted(chosen, shown), max(len(chosen) - 1, 0))
            labels = (chosen[near] == shown).astype(np.int8) if len(chosen) else np.zeros(len(shown), np.int8)
        else:
            labels = np.full(len(inview), -1, np.int8)
        found = self.indexer(inview)  # the survey checked the ids: an unknown one is being skipped
        known = found != 0
        candidates, candidate_offsets = kept(found, inview_offsets, known)
        width = max((len(str(int(i))) for i in (impression_ids.min(), impression_ids.max())), default=1)
        return Impressions(
            impression_ids.astype(f"U{width}"),  # as wide as the ids (astype(str) would give 21 characters)
            [str(u) for u in users],
            Ragged(history.values, history.offsets, owner),  # each user's history stored once
            Ragged(candidates, candidate_offsets),
            Ragged(labels[known], candidate_offsets),
        )


def read_vectors(path: Path, indexer: Indexer, rows: int) -> tuple[np.ndarray, int]:
    """(rows, dim) float32 vectors by item index from a document-embedding file, and how many items have none."""
    if not path.is_file():
        raise DataError("file not found", where=str(path), hint="Point dataset.embeddings at EB-NeRD's artifacts.")
    try:
        names = pq.read_schema(path).names
    except DAMAGED as error:
        raise DataError(f"not a readable Parquet file ({error})", where=str(path)) from None
    columns = [name for name in names if name != "article_id"]
    if "article_id" not in names or len(columns) != 1:
        raise DataError(
            f"expected article_id and one column of vectors (the file has {', '.join(names)})", where=str(path)
        )
    table = read_table(path, ("article_id", columns[0]))
    with decoding(path):
        ids = integers(table, "article_id", path)
        array = table.column(columns[0]).combine_chunks()
        kind = array.type
        listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
        if not listed or not pa.types.is_floating(kind.value_type) or array.null_count or array.flatten().null_count:
            raise DataError(
                f"column {columns[0]} must hold lists of numbers without nulls (it is {kind})", where=str(path)
            )
        flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if not len(lengths) or not lengths[0]:
        raise DataError("no vectors (the file is empty, or its first vector has no numbers)", where=str(path))
    dim = int(lengths[0])

    def where(row: int) -> str:
        return f"{path}: row {row + 1} (article {int(ids[row])})"

    if (lengths != dim).any():
        row = int(np.flatnonzero(lengths != dim)[0])
        raise DataError(f"vectors of different lengths ({dim} and {int(lengths[row])})", where=where(row))
    flat = flat.reshape(-1, dim)
    if not np.isfinite(flat).all():
        row = int(np.flatnonzero(~np.isfinite(flat).all(1))[0])
        raise DataError("a vector holds nan or inf", where=where(row))
    vectors = np.zeros((rows, dim), np.float32)
    found = indexer(ids)
    vectors[found[found != 0]] = flat[found != 0]
    covered = np.zeros(rows, bool)
    covered[found] = True
    return vectors, int(rows - 1 - covered[1:].sum())


def read_ebnerd(
    root: Path, unknown_items: str = "error", test: Path | None = None, embeddings: dict[str, Path] | None = None
) -> Corpus:
    folders = split_folders(root)
    articles = root / "articles.parquet"
    if test is not None:
        folders["test"] = test / "test" if (test / "test").is_dir() else test
        if (test / "articles.parquet").is_file():  # the test set ships its own, larger article table
            articles = test / "articles.parquet"
    items, indexer = read_articles(articles)
    reader = Reader(indexer, unknown_items)
    splits = {}
    for split, folder in folders.items():
        users, history = reader.histories(folder / "history.parquet")
        listed = items.in_train if split == "train" else None
        rows = reader.survey(folder / "behaviors.parquet", users, listed)
        if listed is not None:
            listed[history.values] = True
        splits[split] = ImpressionParts(partial(reader.parts, folder, users, history), rows)
    items.in_train[0] = False
    notes = [f"skipped {reader.skipped} unknown article id(s) (unknown_items: skip)"] if reader.skipped else []
    for name, path in (embeddings or {}).items():
        items.vectors[name], lacking = read_vectors(path, indexer, len(items.ids))
        if lacking:
            notes.append(f"{path}: {lacking} of {len(items.ids) - 1} articles have no vector (zeros)")
    return Corpus(items, splits, notes)


class EbnerdDataset:
    """Reads EB-NeRD as Ekstra Bladet ships it."""

    def __init__(self, options: EbnerdOptions, context: object = None) -> None:
        self.root, self.test, self.unknown_items = options.path, options.test, options.unknown_items
        self.embeddings = options.embeddings

    def fingerprint(self) -> str:
        """Name, size and modification time of every file read."""
        digest = hashlib.sha256(self.unknown_items.encode())
        folders = [self.root, *split_folders(self.root).values(), *([self.test] if self.test else [])]
        for folder in folders:
            for path in sorted(folder.rglob("*.parquet")) if folder == self.test else sorted(folder.glob("*.parquet")):
                digest.update(f"{path.relative_to(folder)}:{file_stamp(path)}\n".encode())
        for name, path in self.embeddings.items():
            digest.update(f"{name}={path}:{file_stamp(path)}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_ebnerd(self.root, self.unknown_items, self.test, self.embeddings)
