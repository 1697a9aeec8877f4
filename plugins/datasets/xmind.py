"""The xMIND reader: MIND's behaviours with its news translated into another language (Iana, Glavaš and Paulheim,
"MIND Your Language: A Multilingual Dataset for Cross-lingual News Recommendation", SIGIR 2024).

xMIND ships, per language (14 of them, by ISO 639-3 code: swh, som, cmn, jpn, tur, tam, vie, tha, ron, fin, kat,
hat, ind, grn) and per MIND split, a `news.tsv` of three tab-separated columns without a header: the MIND news
id, the translated title, the translated abstract. Everything else (behaviours, categories, entities) is MIND's:
the reader reads the MIND folder as `mind` does, then puts the translations in place of the English `title` and
`abstract`. MIND's entity links point at English surface forms, so the translated fields carry none; with
`keep_english` the English texts stay beside them as `title_en` and `abstract_en`, with their entities, for
cross-lingual recipes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from once.api import Corpus, DataError, file_stamp
from once_plugins.datasets.mind import MindDataset, read_mind, split_folders, text_lines
from once_plugins.datasets.parts import MindOptions, XmindOptions

COLUMNS = ("nid", "title", "abstract")


class XmindDataset:
    """MIND with its titles and abstracts in the language of an xMIND folder."""

    def __init__(self, options: XmindOptions, context: object = None) -> None:
        self.options = options

    def fingerprint(self) -> str:
        """The MIND folder's fingerprint, the options, and size and modification time of each translation file."""
        options = self.options
        mind = MindDataset(MindOptions(path=options.path, unknown_items=options.unknown_items))
        digest = hashlib.sha256(f"{mind.fingerprint()}:{options.untranslated}:{options.keep_english}".encode())
        for split, folder in split_folders(options.news, "xMIND", "dataset.news").items():
            digest.update(f"{split}:{file_stamp(folder / 'news.tsv')}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        options = self.options
        corpus = read_mind(options.path, options.unknown_items)
        translations = read_translations(options.news)
        items = corpus.items
        if options.keep_english:
            for field in ("title", "abstract"):
                items.text[f"{field}_en"] = items.text[field]
                items.entities[f"{field}_en"] = items.entities[field]
        missing = [item for item in items.ids[1:] if item not in translations]
        if missing and options.untranslated == "error":
            raise DataError(
                f"{len(missing)} of {len(items.ids) - 1} MIND news have no translation (first: '{missing[0]}')",
                where=str(options.news),
                hint="Use the xMIND release of the same MIND size (small or large, every split), or set "
                "dataset.untranslated: english to keep their English texts.",
            )
        for field, column in (("title", 0), ("abstract", 1)):
            english = items.text[field]
            items.text[field] = [english[0]] + [
                translations[item][column] if item in translations else text
                for item, text in zip(items.ids[1:], english[1:], strict=True)
            ]
            items.entities[field] = [[] for _ in items.ids]
        if missing:
            corpus.notes.append(f"{options.news}: {len(missing)} news untranslated, kept in English")
        return corpus


def read_translations(root: Path) -> dict[str, tuple[str, str]]:
    """News id -> (title, abstract) from every split folder's news.tsv of one xMIND language folder."""
    translations: dict[str, tuple[str, str]] = {}
    for folder in split_folders(root, "xMIND", "dataset.news").values():
        path = folder / "news.tsv"
        for number, line in text_lines(path, hint="An xMIND split folder (xMINDsmall_train/...) holds news.tsv."):
            row = line.split("\t")
            if len(row) != len(COLUMNS):
                raise DataError(
                    f"expected {len(COLUMNS)} tab-separated columns ({', '.join(COLUMNS)}), found {len(row)}",
                    where=f"{path}:{number}",
                    hint="xMIND's news.tsv holds the news id, the translated title and the translated abstract.",
                )
            if not row[0]:
                raise DataError("empty news id in column 1", where=f"{path}:{number}")
            translations.setdefault(row[0], (row[1], row[2]))
    return translations
