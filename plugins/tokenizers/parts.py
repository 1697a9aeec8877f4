"""The tokenizers of this package: their recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from pydantic import Field

from once.api import Options, RecipePath, hookimpl


class WordsOptions(Options):
    min_freq: int = Field(1, ge=1, description="words seen fewer times in the training items become <unk>")
    max_vocab: int | None = Field(None, ge=2, description="keep only the most frequent words")
    vectors: RecipePath | None = Field(None, description="GloVe-format text file: word then floats per line")


@hookimpl
def register_tokenizers(register):
    register("words", "once_plugins.tokenizers.words:WordsTokenizer", WordsOptions)
