"""Any dataset's corpus as MIND files (`once data NAME OUT`): train/, dev/ (and test/) with news.tsv and
behaviors.tsv, which the `mind` reader reads back as the same items, texts, categories and impressions.

MIND's news columns take the corpus's fields by name where it has them and by position otherwise: the title is
`title` (else the first text field), the abstract `abstract` (else the next text field), the category and
subcategory `category` and `subcategory` (else the first two category fields). Entities are not written. An item
goes in train/news.tsv when it is a training item, and in every other split's news.tsv when it is not or when that
split shows it, so the reader marks the same training items (the tokenizer's vocabulary). Tabs and line breaks
inside a field become spaces, as MIND's lines cannot hold them. The time column is left empty; unlabeled
candidates carry no label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from once.data.tables import UNLABELED, Corpus, Items


def mind_columns(items: Items) -> tuple[str | None, str | None, str | None, str | None]:
    """The (title, abstract, category, subcategory) fields of `items` that MIND's columns hold, None where absent."""
    text, categories = list(items.text), list(items.categories)
    title = "title" if "title" in text else (text[0] if text else None)
    rest = [f for f in text if f != title]
    abstract = "abstract" if "abstract" in rest else (rest[0] if rest else None)
    category = "category" if "category" in categories else (categories[0] if categories else None)
    others = [f for f in categories if f != category]
    subcategory = "subcategory" if "subcategory" in others else (others[0] if others else None)
    return title, abstract, category, subcategory


def clean(text: str) -> str:
    """A field as MIND's tab-separated lines can hold it: tabs and line breaks become spaces."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_mind_files(corpus: Corpus, out: Path) -> None:
    """Write `corpus` as MIND files under `out` (one folder per split)."""
    items = corpus.items
    fields = mind_columns(items)
    columns = [
        items.text.get(fields[0]) if fields[0] else None,
        items.text.get(fields[1]) if fields[1] else None,
        items.categories.get(fields[2]) if fields[2] else None,
        items.categories.get(fields[3]) if fields[3] else None,
    ]

    def value(column: list[str] | None, i: int) -> str:
        return clean(column[i]) if column is not None else ""

    for split, source in corpus.splits.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        listed = items.in_train.copy()
        if split != "train":  # the items no training split lists, and this split's own (never an empty file)
            listed |= ~items.in_train
        with (folder / "behaviors.tsv").open("w", encoding="utf8", newline="\n") as behaviors:
            for impressions in source.parts():
                if split != "train":
                    listed[impressions.candidates.values] = listed[impressions.history.values] = True
                for row, impression in enumerate(impressions.impression_ids):
                    history = " ".join(items.ids[i] for i in impressions.history[row])
                    shown = zip(impressions.candidates[row], impressions.labels[row], strict=True)
                    tokens = " ".join(items.ids[i] + ("" if label == UNLABELED else f"-{label}") for i, label in shown)
                    user = clean(impressions.user_ids[row])
                    behaviors.write(f"{clean(str(impression))}\t{user}\t\t{history}\t{tokens}\n")
        with (folder / "news.tsv").open("w", encoding="utf8", newline="\n") as news:
            for i in np.flatnonzero(listed):
                if i == 0:
                    continue
                title, abstract, category, subcategory = (value(c, int(i)) for c in columns)
                news.write(f"{clean(items.ids[i])}\t{category}\t{subcategory}\t{title}\t{abstract}\t\t[]\t[]\n")
