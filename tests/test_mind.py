import logging

import numpy as np
import pytest
from mind_files import BEHAVIORS, NEWS, write_mind

from once.errors import DataError
from once_plugins.datasets.mind import read_mind


def test_reads_items_and_impressions(tmp_path):
    corpus = read_mind(write_mind(tmp_path))
    items = corpus.items
    assert items.ids == ["", "N1", "N2", "N3", "N4"]
    assert items.text["title"][3] == "Champion wins the final"
    assert items.categories["subcategory"][4] == "storms"
    train = corpus.splits["train"]
    assert train.impression_ids == ["1", "2", "3"]
    assert train.user_ids == ["U1", "U2", "U1"]
    assert list(train.history[0]) == [1, 3] and list(train.history[1]) == []
    assert list(train.candidates[0]) == [2, 3, 4] and list(train.labels[0]) == [0, 1, 0]
    assert set(corpus.splits) == {"train", "dev"}


def test_official_folder_names_and_unlabeled_test(tmp_path):
    write_mind(tmp_path, splits=("MINDsmall_train", "MINDsmall_dev"))
    write_mind(tmp_path, behaviors=["9\tU3\t11/15/2019 8:00:00 AM\tN1\tN2 N3 N4"], splits=("MINDlarge_test",))
    corpus = read_mind(tmp_path)
    assert set(corpus.splits) == {"train", "dev", "test"}
    test = corpus.splits["test"]
    assert list(test.labels[0]) == [-1, -1, -1]


@pytest.mark.parametrize(
    ("file", "lines", "message", "line"),
    [
        ("news", [*NEWS[:2], "N9\tsports\tTitle only"], "expected 8 tab-separated columns", 3),
        ("behaviors", [BEHAVIORS[0], "2\tU2\tN1-1 N2-0"], "expected 5 tab-separated columns", 2),
        (
            "behaviors",
            [BEHAVIORS[0], BEHAVIORS[1], "3\tU1\t11/13/2019 1:05:58 PM\tN1\tN4-x N3-1"],
            "bad impression token 'N4-x'",
            3,
        ),
        ("behaviors", ["1\tU1\t11/11/2019 9:05:58 AM\tN1 N77\tN2-0 N3-1"], "unknown news id 'N77'", 1),
        ("behaviors", ["1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-0 N3"], "mixes labeled and unlabeled", 1),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, file, lines, message, line):
    """Only the train split is bad; the error names its file and line."""
    write_mind(tmp_path)
    (tmp_path / "train" / f"{file}.tsv").write_text("".join(f"{line}\n" for line in lines), encoding="utf8")
    with pytest.raises(DataError) as error:
        read_mind(tmp_path)
    assert message in error.value.message
    assert error.value.where == f"{tmp_path / 'train' / f'{file}.tsv'}:{line}"


def test_empty_and_missing_files(tmp_path):
    write_mind(tmp_path)
    (tmp_path / "dev" / "news.tsv").write_text("\n", encoding="utf8")
    with pytest.raises(DataError, match="file is empty"):
        read_mind(tmp_path)
    (tmp_path / "dev" / "news.tsv").unlink()
    with pytest.raises(DataError, match="file not found"):
        read_mind(tmp_path)
    with pytest.raises(DataError, match="no train split"):
        read_mind(tmp_path / "dev")


def test_unknown_ids_can_be_skipped_with_a_counted_warning(tmp_path, caplog):
    write_mind(tmp_path, behaviors=["1\tU1\t11/11/2019 9:05:58 AM\tN1 N77 N78\tN2-0 N3-1 N99-0", *BEHAVIORS[1:]])
    with caplog.at_level(logging.WARNING):
        corpus = read_mind(tmp_path, unknown_items="skip")
    train = corpus.splits["train"]
    assert list(train.history[0]) == [1] and list(train.candidates[0]) == [2, 3]
    assert np.array_equal(train.labels[0], [0, 1])
    assert "skipped 3 unknown item id(s)" in corpus.notes[0]
    assert "skipped" not in caplog.text  # a note that training logs once, not also a log line of the reader


def test_a_tiny_demo_corpus_is_complete_even_when_topics_run_out(tmp_path):
    from once_plugins.datasets.demo import write_demo
    from once_plugins.datasets.mind import read_mind
    from once_plugins.datasets.parts import DemoOptions

    write_demo(tmp_path, DemoOptions(items=20, users=50))
    corpus = read_mind(tmp_path)
    assert len(corpus.items.ids) == 21  # plus the padding item
    for name in ("train", "dev", "test"):
        labels = corpus.splits[name].labels
        assert all((labels[row] == 1).any() for row in range(len(labels)))  # every impression has a click


def test_two_sizes_of_one_split_in_one_folder_are_refused(tmp_path):
    write_mind(tmp_path, splits=("MINDsmall_train", "MINDlarge_train", "MINDsmall_dev"))
    with pytest.raises(DataError, match="2 folders for the train split: MINDlarge_train, MINDsmall_train") as error:
        read_mind(tmp_path)
    assert "one size" in error.value.hint
