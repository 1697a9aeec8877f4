"""MIND's behaviors.tsv read column-wise: pyarrow's CSV reader in blocks, the tokens looked up where they lie.

MIND-large has 15.8 million impressions of about 37 candidates each; read a line at a time in Python that is most
of an hour. Here each block of lines is one Arrow table, and the candidates and histories are worked on as arrays:
the spaces of a column's bytes give its tokens, each token's id (up to 16 bytes) is read as two 64-bit words, and
the words are looked up in an open-addressing table of the corpus's ids (`IdTable`): exact, and no Python object
per token. Blocks are worked on by two threads (numpy and Arrow release the GIL) and taken in file order.

What this reading cannot judge (a malformed line, a bad token, an id it must refuse, a doubled space, an id longer
than 16 bytes) raises `NotClean`, and the caller reads the file again line by line, which names file, line and fault.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from once.api import UNLABELED, Impressions, Ragged

BEHAVIOR_COLUMNS = ("impression id", "user id", "time", "history", "impressions")
ID_BYTES = 16  # ids of at most this many UTF-8 bytes are read column-wise
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_SPACE, _DASH, _ZERO = ord(" "), ord("-"), ord("0")


class NotClean(Exception):
    """The column-wise reading met something only the line-by-line reading can judge and name."""


class IdTable:
    """Item ids (at most ID_BYTES bytes) -> item index, looked up for whole arrays of tokens at once: each id's bytes,
    zero-padded, are two little-endian 64-bit words, hashed into a table at most a quarter full (linear probing).

    Each slot's first word and item lie side by side (`entries`), so a lookup fetches one 16-byte entry per token
    where three arrays cost three cache misses (3x faster over MIND-large's 583 million candidates); the second
    word is fetched only when some id is longer than 8 bytes (MIND's are not)."""

    def __init__(self, index: dict[str, int]) -> None:
        raw = [item.encode() for item in index]
        if any(not 0 < len(r) <= ID_BYTES for r in raw):
            raise NotClean  # an id too long to be two words: the whole file is read line by line
        padded = np.frombuffer(b"".join(r.ljust(ID_BYTES, b"\0") for r in raw), dtype="<u8").reshape(-1, 2)
        low, high = padded[:, 0].copy(), padded[:, 1].copy()
        self.bits = max(4, int(np.ceil(np.log2(max(len(raw), 1)))) + 2)
        self.low = np.zeros(1 << self.bits, dtype=np.uint64)
        self.high = np.zeros(1 << self.bits, dtype=np.uint64)
        self.items = np.full(1 << self.bits, -1, dtype=np.int32)
        values = np.fromiter(index.values(), dtype=np.int32, count=len(index))
        slots = self._slots(low, high)
        pending = np.arange(len(raw))
        while len(pending):  # place each id at its first free slot; ids that hit one slot together go in turn
            free = self.items[slots[pending]] == -1
            taking = pending[free]
            at, first = np.unique(slots[taking], return_index=True)
            winners = taking[first]
            self.low[at], self.high[at], self.items[at] = low[winners], high[winners], values[winners]
            placed = np.zeros(len(raw), dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & ((1 << self.bits) - 1)
        pairs = np.stack([self.low, self.items.astype(np.int64).view(np.uint64)], axis=1)
        self.entries = pairs.view(np.complex128).ravel()  # a 16-byte type numpy gathers whole
        self.long = bool(self.high.any())

    def _slots(self, low: np.ndarray, high: np.ndarray | None) -> np.ndarray:
        mixed = low if high is None else low ^ (high * np.uint64(0xC2B2AE3D27D4EB4F))
        return ((mixed * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self.bits)).astype(np.intp)

    def lookup(self, low: np.ndarray, high: np.ndarray | None) -> np.ndarray:
        """(n,) item index of each id given as its two words (high None: every id fits the first), -1 where the id
        is not in the table."""
        slots = self._slots(low, high)
        entries = self.entries[slots].view(np.uint64).reshape(-1, 2)
        found = entries[:, 1].view(np.int64).astype(np.int32)
        differs = entries[:, 0] != low
        if high is not None:
            differs |= (self.high[slots] != high) if self.long else (high != 0)
        elif self.long:
            differs |= self.high[slots] != 0
        probing = np.flatnonzero((found >= 0) & differs)
        found[probing] = -1
        while len(probing):  # a slot taken by another id: look at the next one
            slots[probing] = (slots[probing] + 1) & ((1 << self.bits) - 1)
            at = slots[probing]
            items = self.items[at]
            second = np.uint64(0) if high is None else high[probing]
            hit = (items >= 0) & (self.low[at] == low[probing]) & (self.high[at] == second)
            found[probing[hit]] = items[hit]
            probing = probing[(items >= 0) & ~hit]
        return found


@dataclass
class _Tokens:
    """The space-separated tokens of a string column's rows, as byte ranges [starts, ends) into `data`."""

    data: np.ndarray  # the column's bytes, zero-padded by ID_BYTES
    starts: np.ndarray
    ends: np.ndarray
    per_row: np.ndarray

    @classmethod
    def of(cls, column) -> _Tokens:
        """The tokens between single spaces (what MIND writes). An empty row, a doubled space or one at a row's
        start or end makes an empty token, which `words` refuses."""
        offsets, data = _buffers(column)
        raw = data[offsets[0] :]
        rows = (offsets - offsets[0]).astype(np.int64)
        spaces = np.flatnonzero(raw == _SPACE)
        before = np.searchsorted(spaces, rows)  # spaces before each row's start (and before the last row's end)
        # a token starts at its row's start or after a space, and ends at a space or its row's end: the row bounds
        # go in among the spaces where they fall (an empty row is one empty token, its start equal to its end)
        starts = np.insert(spaces + 1, before[:-1], rows[:-1])
        ends = np.insert(spaces, before[1:], rows[1:])
        return cls(np.concatenate([raw, np.zeros(ID_BYTES, np.uint8)]), starts, ends, np.diff(before) + 1)

    def words(self, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The bytes [starts, ends) of each token as two zero-padded little-endian 64-bit words, the second None
        when every token fits the first (MIND's ids do); NotClean if a token is empty or longer than ID_BYTES."""
        lengths = ends - self.starts
        if len(lengths) and (lengths.min() < 1 or lengths.max() > ID_BYTES):
            raise NotClean
        words = np.ndarray((len(self.data) - 7,), dtype="<u8", buffer=self.data, strides=(1,))  # one at every byte
        low = words[self.starts] & _LOW_BYTES[np.minimum(lengths, 8)]
        if len(lengths) and lengths.max() > 8:
            return low, words[self.starts + 8] & _LOW_BYTES[np.clip(lengths - 8, 0, 8)]
        return low, None

    def text(self, token: int, ends: np.ndarray) -> str:
        return bytes(self.data[self.starts[token] : ends[token]]).decode("utf8", "replace")


@dataclass
class _Block:
    """One block's impressions, worked out independently of every other block."""

    impression_ids: np.ndarray  # str
    users: list[str]
    items: np.ndarray  # the kept candidates, in row order
    labels: np.ndarray
    per_row: np.ndarray  # kept candidates per row (0: every candidate was an unknown id being skipped)
    unknown: int  # candidate tokens skipped as unknown ids
    histories: _Histories


class ColumnReader:
    """The column-wise reading of one behaviors.tsv, item ids mapped through `index` (see the module's text)."""

    BLOCK_BYTES = 1 << 23  # 8 MB: larger blocks spent their time in the kernel, zeroing fresh pages for temporaries
    THREADS = 2

    def __init__(self, path: Path, index: dict[str, int], unknown_items: str) -> None:
        self.path, self.unknown_items = path, unknown_items
        self.table = IdTable(index)
        self.labeled: bool | None = None

    def read(self) -> tuple[Impressions, int]:
        """The split's impressions and the count of unknown ids skipped; raises NotClean."""
        import pyarrow as pa

        impression_ids = _Growing(np.dtype("U1"))  # 15.8 million ids: 4 bytes a character, not a str object each
        users: list[str] = []
        history_rows, counts = _Growing(np.int64), _Growing(np.int64)
        candidates, labels = _Growing(np.int32), _Growing(np.int8)
        histories = _HistoryStore()
        skipped = 0
        try:
            for block in self._blocks(histories.stored):
                kept = block.per_row > 0  # rows whose every candidate was an unknown id being skipped are dropped
                rows, unknown = histories.rows(block.histories)
                skipped += block.unknown + int(unknown.sum())  # dropped rows' history ids too, as line by line
                impression_ids.extend(block.impression_ids[kept])
                users.extend(block.users if kept.all() else [block.users[i] for i in np.flatnonzero(kept)])
                history_rows.extend(rows[kept])
                candidates.extend(block.items)
                labels.extend(block.labels)
                counts.extend(block.per_row[kept])
        except (pa.ArrowException, UnicodeDecodeError) as error:  # a malformed line, not UTF-8, an empty file
            raise NotClean from error
        if not users:
            raise NotClean
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts.array(), out=offsets[1:])
        impressions = Impressions(
            impression_ids.array(),
            users,
            histories.ragged(history_rows.array()),
            Ragged(candidates.array(), offsets),
            Ragged(labels.array(), offsets),
        )
        return impressions, skipped

    def _blocks(self, stored: dict[str, int]) -> Iterator[_Block]:
        """Each block of the file worked out, in file order, `THREADS` at a time; `stored` is the history store's
        text -> row map, which the main thread adds to as it takes the blocks in."""
        import pyarrow as pa
        import pyarrow.csv as csv

        reader = csv.open_csv(
            self.path,
            read_options=csv.ReadOptions(column_names=BEHAVIOR_COLUMNS, block_size=self.BLOCK_BYTES),
            parse_options=csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
            convert_options=csv.ConvertOptions(
                column_types=dict.fromkeys(BEHAVIOR_COLUMNS, pa.string()), strings_can_be_null=False
            ),
        )
        pending: deque = deque()
        with ThreadPoolExecutor(self.THREADS) as pool:
            for batch in reader:
                if self.labeled is None and len(batch):
                    self.labeled = _labeled(batch.column(4)[0].as_py())
                pending.append(pool.submit(self._block, batch, stored))
                if len(pending) > self.THREADS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _block(self, batch, stored: dict[str, int]) -> _Block:
        items, labels, per_row, unknown = self._candidates(batch.column(4))
        histories = _Histories.of(batch.column(3), self, stored)
        return _Block(_ids(batch.column(0)), _strings(batch.column(1)), items, labels, per_row, unknown, histories)

    def _candidates(self, column) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(items, labels, kept candidates per row, unknown tokens skipped) of a block's candidates column."""
        tokens = _Tokens.of(column)
        if self.labeled:
            ends = tokens.ends - 2  # NEWSID-L: the id ends before the dash
            dash, label = tokens.data[ends], tokens.data[ends + 1] - _ZERO
            if len(ends) and ((dash != _DASH).any() or (label > 1).any()):
                raise NotClean
            labels = label.astype(np.int8)
        else:
            ends = tokens.ends
            if (tokens.data == _DASH).any():
                raise NotClean  # a bare id with a dash reads as NEWSID-LABEL line by line
            labels = np.full(len(ends), UNLABELED, dtype=np.int8)
        items = self.table.lookup(*tokens.words(ends))
        known = self._known(items, tokens, ends)
        if known.all():
            return items, labels, tokens.per_row, 0
        owner = np.repeat(np.arange(len(column)), tokens.per_row)
        per_row = np.bincount(owner[known], minlength=len(column))
        return items[known], labels[known], per_row, int(len(known) - known.sum())

    def _known(self, items: np.ndarray, tokens: _Tokens, ends: np.ndarray) -> np.ndarray:
        """True for tokens whose id the table has. An id not there is one to skip only under unknown_items: skip and
        only when the token holds no other whitespace (str.split() would cut it); anything else is NotClean."""
        known = items >= 0
        if known.all():
            return known
        if self.unknown_items == "error":
            raise NotClean
        for token in np.flatnonzero(~known):
            text = tokens.text(token, ends)
            if text.split() != [text]:
                raise NotClean
        return known


@dataclass
class _Histories:
    """A block's distinct history columns, those the store lacked parsed: for each, its known items and the unknown
    ids it held."""

    texts: list[str]  # in order of first appearance in the block
    of_row: np.ndarray  # index into `texts` per row of the block
    stored: np.ndarray  # per text, its row in the store as the block was worked out; -1: parsed here
    items: np.ndarray  # the known items of every parsed text, text after text
    lengths: np.ndarray  # known items per text (0 where not parsed)
    unknown: np.ndarray  # unknown ids per text (skipped; 0 where not parsed)

    @classmethod
    def of(cls, column, reader: ColumnReader, stored: dict[str, int]) -> _Histories:
        """A block's history column, parsing only the texts `stored` (the store's text -> row map, read while the
        main thread adds to it: a text added meanwhile is parsed, and the main thread finds it stored) lacks: in
        MIND a user's impressions are spread over the file and carry one history, parsed once this way."""
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary
        texts = distinct.to_pylist()
        rows = np.fromiter(map(stored.get, texts, repeat(-1)), dtype=np.int64, count=len(texts))
        offsets, data = _buffers(distinct)
        spaces = data == _SPACE
        filled = np.flatnonzero((np.diff(offsets) > 0) & (rows < 0))  # an empty history has no token
        if (spaces[:-1] & spaces[1:]).any() or spaces[offsets[filled]].any() or spaces[offsets[filled + 1] - 1].any():
            # not single spaces between ids, as MIND writes them: split as str.split() would, in Python
            clean = [" ".join(t.split()) if row < 0 else "" for t, row in zip(texts, rows, strict=True)]
            filled = np.array([i for i, text in enumerate(clean) if text], dtype=np.intp)
            distinct = pa.array([clean[i] for i in filled], pa.string())
        elif len(filled) < len(texts):
            distinct = distinct.take(pa.array(filled))
        lengths = np.zeros(len(texts), dtype=np.int64)
        unknown = np.zeros(len(texts), dtype=np.int64)
        items = np.zeros(0, dtype=np.int32)
        if len(filled):
            tokens = _Tokens.of(distinct)
            items = reader.table.lookup(*tokens.words(tokens.ends))
            known = reader._known(items, tokens, tokens.ends)
            if known.all():
                lengths[filled] = tokens.per_row
            else:
                owner = np.repeat(np.arange(len(filled)), tokens.per_row)
                lengths[filled] = np.bincount(owner[known], minlength=len(filled))
                unknown[filled] = np.bincount(owner[~known], minlength=len(filled))
                items = items[known]
        return cls(texts, encoded.indices.to_numpy(zero_copy_only=False), rows, items, lengths, unknown)


class _HistoryStore:
    """Each distinct history column stored once, in order of first appearance in the file (as line by line)."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}  # history column -> its stored row
        self.unknown: dict[int, int] = {}  # stored row -> the unknown ids it held (rows with none left out)
        self.values, self.lengths = _Growing(np.int32), _Growing(np.int64)
        self.count = 0

    def rows(self, histories: _Histories) -> tuple[np.ndarray, np.ndarray]:
        """(stored row, unknown ids skipped) per row of a block, storing its histories not seen before."""
        texts, rows = histories.texts, histories.stored.copy()
        parsed = np.flatnonzero(rows < 0)  # stored since by an earlier block, or new
        rows[parsed] = np.fromiter(map(self.stored.get, [texts[i] for i in parsed], repeat(-1)), np.int64, len(parsed))
        new = rows < 0
        if new.any():
            self.values.extend(histories.items[np.repeat(new, histories.lengths)])
            self.lengths.extend(histories.lengths[new])
            rows[new] = self.count + np.arange(int(new.sum()))
            self.stored.update(zip([texts[i] for i in np.flatnonzero(new)], rows[new].tolist(), strict=True))
            holding = new & (histories.unknown > 0)
            self.unknown.update(zip(rows[holding].tolist(), histories.unknown[holding].tolist(), strict=True))
            self.count += int(new.sum())
        unknown = np.zeros(len(texts), dtype=np.int64)
        if self.unknown:
            unknown = np.fromiter(map(self.unknown.get, rows.tolist(), repeat(0)), dtype=np.int64, count=len(texts))
        return rows[histories.of_row], unknown[histories.of_row]

    def ragged(self, rows: np.ndarray) -> Ragged:
        offsets = np.zeros(self.count + 1, dtype=np.int64)
        np.cumsum(self.lengths.array(), out=offsets[1:])
        return Ragged(self.values.array(), offsets, rows)


def _labeled(first_row: str) -> bool:
    """Whether the file's candidates carry labels, judged by its first token as the line-by-line reading does."""
    item, dash, label = first_row.split(" ")[0].rpartition("-")
    if dash and label not in ("0", "1"):
        raise NotClean
    return bool(dash)


def _buffers(column) -> tuple[np.ndarray, np.ndarray]:
    """A string column's row offsets and its bytes up to the last row's end, as numpy views (no copy)."""
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32)[column.offset : column.offset + len(column) + 1]
    return offsets, np.frombuffer(data_buffer, np.uint8)[: offsets[-1]]


def _ids(column) -> np.ndarray:
    """A block's impression ids as a numpy str array, cut from the column's bytes without a Python object each
    (ASCII ids, as MIND's numbers are; others through Python strings)."""
    offsets, data = _buffers(column)
    if (data[offsets[0] :] >= 0x80).any():
        return np.array(column.to_pylist(), dtype=str)
    lengths = np.diff(offsets)
    width = max(1, int(lengths.max(initial=0)))
    at = offsets[:-1, None] + np.arange(width)
    chars = np.concatenate([data, np.zeros(width, np.uint8)])[at]
    chars[np.arange(width) >= lengths[:, None]] = 0
    return chars.view(f"S{width}").ravel().astype(str)


def _strings(column) -> list[str]:
    """A block's string column as Python strings, equal values sharing one object (user ids repeat)."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column)
    distinct = encoded.dictionary.to_pylist()
    return [distinct[i] for i in encoded.indices.to_numpy(zero_copy_only=False)]


class _Growing:
    """An array appended to block by block. Blocks are gathered into segments of SEGMENT_BYTES, which the
    allocator maps and unmaps whole, and the segments are copied into the result one by one, each freed as soon
    as it is copied: the peak is the result plus one segment, not the blocks plus their concatenation (2 GB more
    for MIND-large's training candidates). Growing one array in place was no cheaper: numpy's resize zero-fills."""

    SEGMENT_BYTES = 1 << 26

    def __init__(self, dtype: type | np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.blocks: list[np.ndarray] = []
        self.segments: list[np.ndarray] = []
        self.size = 0
        self.pending_bytes = 0  # in `blocks`

    def extend(self, chunk: np.ndarray) -> None:
        self.blocks.append(chunk)
        self.size += len(chunk)
        self.pending_bytes += chunk.nbytes
        if self.pending_bytes >= self.SEGMENT_BYTES:
            self.segments.append(np.concatenate(self.blocks))
            self.blocks, self.pending_bytes = [], 0

    def array(self) -> np.ndarray:
        """The values appended, as one array (this object is spent)."""
        parts = [*self.segments, *self.blocks]
        self.segments, self.blocks = [], []
        joined = np.empty(self.size, dtype=np.result_type(self.dtype, *(p.dtype for p in parts)))
        at = 0
        while parts:
            part = parts.pop(0)
            joined[at : at + len(part)] = part
            at += len(part)
        return joined
