"""GENRE answers merged into a corpus before tokenizing (the recipe's `augment` section).

- summaries become a new item text field, usable by any item encoder (a NAML view, a DIRE template field);
- generated items become new synthetic items appended to the end of cold users' histories (every impression
  whose real history has at most `cold_history` items), counted per impression so that evaluation can report
  cold and warm users apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from once.data.tables import Corpus, ImpressionParts, Impressions, Ragged, SplitSource
from once.errors import DataError
from once.files import file_stamp
from once.genre.store import RecordStore
from once.recipe import AugmentSection

GENERATED_PREFIX = "genre:"


def profile_text(value: Any) -> str:
    """A parsed profile (lists of topics, interests, regions) as one comma-separated text."""
    if not isinstance(value, dict):
        return ""
    return ", ".join(
        word for words in value.values() if isinstance(words, list) for word in words if isinstance(word, str)
    )


@dataclass(frozen=True)
class GenreAnswers:
    """The recipe's `augment` section as the augmentation `once.data.prepare.prepare` applies before tokenizing."""

    section: AugmentSection

    def files(self) -> list[Path]:
        section = self.section
        return [p for p in (section.summaries, section.profiles, *section.generated) if p is not None]

    def fingerprint(self) -> list[str]:
        """Sizes and modification times of the answer files, so changed answers rebuild the tokenized data."""
        prints = []
        for path in self.files():
            if not path.is_file():
                raise DataError("GENRE answer file not found", where=str(path), hint="Run `once genre ...` or import.")
            prints.append(f"{path.name}:{file_stamp(path)}")
        return prints

    def apply(self, corpus: Corpus) -> Corpus:
        """The corpus with summaries and generated items merged in (unchanged when the section is empty)."""
        section = self.section
        if section.summaries is not None:
            _add_summaries(corpus, section.summaries, section.summary_field)
        if section.generated:
            _add_generated(corpus, section.generated, section.cold_history)
        return corpus

    def profiles(self, users: list[str]) -> list[str] | None:
        """Each user's profile text (empty when the user has none), or None when the recipe merges no profiles."""
        if self.section.profiles is None:
            return None
        answers = RecordStore(self.section.profiles).values()
        return [profile_text(answers.get(user)) for user in users]


def _add_summaries(corpus: Corpus, path: Path, field: str) -> None:
    items = corpus.items
    if field in items.text or field in items.categories:
        raise DataError(
            f"augment.summary_field: the dataset already has a field '{field}'", hint="Choose another name."
        )
    answers = RecordStore(path).values()
    values = [""] + [_text(answers.get(item)) for item in items.ids[1:]]
    missing = sum(1 for v in values[1:] if not v)
    if missing:
        corpus.notes.append(f"{missing} of {len(values) - 1} items have no summary in {path} (their field is empty)")
    items.text[field] = values


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _add_generated(corpus: Corpus, paths: list[Path], cold_history: int) -> None:
    items = corpus.items
    users = {u for split in corpus.splits.values() for part in split.parts() for u in part.user_ids}
    by_user: dict[str, list[int]] = {}
    for path in paths:
        for key, value in sorted(RecordStore(path).values().items()):
            user = key.rsplit("#", 1)[0]
            if user not in users or not isinstance(value, dict) or not value.get("title"):
                continue
            by_user.setdefault(user, []).append(len(items.ids))
            items.ids.append(f"{GENERATED_PREFIX}{key}")
            body = value.get("abstract") or value.get("description") or ""
            for field, column in items.text.items():
                column.append(value["title"] if field == "title" else body if field == "abstract" else "")
            for field, column in items.categories.items():
                column.append(value.get(field, "") if isinstance(value.get(field, ""), str) else "")
    added = len(items.ids) - len(items.in_train)
    items.in_train = np.concatenate([items.in_train, np.ones(added, dtype=bool)])
    for field, vectors in items.vectors.items():  # a generated item has no pretrained vector: zeros, as a missing one
        items.vectors[field] = np.concatenate([vectors, np.zeros((added, vectors.shape[1]), vectors.dtype)])
    for name, split in corpus.splits.items():  # applied as each part is read: a streamed split stays streamed
        corpus.splits[name] = ImpressionParts(partial(_cold_appended, split, by_user, cold_history), len(split))


def _cold_appended(split: SplitSource, by_user: dict[str, list[int]], cold_history: int) -> Iterator[Impressions]:
    for part in split.parts():
        yield _append_to_cold(part, by_user, cold_history)


def _append_to_cold(impressions: Impressions, by_user: dict[str, list[int]], cold_history: int) -> Impressions:
    """The impressions with each cold user's generated items after their history (a new object: the part may be
    read again)."""
    rows, added = [], np.zeros(len(impressions), dtype=np.int64)
    lengths = impressions.history.lengths
    for row, user in enumerate(impressions.user_ids):
        history = impressions.history[row].tolist()
        extra = by_user.get(user, []) if lengths[row] <= cold_history else []
        rows.append(history + extra)
        added[row] = len(extra)
    if not added.any():
        return impressions
    return dataclasses.replace(impressions, history=Ragged.from_rows(rows), synthetic=added)
