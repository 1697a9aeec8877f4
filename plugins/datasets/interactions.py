"""Any interaction log with an item table (books, products, videos): impressions made by a documented protocol.

The log has one row per (user, item) interaction, optionally with a time, a rating or a click label; the item table
one row per item with its text and category columns (column names in the recipe). Files are CSV, TSV, JSON lines
or Parquet, optionally gzipped, read by pyarrow (one reader for the four formats, columnar, without a Python
object per value).

Protocol:
1. Clicks: every row, or the rows whose rating is at least `min_rating`, or whose label is 1; the other rows are
   the user's logged non-clicks (for `negatives: logged`).
2. `k_core`: users and items with fewer clicks are dropped, repeatedly, until none is left to drop.
3. Each user's clicks are ordered by time (then by their order in the file).
4. Impressions: one per click at position i >= 1 of a user's sequence, its history the clicks before it (the most
   recent `max_history`). `leave-last-out` (as Legommenders and the shared Goodreads builder do): a user's last
   click is a test impression, the one before it a dev impression, the earlier ones train impressions; users
   with fewer than 3 clicks are left out. `temporal`: clicks after the time that leaves `test_share` of all
   clicks test, those between it and the one leaving `dev_share` more validate, the rest train.
5. Candidates: the click plus unclicked items, `train_negatives` for train impressions and `eval_negatives` for
   dev and test ones (0: every item the user never clicked, full ranking), in random order. They are drawn from
   the catalogue minus every item the user clicked: uniformly, or in proportion to the item's clicks in the whole
   log plus one (`popularity`, as impressions show popular items; the "sampled negatives" protocol), or from the
   user's logged non-clicks (`logged`, topped up by popularity when a user has too few).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from once.api import Corpus, DataError, Impressions, Items, Ragged
from once_plugins.datasets.parts import InteractionsOptions

DAMAGED = (pa.ArrowException, OSError, UnicodeDecodeError, ValueError, IndexError, OverflowError)
FULL_RANKING_LIMIT = 50_000_000  # candidate rows full ranking may make before it is refused


def table_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, kind in ((".parquet", "parquet"), (".csv", "csv"), (".tsv", "tsv"), (".jsonl", "json")):
        if name.endswith(suffix):
            return kind
    if name.endswith((".json", ".ndjson")):
        return "json"
    raise DataError(
        "cannot tell the file's format from its name", where=str(path), hint="Name it .csv, .tsv, .jsonl or .parquet."
    )


def read_columns(path: Path, columns: list[str], key: str) -> pa.Table:
    """The named columns of a log or item table; a missing file or column, or a damaged file, is an error naming it."""
    if not path.is_file():
        raise DataError("file not found", where=str(path), hint=f"Check {key} in the recipe.")
    kind = table_format(path)
    try:
        if kind == "parquet":
            table = pq.read_table(path)
        elif kind == "json":
            table = pajson.read_json(path)
        else:
            options = pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True)
            strings = pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))
            table = pacsv.read_csv(path, parse_options=options, convert_options=strings)
        names = list(table.column_names)  # a damaged header may not decode
    except DAMAGED as error:
        raise DataError(f"cannot read this {kind} file: {error}", where=str(path)) from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(
            f"no column {', '.join(map(repr, missing))}",
            where=str(path),
            hint=f"Its columns: {', '.join(names)}. Name yours with {key}.",
        )
    return table.select(columns)


def strings(table: pa.Table, column: str) -> np.ndarray:
    """A column as text (numbers become their digits, a list of texts one text), empty for nulls."""
    values = table.column(column)
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):  # Amazon's description: paragraphs
        values = pc.binary_join(pc.cast(values, pa.list_(pa.string())), " ")
    elif not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    return np.asarray(pc.fill_null(values, "").to_pylist(), dtype=object)


def numbers(table: pa.Table, column: str, path: Path, time_format: str | None = None) -> np.ndarray:
    """A numeric, timestamp or (with `time_format`) text time column as float64; an error names the first bad row."""
    values = table.column(column)
    try:
        if pa.types.is_timestamp(values.type):
            values = pc.cast(values, pa.int64())
        elif time_format and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(pc.strptime(values, format=time_format, unit="s"), pa.int64())
        result = np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except DAMAGED:
        result = None
    if result is None or np.isnan(result).any():
        raw = values.to_pylist()
        row = next((i for i, v in enumerate(raw) if not _is_number(v, time_format)), 0)
        expected = f"a time as '{time_format}'" if time_format else "a number"
        raise DataError(f"column '{column}' holds {raw[row]!r}, not {expected}", where=f"{path}: row {row + 1}")
    return result


def _is_number(value: object, time_format: str | None) -> bool:
    if value is None:
        return False
    if time_format and isinstance(value, str):
        from datetime import datetime

        try:
            datetime.strptime(value, time_format)
            return True
        except ValueError:
            return False
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


@contextmanager
def decoding(path: Path) -> Iterator[None]:
    """Values Arrow read but cannot give back (bytes that are not UTF-8 in a damaged file): an error naming the
    file, never a traceback."""
    try:
        yield
    except DAMAGED as error:
        raise DataError(f"damaged values ({type(error).__name__}: {error})", where=str(path)) from None


def read_items(path: Path, columns, key: str = "dataset.item_columns") -> Items:
    wanted = [columns.id, *columns.text, *columns.categories]
    table = read_columns(path, list(dict.fromkeys(wanted)), key)
    with decoding(path):
        return _items(table, columns, path)


def _items(table: pa.Table, columns, path: Path) -> Items:
    ids = strings(table, columns.id)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        duplicate = unique[np.argmax(counts > 1)]
        row = int(np.flatnonzero(ids == duplicate)[1])
        raise DataError(f"item id '{duplicate}' is listed twice", where=f"{path}: row {row + 1}")
    return Items(
        ["", *ids.tolist()],
        {field: ["", *strings(table, field).tolist()] for field in columns.text},
        {field: ["", *strings(table, field).tolist()] for field in columns.categories},
        np.zeros(len(ids) + 1, bool),
    )


class Log:
    """The log's clicks (and logged non-clicks) as item indices and user indices, in file order."""

    def __init__(self, options: InteractionsOptions, item_ids: list[str]) -> None:
        columns, path = options.columns, options.log
        wanted = [columns.user, columns.item, *(c for c in (columns.time, columns.rating, columns.label) if c)]
        table = read_columns(path, list(dict.fromkeys(wanted)), "dataset.columns")
        with decoding(path):
            item_column, users = strings(table, columns.item), strings(table, columns.user)
        self.items = self._index(item_column, item_ids, options, path)
        self.user_ids, self.users = np.unique(users, return_inverse=True)
        self.time = numbers(table, columns.time, path, options.time_format) if columns.time else np.zeros(len(users))
        if columns.rating and options.min_rating is not None:
            self.clicked = numbers(table, columns.rating, path) >= options.min_rating
        elif columns.label:
            self.clicked = numbers(table, columns.label, path) > 0
        else:
            self.clicked = np.ones(len(users), bool)
        known = self.items > 0
        self.skipped = int((~known).sum())
        self.users, self.items, self.time, self.clicked = (
            a[known] for a in (self.users, self.items, self.time, self.clicked)
        )

    @staticmethod
    def _index(ids: np.ndarray, item_ids: list[str], options: InteractionsOptions, path: Path) -> np.ndarray:
        table = np.asarray(item_ids[1:], dtype=object)
        order = np.argsort(table, kind="stable")
        keys = table[order]
        at = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
        found = np.where(keys[at] == ids, order[at] + 1, 0) if len(keys) else np.zeros(len(ids), np.int64)
        if options.unknown_items == "error" and (found == 0).any():
            row = int(np.flatnonzero(found == 0)[0])
            raise DataError(
                f"item id '{ids[row]}' is not in the item table {options.items}",
                where=f"{path}: row {row + 1}",
                hint="Set dataset.unknown_items: skip to leave such rows out.",
            )
        return found.astype(np.int64)


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """(clicks,) True for the clicks whose user and item both keep at least k clicks, repeatedly."""
    keep = np.ones(len(users), bool)
    while k > 1:
        user_counts = np.bincount(users[keep], minlength=users.max(initial=0) + 1)
        item_counts = np.bincount(items[keep], minlength=items.max(initial=0) + 1)
        drop = keep & ((user_counts[users] < k) | (item_counts[items] < k))
        if not drop.any():
            break
        keep &= ~drop
    return keep


class Sampler:
    """Unclicked candidates for impressions: never an item the user clicked, never twice in one impression."""

    def __init__(self, options: InteractionsOptions, log: Log, num_items: int, rng: np.random.Generator) -> None:
        self.rng, self.num_items, self.kind = rng, num_items, options.negatives
        clicks = log.clicked
        weights = np.ones(num_items)
        if self.kind != "uniform":
            weights = np.bincount(log.items[clicks], minlength=num_items).astype(np.float64) + 1
        weights[0] = 0
        self.cumulative = np.cumsum(weights / weights.sum())
        self.clicked_keys = np.unique(log.users[clicks] * num_items + log.items[clicks])
        pools = np.unique(log.users[~clicks] * num_items + log.items[~clicks])
        pools = pools[~np.isin(pools, self.clicked_keys)]  # an item clicked once is never a negative of that user
        self.pool_users, self.pool_items = pools // num_items, pools % num_items

    def draw(self, users: np.ndarray, k: int) -> np.ndarray:
        """(len(users), k) unclicked items for each impression's user."""
        chosen = np.zeros((len(users), k), np.int64)
        missing = np.ones(chosen.shape, bool)
        if self.kind == "logged":
            self._from_pools(users, chosen, missing)
        while missing.any():
            drawn = np.searchsorted(self.cumulative, self.rng.random(int(missing.sum())), side="right")
            chosen[missing] = np.minimum(drawn, self.num_items - 1)
            missing = self._invalid(users, chosen)
        return chosen

    def _from_pools(self, users: np.ndarray, chosen: np.ndarray, missing: np.ndarray) -> None:
        """Fill each row with the user's logged non-clicks, a random k of them (fewer when the user has fewer)."""
        order = np.lexsort((self.rng.random(len(self.pool_users)), self.pool_users))
        pool_users, pool_items = self.pool_users[order], self.pool_items[order]
        starts = np.searchsorted(pool_users, users)
        counts = np.searchsorted(pool_users, users, side="right") - starts
        size = np.maximum(counts, 1)
        first = self.rng.integers(0, size)  # a random start per row, so that the user's impressions differ
        for column in range(chosen.shape[1]):
            take = counts > column
            chosen[take, column] = pool_items[(starts + (first + column) % size)[take]]
            missing[take, column] = False
        missing |= self._invalid(users, chosen) & ~missing

    def _invalid(self, users: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        keys = users[:, None] * self.num_items + chosen
        invalid = np.isin(keys, self.clicked_keys) | (chosen == 0)
        order = np.argsort(chosen, axis=1, kind="stable")
        ranked = np.take_along_axis(chosen, order, 1)
        repeated = np.zeros(chosen.shape, bool)
        repeated[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        np.put_along_axis(invalid, order, np.take_along_axis(invalid, order, 1) | repeated, 1)
        return invalid


def read_interactions(options: InteractionsOptions) -> Corpus:
    items = read_items(options.items, options.item_columns)
    num_items = len(items.ids)
    log = Log(options, items.ids)
    clicks = np.flatnonzero(log.clicked)
    clicks = clicks[k_core(log.users[clicks], log.items[clicks], options.k_core)]
    clicks = clicks[np.lexsort((clicks, log.time[clicks], log.users[clicks]))]
    users, clicked_items, times = log.users[clicks], log.items[clicks], log.time[clicks]
    starts = np.searchsorted(users, users)  # each click's user's first click
    position = np.arange(len(users)) - starts
    length = np.bincount(users, minlength=len(log.user_ids))[users]
    split = np.full(len(users), "", dtype=object)
    if options.split == "leave-last-out":
        eligible = length >= 3
        split[eligible & (position >= 1) & (position <= length - 3)] = "train"
        split[eligible & (position == length - 2)] = "dev"
        split[eligible & (position == length - 1)] = "test"
    else:
        dev_cut, test_cut = np.quantile(times, [1 - options.dev_share - options.test_share, 1 - options.test_share])
        later = position >= 1
        split[later & (times < dev_cut)] = "train"
        split[later & (times >= dev_cut) & (times < test_cut)] = "dev"
        split[later & (times >= test_cut)] = "test"
    rng = np.random.default_rng(options.seed)
    sampler = Sampler(options, log, num_items, rng)
    splits = {}
    for name in ("train", "dev", "test"):
        rows = np.flatnonzero(split == name)
        if not len(rows):
            raise DataError(
                f"the protocol leaves no {name} impressions",
                where=str(options.log),
                hint="Users need at least 3 clicks for leave-last-out; lower dataset.k_core or change dataset.split.",
            )
        splits[name] = impressions(rows, users, clicked_items, starts, position, log, sampler, options, name)
    items.in_train[splits["train"].candidates.values] = items.in_train[splits["train"].history.values] = True
    items.in_train[0] = False
    notes = [f"skipped {log.skipped} log row(s) with an unknown item id (unknown_items: skip)"] if log.skipped else []
    return Corpus(items, splits, notes)


def impressions(
    rows: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    starts: np.ndarray,
    position: np.ndarray,
    log: Log,
    sampler: Sampler,
    options: InteractionsOptions,
    name: str,
) -> Impressions:
    lengths = np.minimum(position[rows], options.max_history)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    first = np.repeat(rows - lengths - offsets[:-1], lengths)
    history = items[first + np.arange(int(offsets[-1]))]
    k = options.train_negatives if name == "train" else options.eval_negatives
    owners = users[rows]
    if k == 0:  # full ranking: every item the user never clicked
        if len(rows) * sampler.num_items > FULL_RANKING_LIMIT:
            raise DataError(
                f"full ranking would make {len(rows) * sampler.num_items:,} candidate rows for the {name} split",
                where="dataset.eval_negatives",
                hint="Draw negatives instead (dataset.eval_negatives: 99), or keep fewer users (k_core).",
            )
        everything = np.broadcast_to(np.arange(1, sampler.num_items), (len(rows), sampler.num_items - 1))
        unclicked = ~np.isin(owners[:, None] * sampler.num_items + everything, sampler.clicked_keys)
        negatives, counts = everything[unclicked], unclicked.sum(1)
    else:
        negatives, counts = sampler.draw(owners, k).ravel(), np.full(len(rows), k)
    per_row = counts + 1
    candidate_offsets = np.concatenate([[0], np.cumsum(per_row)])
    values = np.empty(int(candidate_offsets[-1]), np.int64)
    labels = np.zeros(len(values), np.int8)
    click_at = candidate_offsets[:-1] + sampler.rng.integers(0, per_row)  # the click at a random place
    others = np.ones(len(values), bool)
    others[click_at] = False
    values[click_at], labels[click_at] = items[rows], 1
    values[others] = negatives  # drawn in random order already
    return Impressions(
        [f"{name}-{i + 1}" for i in range(len(rows))],
        log.user_ids[owners].tolist(),
        Ragged(history, offsets),
        Ragged(values, candidate_offsets),
        Ragged(labels, candidate_offsets),
    )


class InteractionsDataset:
    """Reads an interaction log and an item table, and makes impressions by the protocol above."""

    def __init__(self, options: InteractionsOptions, context: object = None) -> None:
        self.options = options

    def fingerprint(self) -> str:
        """The options, and the size and modification time of both files."""
        digest = hashlib.sha256(json.dumps(self.options.model_dump(mode="json"), sort_keys=True).encode())
        for path in (self.options.log, self.options.items):
            stat = path.stat() if path.exists() else None
            digest.update(f"{path}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_interactions(self.options)
