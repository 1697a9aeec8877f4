"""The MIND reader: a folder with train/, dev/ and optional test/ splits of news.tsv + behaviors.tsv.

The news files' entity columns (entities linked in the title and abstract, with their Wikidata ids and surface
forms) are kept, and the entity vectors of each split's `entity_embedding.vec` (TransE, 100 numbers per entity)
when the file is there; a recipe uses them through `items.entities` (DKN).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from once.api import SPLITS, UNLABELED, Corpus, DataError, Impressions, Items, Ragged, file_stamp
from once_plugins.datasets.mind_columns import BEHAVIOR_COLUMNS, ColumnReader, NotClean
from once_plugins.datasets.parts import MindOptions

log = logging.getLogger(__name__)

NEWS_COLUMNS = ("id", "category", "subcategory", "title", "abstract", "url", "title entities", "abstract entities")
ENTITY_VECTORS = "entity_embedding.vec"


def split_folders(root: Path, what: str = "MIND", key: str = "dataset.path") -> dict[str, Path]:
    """Split name -> folder: `train/`, `dev/`, `test/` or Microsoft's `MINDsmall_train/`-style names (and xMIND's
    `xMINDsmall_train/`); `what` and `key` name the folder and its recipe key in errors. Two folders for one split
    (`MINDsmall_train/` beside `MINDlarge_train/`) are an error: which size to read is the user's choice."""
    if not root.is_dir():
        raise DataError(f"{what} folder not found", where=str(root), hint=f"Point the recipe's {key} at it.")
    found: dict[str, list[Path]] = {}
    for folder in sorted(root.iterdir()):
        for split in SPLITS:
            if folder.is_dir() and (folder.name == split or folder.name.endswith(f"_{split}")):
                found.setdefault(split, []).append(folder)
    holds = "news.tsv and behaviors.tsv" if what == "MIND" else "news.tsv"
    if "train" not in found:
        raise DataError(
            f"no train split: expected a train/ (or {what}small_train/) folder with {holds}",
            where=str(root),
            hint=f"Point the recipe's {key} at the folder that holds the split folders.",
        )
    for split, folders in found.items():
        if len(folders) > 1:
            raise DataError(
                f"{len(folders)} folders for the {split} split: {', '.join(f.name for f in folders)}",
                where=str(root),
                hint=f"Keep one size (small or large) per folder, and point {key} at it.",
            )
    return {split: found[split][0] for split in SPLITS if split in found}


class MindDataset:
    """Reads MIND exactly as Microsoft ships it."""

    def __init__(self, options: MindOptions, context: object = None) -> None:
        self.root = options.path
        self.unknown_items = options.unknown_items

    def fingerprint(self) -> str:
        """Split, file name, size and modification time of every file: cheap even for MIND-large's gigabytes."""
        digest = hashlib.sha256(self.unknown_items.encode())
        for split, folder in split_folders(self.root).items():
            for name in ("news.tsv", "behaviors.tsv", ENTITY_VECTORS):
                digest.update(f"{split}/{name}:{file_stamp(folder / name)}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_mind(self.root, self.unknown_items)


def read_mind(root: Path, unknown_items: str = "error") -> Corpus:
    folders = split_folders(root)
    ids, in_train = [""], [False]
    text: dict[str, list[str]] = {"title": [""], "abstract": [""]}
    categories: dict[str, list[str]] = {"category": [""], "subcategory": [""]}
    entities: dict[str, list[list[tuple[str, str]]]] = {"title": [[]], "abstract": [[]]}
    vectors: dict[str, np.ndarray] = {}
    index: dict[str, int] = {}
    for split, folder in folders.items():
        if (folder / ENTITY_VECTORS).is_file():
            vectors.update(read_entity_vectors(folder / ENTITY_VECTORS))
        for item, row, linked in read_news(folder / "news.tsv"):
            if item in index:
                in_train[index[item]] |= split == "train"
                continue
            index[item] = len(ids)
            ids.append(item)
            categories["category"].append(row[1])
            categories["subcategory"].append(row[2])
            text["title"].append(row[3])
            text["abstract"].append(row[4])
            entities["title"].append(linked[0])
            entities["abstract"].append(linked[1])
            in_train.append(split == "train")
    items = Items(ids, text, categories, np.array(in_train), entities, vectors)
    notes = []
    splits = {}
    for split, folder in folders.items():
        splits[split], skipped = read_behaviors(folder / "behaviors.tsv", index, unknown_items)
        if skipped:
            # a note, not a log line: training logs the corpus's notes once, on every run (cached data included)
            notes.append(f"{folder / 'behaviors.tsv'}: skipped {skipped} unknown item id(s) (unknown_items: skip)")
    return Corpus(items, splits, notes)


def text_lines(path: Path, hint: str = "A MIND split folder holds news.tsv and behaviors.tsv."):
    """(line number, line) of a UTF-8 text file, blank lines skipped; a missing, empty or non-UTF-8 file is refused."""
    if not path.is_file():
        raise DataError("file not found", where=str(path), hint=hint)
    with path.open("rb") as f:
        empty = True
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"not UTF-8 text ({error.reason} at byte {error.start})", where=f"{path}:{number}"
                ) from None
            if not line.strip():
                continue
            empty = False
            yield number, line
    if empty:
        raise DataError("file is empty", where=str(path))


def read_news(path: Path):
    """(news id, columns, (title entities, abstract entities)) per line of a MIND news.tsv."""
    for number, line in text_lines(path):
        row = line.split("\t")
        if len(row) != len(NEWS_COLUMNS):
            raise DataError(
                f"expected {len(NEWS_COLUMNS)} tab-separated columns ({', '.join(NEWS_COLUMNS)}), found {len(row)}",
                where=f"{path}:{number}",
            )
        if not row[0]:
            raise DataError("empty news id in column 1", where=f"{path}:{number}")
        title, abstract = row[6], row[7]
        linked = (
            _entities(title, f"{path}:{number}", 7) if title not in ("", "[]") else [],
            _entities(abstract, f"{path}:{number}", 8) if abstract not in ("", "[]") else [],
        )
        yield row[0], row, linked


def _entities(cell: str, where: str, column: int) -> list[tuple[str, str]]:
    """The (Wikidata id, surface form) pairs of one entity column: a JSON list of objects, as MIND writes them."""
    if cell in ("", "[]"):
        return []
    try:
        records = json.loads(cell)
        return [(str(r["WikidataId"]), str(surface)) for r in records for surface in r.get("SurfaceForms", [])]
    except (ValueError, TypeError, KeyError) as error:
        raise DataError(
            f"column {column} ({NEWS_COLUMNS[column - 1]}) is not a JSON list of entities with a WikidataId "
            f"and SurfaceForms ({type(error).__name__}: {error})",
            where=where,
            hint='MIND writes e.g. [{"WikidataId": "Q42", "SurfaceForms": ["Douglas Adams"], ...}], or [] for none.',
        ) from None


def read_entity_vectors(path: Path) -> dict[str, np.ndarray]:
    """Entity id -> vector from an entity_embedding.vec (an id, then its numbers, tab- or space-separated)."""
    vectors: dict[str, np.ndarray] = {}
    dim = None
    for number, line in text_lines(path):
        entity, *values = line.split()
        try:
            vector = np.array(values, dtype=np.float32)
        except ValueError:
            raise DataError("expected an entity id followed by numbers", where=f"{path}:{number}") from None
        if dim is None:
            dim = len(vector)
        if not dim or len(vector) != dim:
            raise DataError(
                f"expected {dim or 'some'} numbers after the entity id, found {len(vector)}", where=f"{path}:{number}"
            )
        vectors[entity] = vector
    return vectors


def read_behaviors(path: Path, index: dict[str, int], unknown_items: str) -> tuple[Impressions, int]:
    """One split's impressions from a MIND behaviors.tsv, item ids mapped through `index`. A history column that
    repeats (MIND's is the same for every impression of a user in a split) is stored once.

    The file is read column-wise (`mind_columns`: MIND-large's 15.8 million impressions in about a minute); a file
    that reading does not take as clean MIND (a malformed line, a bad token, an id it must refuse) is read again
    line by line, which names the file, line and fault, so both ways give the same impressions or the same error."""
    if path.is_file():
        try:
            return ColumnReader(path, index, unknown_items).read()
        except NotClean:
            pass
    return _read_behaviors_by_line(path, index, unknown_items)


def _read_behaviors_by_line(path: Path, index: dict[str, int], unknown_items: str) -> tuple[Impressions, int]:
    """`read_behaviors` one line at a time, naming the file and line of any fault."""
    impression_ids, users, histories, candidates, labels = [], [], [], [], []
    stored: dict[str, tuple[int, int]] = {}  # history column -> (its stored row, unknown ids it holds)
    history_rows: list[int] = []
    skipped = 0
    labeled: bool | None = None

    def lookup(item: str, where: str) -> int | None:
        nonlocal skipped
        found = index.get(item)
        if found is None:
            if unknown_items == "error":
                raise DataError(
                    f"unknown news id '{item}' (not in any news.tsv)",
                    where=where,
                    hint="Set dataset.unknown_items: skip to drop such ids with a warning.",
                )
            skipped += 1
        return found

    for number, line in text_lines(path):
        where = f"{path}:{number}"
        row = line.split("\t")
        if len(row) != len(BEHAVIOR_COLUMNS):
            raise DataError(
                f"expected {len(BEHAVIOR_COLUMNS)} tab-separated columns ({', '.join(BEHAVIOR_COLUMNS)}), "
                f"found {len(row)}",
                where=where,
            )
        if row[3] in stored:
            stored_row, unknown = stored[row[3]]
            skipped += unknown
        else:
            before = skipped
            histories.append([i for i in (lookup(item, where) for item in row[3].split()) if i is not None])
            stored_row, unknown = stored[row[3]] = (len(histories) - 1, skipped - before)
        shown, clicks = [], []
        for token in row[4].split():
            item, dash, label = token.rpartition("-")
            if not dash:
                item, label = token, None
            elif label not in ("0", "1"):
                raise DataError(
                    f"bad impression token '{token}': expected NEWSID-0 or NEWSID-1 "
                    "(or NEWSID alone in an unlabeled test split)",
                    where=where,
                )
            if labeled is None:
                labeled = label is not None
            elif labeled != (label is not None):
                raise DataError(f"impression token '{token}' mixes labeled and unlabeled candidates", where=where)
            found = lookup(item, where)
            if found is not None:
                shown.append(found)
                clicks.append(int(label) if label is not None else UNLABELED)
        if not shown:
            if row[4].split():  # every candidate was an unknown id being skipped
                continue
            raise DataError("impression has no candidates in column 5", where=where)
        impression_ids.append(row[0])
        users.append(row[1])
        history_rows.append(stored_row)
        candidates.append(shown)
        labels.append(clicks)
    shared = Ragged.from_rows(histories)
    candidate_rows = Ragged.from_rows(candidates)
    impressions = Impressions(
        impression_ids,
        users,
        Ragged(shared.values, shared.offsets, np.array(history_rows, dtype=np.int64)),
        candidate_rows,
        Ragged(Ragged.from_rows(labels, np.int8).values, candidate_rows.offsets),
    )
    return impressions, skipped
