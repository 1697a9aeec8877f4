"""The PENS reader (Microsoft's PErsonalized News headlineS, Ao et al., ACL 2021): one folder with `news.tsv`,
`train.tsv`, `valid.tsv` and `personalized_test.tsv`, as https://msnews.github.io/pens.html ships them.

Every file is tab-separated with a header row (columns are found by name, in any case, in any order; columns this
reader does not use may be there or not) and is read as pandas reads it, which is how the reference code
(LLluoling/PENS-Personalized-News-Headline-Generation) reads it: a field may be double-quoted (a quoted field
may hold tabs and line breaks), blank lines are skipped.

Protocol:
1. Items, from news.tsv (`News ID`, `Category`, `Topic`, `Headline`, `News body`): `title` (the headline) and
   `body` as text fields, `category` and `topic` as categories. An empty body is empty text, an empty category
   none. The entity columns (`Title entity`, `Entity content`) are not read. A repeated news id keeps its first
   row (a note counts the others).
2. Impressions: each row of train.tsv is one training impression, each row of valid.tsv one dev impression
   (early stopping and the dev metrics). The history is `ClicknewsID` (space-separated, oldest first, kept
   whole: `train.max_history` keeps the most recent), the candidates `pos` then `neg` (space-separated), labelled
   1 for `pos` and 0 for `neg`. An impression's id is its row number in the file (1: the first row after the
   header). A row with neither `pos` nor `neg` ids has nothing to rank: it is left out, with a note.
3. Items seen in train.tsv (history or candidates) are the training items (the tokenizer's vocabulary).
4. No test split. personalized_test.tsv (`userid`, `clicknewsID`, `posnewID`, `rewrite_titles`) holds, for each
   of its 103 users, the news they were shown in the second stage (`posnewID`, comma-separated as the reference
   code splits it) and the headline they wrote for each (`rewrite_titles`, `;;`-separated, one per news id, in
   the same order). It has no unclicked news: as impressions every candidate would be a click, so AUC is
   undefined and MRR and nDCG are 1 whatever the model scores, and a ranking test split would report numbers
   that measure nothing. The file is instead read as personalised headlines: `read_personalized_headlines` (or
   `PensDataset.headlines()`) gives one `PersonalizedHeadline` (user, their clicked history, the news id, the
   user's own headline) per news id, for a scorer comparing generated headlines (GENRE's) with them. A rewritten
   title left empty is left out, as the reference code does.
5. News ids absent from news.tsv: `unknown_items: error` (the default) names the file, line, column and id;
   `skip` drops them (an impression whose candidates are all unknown is dropped too) and the corpus's notes
   count them per file.

`once data pens OUT` writes the corpus as MIND files (train/ and dev/ with news.tsv and behaviors.tsv; the body
becomes MIND's abstract, the topic its subcategory) and the personalised headlines as
`personalized_headlines.jsonl` (one JSON object per headline: user, history, news, title).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from once.api import Corpus, DataError, Impressions, Items, Ragged, file_stamp, write_mind_files
from once_plugins.datasets.parts import PensOptions

log = logging.getLogger(__name__)

NEWS = "news.tsv"
LOGS = {"train": "train.tsv", "dev": "valid.tsv"}  # ONCE's split -> PENS's file
TEST = "personalized_test.tsv"
NEWS_COLUMNS = ("News ID", "Category", "Topic", "Headline", "News body")
LOG_COLUMNS = ("UserID", "ClicknewsID", "pos", "neg")
TEST_COLUMNS = ("userid", "clicknewsID", "posnewID", "rewrite_titles")
HEADLINES = "personalized_headlines.jsonl"  # what `once data pens OUT` writes beside the MIND files
REWRITE_SEPARATOR = ";;"
FILES_HINT = "PENS ships news.tsv, train.tsv, valid.tsv and personalized_test.tsv in one folder."
FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB a field) is less than an Entity content cell
LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # a carriage return alone ends a line, as pandas reads it
TEST_IDS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class PersonalizedHeadline:
    """One headline of personalized_test.tsv: the headline `user` wrote for news `news`, after clicking `history`."""

    user: str
    history: tuple[str, ...]  # news ids, oldest first
    news: str
    title: str  # the user's rewritten headline


class PensDataset:
    """Reads PENS exactly as Microsoft ships it."""

    def __init__(self, options: PensOptions, context: object = None) -> None:
        self.root = options.path
        self.unknown_items = options.unknown_items

    def fingerprint(self) -> str:
        """Name, size and modification time of the three files the corpus is read from."""
        digest = hashlib.sha256(self.unknown_items.encode())
        for name in (NEWS, *LOGS.values()):
            digest.update(f"{name}:{file_stamp(self.root / name)}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_pens(self.root, self.unknown_items)

    def headlines(self, corpus: Corpus | None = None) -> list[PersonalizedHeadline]:
        """The personalised headlines, their news ids checked against news.tsv (by `unknown_items`)."""
        corpus = self.read() if corpus is None else corpus
        return read_personalized_headlines(self.root / TEST, corpus.items.ids[1:], self.unknown_items)

    def export(self, out: Path) -> None:
        """The corpus as MIND files under `out`, and the personalised headlines (when the folder has them)."""
        corpus = self.read()
        headlines = self.headlines(corpus) if (self.root / TEST).is_file() else None
        write_mind(corpus, out, headlines)


def read_pens(root: Path, unknown_items: str = "error") -> Corpus:
    if not root.is_dir():
        raise DataError(
            "PENS folder not found",
            where=str(root),
            hint="Point dataset.path at the folder with news.tsv, train.tsv and valid.tsv.",
        )
    items, index, notes = read_news(root / NEWS)
    splits = {}
    for split, name in LOGS.items():
        splits[split], more = read_log(root / name, index, unknown_items)
        notes += more
    train = splits["train"]
    items.in_train[train.candidates.values] = items.in_train[train.history.values] = True
    items.in_train[0] = False
    return Corpus(items, splits, notes)


def read_news(path: Path) -> tuple[Items, dict[str, int], list[str]]:
    """The items of news.tsv, news id -> item index, and notes (repeated ids)."""
    ids, title, body, category, topic = [""], [""], [""], [""], [""]
    index: dict[str, int] = {}
    repeated = 0
    for where, (item, vertical, subject, headline, text) in read_tsv(path, NEWS_COLUMNS):
        item = item.strip()
        if not item:
            raise DataError("empty News ID", where=where)
        if item in index:
            repeated += 1
            continue
        index[item] = len(ids)
        ids.append(item)
        title.append(headline)
        body.append(text)
        category.append(vertical.strip())
        topic.append(subject.strip())
    items = Items(ids, {"title": title, "body": body}, {"category": category, "topic": topic}, np.zeros(len(ids), bool))
    notes = [f"{path}: {repeated} repeated news id(s), each read from its first row"] if repeated else []
    return items, index, notes


class Lookup:
    """News ids -> item indices, by `unknown_items`: an unknown id is an error naming where, or skipped and counted."""

    def __init__(self, index: dict[str, int] | Collection[str], unknown_items: str) -> None:
        self.index, self.unknown_items, self.skipped = index, unknown_items, 0

    def known(self, item: str, where: str, column: str) -> bool:
        if item in self.index:
            return True
        if self.unknown_items == "error":
            shown = item if len(item) <= 40 else f"{item[:40]}..."
            raise DataError(
                f"unknown news id '{shown}' in column {column} (not in news.tsv)",
                where=where,
                hint="Set dataset.unknown_items: skip to leave such ids out.",
            )
        self.skipped += 1
        return False

    def indices(self, cell: str, where: str, column: str) -> list[int]:
        """The item indices of a space-separated cell of news ids."""
        ids = cell.split()
        found = [self.index.get(item) for item in ids]
        if None in found:
            found = [i for item, i in zip(ids, found, strict=True) if i is not None or self.known(item, where, column)]
        return found


def read_log(path: Path, index: dict[str, int], unknown_items: str) -> tuple[Impressions, list[str]]:
    """One split's impressions from train.tsv or valid.tsv, and notes (skipped ids and impressions)."""
    impression_ids, users, histories, candidates, labels = [], [], [], [], []
    lookup = Lookup(index, unknown_items)
    empty = 0
    for row, (where, (user, clicked, pos, neg)) in enumerate(read_tsv(path, LOG_COLUMNS), 1):
        history = lookup.indices(clicked, where, "ClicknewsID")
        positives, negatives = lookup.indices(pos, where, "pos"), lookup.indices(neg, where, "neg")
        if not positives and not negatives:
            empty += not (pos.split() or neg.split())  # not counted again when every candidate was an unknown id
            continue
        impression_ids.append(str(row))
        users.append(user.strip())
        histories.append(history)
        candidates.append(positives + negatives)
        labels.append([1] * len(positives) + [0] * len(negatives))
    notes = []
    if lookup.skipped:
        notes.append(f"{path}: skipped {lookup.skipped} unknown news id(s) (unknown_items: skip)")
    if empty:
        notes.append(f"{path}: left out {empty} impression(s) with neither pos nor neg news")
    impressions = Impressions(
        impression_ids,
        users,
        Ragged.from_rows(histories),
        Ragged.from_rows(candidates),
        Ragged.from_rows(labels, np.int8),
    )
    return impressions, notes


def read_personalized_headlines(
    path: Path, news_ids: Collection[str] | None = None, unknown_items: str = "error"
) -> list[PersonalizedHeadline]:
    """The personalised headlines of personalized_test.tsv (`path`: the file or the PENS folder), one per news id
    of `posnewID` with a rewritten title. With `news_ids` (the ids of news.tsv), an id outside them is an error
    naming the line, or (`unknown_items: skip`) left out: from the history, or the headline of an unknown news."""
    if path.is_dir():
        path = path / TEST
    lookup = Lookup(set(news_ids) if news_ids is not None else _Everything(), unknown_items)
    headlines = []
    for where, (user, clicked, shown, rewrites) in read_tsv(path, TEST_COLUMNS):
        history = tuple(i for i in TEST_IDS.split(clicked.strip()) if i and lookup.known(i, where, "clicknewsID"))
        news = [i for i in TEST_IDS.split(shown.strip()) if i]
        titles = rewrites.split(REWRITE_SEPARATOR) if rewrites.strip() else []
        if len(titles) != len(news):
            raise DataError(
                f"{len(titles)} rewritten title(s) in rewrite_titles (separated by '{REWRITE_SEPARATOR}') for "
                f"{len(news)} news id(s) in posnewID",
                where=where,
                hint="Each news id of posnewID has its own rewritten title, in the same order.",
            )
        for item, title in zip(news, titles, strict=True):
            if lookup.known(item, where, "posnewID") and title.strip():
                headlines.append(PersonalizedHeadline(user.strip(), history, item, title.strip()))
    if lookup.skipped:
        log.warning("%s: skipped %d unknown news id(s) (unknown_items: skip)", path, lookup.skipped)
    return headlines


class _Everything:
    """Every news id is known (no news.tsv to check against)."""

    def __contains__(self, item: object) -> bool:
        return True


def read_tsv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, list[str]]]:
    """('file:line', the values of `columns`) per row of a PENS file; the header names the columns. A missing or
    empty file, a missing column, a row with more or fewer fields than the header, text that is not UTF-8: an
    error naming the file (and line)."""
    if not path.is_file():
        raise DataError("file not found", where=str(path), hint=FILES_HINT)
    limit = csv.field_size_limit()
    csv.field_size_limit(FIELD_LIMIT)
    try:
        with path.open("rb") as f:
            reader = csv.reader(_decoded(f, path), delimiter="\t")
            header: list[str] | None = None
            positions: list[int] = []
            rows, start = 0, 1
            while True:
                try:
                    row = next(reader, None)
                except csv.Error as error:
                    raise DataError(
                        f"cannot read the line as tab-separated fields ({error})", where=f"{path}:{start}"
                    ) from None
                if row is None:
                    break
                line, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header, positions = row, _positions(row, columns, path)
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"expected {len(header)} tab-separated columns ({_listed(header)}), found {len(row)}",
                        where=f"{path}:{line}",
                        hint="A truncated line, or a field holding a tab or a line break without quotes around it.",
                    )
                rows += 1
                yield f"{path}:{line}", [row[p] for p in positions]
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise DataError("file is empty", where=str(path))
    if not rows:
        raise DataError("no rows after the header", where=str(path))


def _decoded(f, path: Path) -> Iterator[str]:
    """The file's lines as text (a byte order mark dropped); bytes that are not UTF-8 are an error naming the line."""
    number = 0
    for raw in f:
        for piece in LONE_CR.split(raw):
            if not piece:
                continue
            number += 1
            try:
                line = piece.decode("utf8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"not UTF-8 text ({error.reason} at byte {error.start})", where=f"{path}:{number}"
                ) from None
            yield line.removeprefix("\ufeff") if number == 1 else line


def _positions(header: list[str], columns: tuple[str, ...], path: Path) -> list[int]:
    """Where each of `columns` is in the header row (names compared without case and surrounding spaces)."""
    names: dict[str, int] = {}
    for position, name in enumerate(header):
        names.setdefault(name.strip().lower(), position)
    missing = [c for c in columns if c.lower() not in names]
    if missing:
        raise DataError(
            f"column(s) {', '.join(missing)} missing (the file has {_listed(header)})",
            where=str(path),
            hint=f"The first line is the header row; PENS's {path.name} has {', '.join(columns)} among its columns."
            if path.name in (NEWS, TEST, *LOGS.values())
            else f"The first line is the header row, naming {', '.join(columns)} among the columns.",
        )
    return [names[c.lower()] for c in columns]


def _listed(header: list[str], most: int = 12, width: int = 40) -> str:
    """The header's names for a message: at most `most` of them, each cut to `width` characters."""
    names = [repr(n) if not n.strip() else n[:width] + "..." if len(n) > width else n for n in header]
    return ", ".join(names[:most]) + (f", ... ({len(header)} in all)" if len(header) > most else "")


def write_mind(corpus: Corpus, out: Path, headlines: list[PersonalizedHeadline] | None = None) -> None:
    """`corpus` as MIND files under `out` (once.api.write_mind_files: the body as MIND's abstract, the topic as its
    subcategory), and the personalised headlines beside them."""
    write_mind_files(corpus, out)
    if headlines is not None:
        with (out / HEADLINES).open("w", encoding="utf8", newline="\n") as f:
            f.writelines(json.dumps({**asdict(h), "history": list(h.history)}) + "\n" for h in headlines)
