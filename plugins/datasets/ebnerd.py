"""The EB-NeRD reader (Ekstra Bladet, RecSys Challenge 2024): `articles.parquet` beside `train/`, `validation/`
(and the test set's `test/`) folders of `behaviors.parquet` + `history.parquet`, as the demo, small and large
downloads and the unlabeled test set lay them out (schema: ebanalyse/ebnerd-benchmark, `ebrec.utils._constants`).

An impression's candidates are its `article_ids_inview`, the clicked ones (`article_ids_clicked`) its labels; a
test split without that column is unlabeled. A user's history is their `article_id_fixed` in the same split's
`history.parquet`: the 21 days before the split's behaviours, fixed for every impression of that split, as the
challenge defines it. `train` becomes ONCE's train split, `validation` its dev split. Items: `title`, `subtitle`
and `body` as text, `category_str` as the category and the first of `subcategory` as the subcategory.

pyarrow reads the files (column by column, only the columns used): it is the reference implementation of Parquet
in Python, gives list columns as flat arrays with offsets (ONCE's own ragged layout) without a Python object per
value, and streams row groups for the large split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from once.api import SPLITS, Corpus, DataError, Impressions, Items, Ragged
from once_plugins.datasets.parts import EbnerdOptions

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    from once.api import RecipeError

    raise RecipeError(
        "the ebnerd dataset reads Parquet with pyarrow, which is not installed",
        where="dataset",
        hint='Install it with: pip install "once[ebnerd]"',
    ) from None

FOLDERS = {"train": "train", "validation": "dev", "test": "test"}  # EB-NeRD's split folders -> ONCE's splits
ARTICLE_COLUMNS = ("article_id", "title", "subtitle", "body", "category_str", "subcategory")
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "article_ids_inview")
CLICKED = "article_ids_clicked"
HISTORY_COLUMNS = ("user_id", "article_id_fixed")
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


def read_table(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pa.Table:
    """The columns of a Parquet file; a missing file or column, or a file that is not Parquet, is an error naming it."""
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
    try:
        return pq.read_table(path, columns=[*columns, *(c for c in optional if c in schema.names)])
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


def read_articles(path: Path) -> tuple[Items, dict[int, int]]:
    with decoding(path):
        return _articles(read_table(path, ARTICLE_COLUMNS), path)


def _articles(table: pa.Table, path: Path) -> tuple[Items, dict[int, int]]:
    ids = integers(table, "article_id", path)
    subcategories = [str(first[0]) if first else "" for first in table.column("subcategory").to_pylist()]
    items = Items(
        ["", *map(str, ids)],
        {field: ["", *texts(table, field)] for field in ("title", "subtitle", "body")},
        {"category": ["", *texts(table, "category_str")], "subcategory": ["", *subcategories]},
        np.zeros(len(ids) + 1, bool),
    )
    return items, {int(article): row + 1 for row, article in enumerate(ids)}


def read_histories(path: Path) -> dict[int, np.ndarray]:
    table = read_table(path, HISTORY_COLUMNS)
    with decoding(path):
        users = integers(table, "user_id", path)
        values, offsets = id_lists(table, "article_id_fixed", path)
    return {int(user): values[offsets[i] : offsets[i + 1]] for i, user in enumerate(users)}


class Indexer:
    """Article ids -> item indices, with the recipe's choice for ids the article table lacks."""

    def __init__(self, index: dict[int, int], unknown: str) -> None:
        self.index, self.unknown, self.skipped = index, unknown, 0

    def __call__(self, ids: np.ndarray, where: str) -> np.ndarray:
        found = np.fromiter((self.index.get(int(i), 0) for i in ids), dtype=np.int64, count=len(ids))
        if (found == 0).any():
            if self.unknown == "error":
                first = int(ids[np.flatnonzero(found == 0)[0]])
                raise DataError(
                    f"article id {first} is not in articles.parquet",
                    where=where,
                    hint="Set dataset.unknown_items: skip to leave such ids out.",
                )
            self.skipped += int((found == 0).sum())
            found = found[found != 0]
        return found


def read_behaviors(folder: Path, indexer: Indexer) -> Impressions:
    path = folder / "behaviors.parquet"
    table = read_table(path, BEHAVIOR_COLUMNS, optional=(CLICKED,))
    histories = read_histories(folder / "history.parquet")
    labeled = CLICKED in table.column_names
    with decoding(path):
        impression_ids = integers(table, "impression_id", path)
        users = integers(table, "user_id", path)
        inview, inview_offsets = id_lists(table, "article_ids_inview", path)
        if labeled:
            clicked, clicked_offsets = id_lists(table, CLICKED, path)
    history_rows, candidate_rows, label_rows = [], [], []
    indexed_histories: dict[int, np.ndarray] = {}
    for row, user in enumerate(users):
        where = f"{path}: row {row + 1} (impression {impression_ids[row]})"
        user = int(user)
        if user not in indexed_histories:
            if user not in histories:
                raise DataError(f"user {user} has no row in history.parquet", where=where)
            indexed_histories[user] = indexer(histories[user], f"{folder / 'history.parquet'}: user {user}")
        shown = inview[inview_offsets[row] : inview_offsets[row + 1]]
        if not len(shown):
            raise DataError("article_ids_inview is empty", where=where)
        if labeled:
            chosen = set(clicked[clicked_offsets[row] : clicked_offsets[row + 1]].tolist())
            labels = np.array([1 if int(a) in chosen else 0 for a in shown], np.int8)
        else:
            labels = np.full(len(shown), -1, np.int8)
        known = np.fromiter((int(a) in indexer.index for a in shown), bool, count=len(shown))
        candidate_rows.append(indexer(shown, where))
        label_rows.append(labels if indexer.unknown == "error" else labels[known])
        history_rows.append(indexed_histories[user])
    return Impressions(
        [str(i) for i in impression_ids],
        [str(u) for u in users],
        Ragged.from_rows(history_rows),
        Ragged.from_rows(candidate_rows),
        Ragged.from_rows(label_rows, dtype=np.int8),
    )


def read_ebnerd(root: Path, unknown_items: str = "error", test: Path | None = None) -> Corpus:
    folders = split_folders(root)
    if test is not None:
        folders["test"] = test / "test" if (test / "test").is_dir() else test
    items, index = read_articles(root / "articles.parquet")
    if test is not None and (test / "articles.parquet").is_file():  # the test set ships its own, larger table
        items, index = read_articles(test / "articles.parquet")
    indexer = Indexer(index, unknown_items)
    splits = {split: read_behaviors(folder, indexer) for split, folder in folders.items()}
    train = splits["train"]
    items.in_train[np.union1d(train.candidates.values, train.history.values)] = True
    items.in_train[0] = False
    notes = [f"skipped {indexer.skipped} unknown article id(s) (unknown_items: skip)"] if indexer.skipped else []
    return Corpus(items, splits, notes)


class EbnerdDataset:
    """Reads EB-NeRD as Ekstra Bladet ships it."""

    def __init__(self, options: EbnerdOptions, context: object = None) -> None:
        self.root, self.test, self.unknown_items = options.path, options.test, options.unknown_items

    def fingerprint(self) -> str:
        """Name, size and modification time of every file read."""
        digest = hashlib.sha256(self.unknown_items.encode())
        folders = [self.root, *split_folders(self.root).values(), *([self.test] if self.test else [])]
        for folder in folders:
            for path in sorted(folder.rglob("*.parquet")) if folder == self.test else sorted(folder.glob("*.parquet")):
                stat = path.stat()
                digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_ebnerd(self.root, self.unknown_items, self.test)
