"""The words tokenizer's splitting rule on the scripts xMIND and EB-NeRD bring."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from once_plugins.tokenizers.words import ASCII_WORD, WORD, split_words


def test_words_split_each_script_into_learnable_units():
    assert split_words("போட்டி சமநிலையில்") == ["போட்டி", "சமநிலையில்"]  # vowel signs stay in the word
    assert split_words("冠军赢得决赛") == list("冠军赢得决赛")  # Han: one token per character
    assert split_words("ニュース速報") == ["ニ", "ュ", "ー", "ス", "速", "報"]
    assert split_words("หุ้นขึ้น") == ["หุ้", "น", "ขึ้", "น"]  # Thai: a character with its marks
    assert split_words("ქარი და წვიმა.") == ["ქარი", "და", "წვიმა", "."]
    assert split_words("Café naïve, don't_stop") == ["café", "naïve", ",", "don't", "stop"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
def test_the_ascii_fast_path_splits_as_the_general_rule(text):
    assert ASCII_WORD.findall(text.lower()) == WORD.findall(text.lower())


def test_word_vectors_that_are_not_finite_are_refused(tmp_path):
    import pytest

    from once.errors import DataError
    from once_plugins.tokenizers.parts import WordsOptions
    from once_plugins.tokenizers.words import WordsTokenizer

    path = tmp_path / "vectors.txt"
    path.write_text("match 1 2 3\ngoal 1e999 0 1\n", encoding="utf8")  # parses as inf
    tokenizer = WordsTokenizer(WordsOptions(vectors=path))
    tokenizer.fit(["match goal"])
    with pytest.raises(DataError, match="finite") as error:
        tokenizer.word_vectors()
    assert error.value.where == f"{path}:2"
