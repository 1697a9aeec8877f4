"""The `words` tokenizer: lower-cased word tokens, vocabulary from the training items, optional GloVe vectors.

A word is a run of letters and digits with the combining marks that belong to them (Tamil's and Devanagari's vowel
signs, Latin accents written apart), with one inner apostrophe ("don't"); every other visible character is a token of
its own. Scripts written without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar) give one token per
character with its marks, as BERT's basic tokenizer does for Han: without a segmenter that is the unit a vocabulary
can learn (xMIND's Chinese, Japanese and Thai).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import regex
import torch

from once.api import DataError, file_stamp
from once_plugins.tokenizers.parts import WordsOptions

SPACELESS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
LETTER = rf"[[\p{{L}}\p{{N}}]--[{SPACELESS}]]"
MARKED = rf"[[\p{{L}}\p{{N}}\p{{M}}]--[{SPACELESS}]]"
WORD = regex.compile(
    rf"[{SPACELESS}]\p{{M}}*|{LETTER}{MARKED}*(?:'{LETTER}{MARKED}*)?|[^\p{{L}}\p{{N}}\p{{M}}\s_]", regex.V1
)
ASCII_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]")  # WORD on ASCII text, three times faster
RULE = "words-2"  # in the fingerprint: text tokenized under an earlier rule is tokenized again
PAD, UNKNOWN = "<pad>", "<unk>"


def split_words(text: str) -> list[str]:
    text = text.lower()
    return (ASCII_WORD if text.isascii() else WORD).findall(text)


class WordsTokenizer:
    """Word-level tokenizer; id 0 is padding, id 1 unknown words."""

    special_ids = (0, 1)

    def __init__(self, options: WordsOptions, context: object = None) -> None:
        self.options = options
        self.vocab: dict[str, int] = {PAD: 0, UNKNOWN: 1}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def fit(self, texts: Iterable[str]) -> None:
        counts = Counter(word for text in texts for word in split_words(text))
        frequent = sorted((w for w, c in counts.items() if c >= self.options.min_freq), key=lambda w: (-counts[w], w))
        if self.options.max_vocab:
            frequent = frequent[: self.options.max_vocab - 2]
        self.vocab = {PAD: 0, UNKNOWN: 1, **{w: i + 2 for i, w in enumerate(frequent)}}

    def fingerprint(self) -> str:
        """The splitting rule and the vectors file (size and modification time: hashing gigabytes of GloVe is slow)."""
        path = self.options.vectors
        if path is None or not path.exists():
            return RULE
        return f"{RULE}:{file_stamp(path)}"

    def encode(self, text: str, max_tokens: int) -> list[int]:
        return [self.vocab.get(word, 1) for word in split_words(text)[:max_tokens]]

    def state(self) -> dict:
        return {"vocab": list(self.vocab)}

    def restore(self, state: dict) -> None:
        self.vocab = {word: i for i, word in enumerate(state["vocab"])}

    def word_vectors(self) -> torch.Tensor | None:
        """Rows of the vectors file for the vocabulary (small random rows for words it lacks), or None."""
        path = self.options.vectors
        if path is None:
            return None
        if not path.is_file():
            raise DataError(
                "word vectors file not found", where=str(path), hint="Set tokenizer.vectors to a GloVe file."
            )
        found: dict[int, list[float]] = {}
        dim = None
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf8")
                except UnicodeDecodeError:
                    raise DataError("not UTF-8 text", where=f"{path}:{number}") from None
                word, _, rest = line.rstrip().partition(" ")
                index = self.vocab.get(word)
                if index is None:
                    continue
                try:
                    values = [float(v) for v in rest.split()]
                except ValueError:
                    raise DataError("expected a word followed by numbers", where=f"{path}:{number}") from None
                if not all(math.isfinite(v) for v in values):  # "nan", "inf", "1e999" parse, and poison training
                    raise DataError("expected finite numbers (found nan or inf)", where=f"{path}:{number}")
                if dim is None:
                    dim = len(values)
                elif len(values) != dim:
                    raise DataError(f"expected {dim} numbers, found {len(values)}", where=f"{path}:{number}")
                found[index] = values
        if dim is None:
            raise DataError("no word of the vocabulary is in the vectors file", where=str(path))
        generator = torch.Generator().manual_seed(0)
        vectors = torch.randn(self.vocab_size, dim, generator=generator) * 0.1
        vectors[0] = 0
        for index, values in found.items():
            vectors[index] = torch.tensor(values)
        return vectors
