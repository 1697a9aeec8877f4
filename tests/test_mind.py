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
    assert list(train.impression_ids) == ["1", "2", "3"]
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


def _read_both(path, index, unknown_items):
    """The column-wise and the line-by-line readings of one behaviors file (the column-wise one must not fall back)."""
    from once_plugins.datasets.mind import _read_behaviors_by_line
    from once_plugins.datasets.mind_columns import ColumnReader

    return ColumnReader(path, index, unknown_items).read(), _read_behaviors_by_line(path, index, unknown_items)


def _assert_same(column, line):
    (a, skipped_a), (b, skipped_b) = column, line
    assert skipped_a == skipped_b
    assert list(a.impression_ids) == list(b.impression_ids) and a.user_ids == b.user_ids
    for name in ("history", "candidates", "labels"):
        ours, theirs = getattr(a, name), getattr(b, name)
        assert ours.values.dtype == theirs.values.dtype
        assert np.array_equal(ours.values, theirs.values) and np.array_equal(ours.offsets, theirs.offsets)
    assert np.array_equal(a.history.rows, b.history.rows)


def test_the_column_wise_reading_equals_the_line_by_line_one_across_blocks(tmp_path, monkeypatch):
    """A demo corpus read in blocks of 4 KB (histories repeat across blocks), its training rows shuffled (a history
    the store holds is not parsed again), and an unlabeled split."""
    from once_plugins.datasets.demo import write_demo
    from once_plugins.datasets.mind_columns import ColumnReader
    from once_plugins.datasets.parts import DemoOptions

    monkeypatch.setattr(ColumnReader, "BLOCK_BYTES", 4096)
    write_demo(tmp_path, DemoOptions(items=300, users=200))
    index = {f"D{i}": i for i in range(1, 301)}
    for split in ("train", "dev"):
        column, line = _read_both(tmp_path / split / "behaviors.tsv", index, "error")
        assert len(column[0]) >= 200 and column[0].candidates.values.dtype == np.int32
        _assert_same(column, line)
    shuffled = tmp_path / "shuffled.tsv"  # a user's impressions spread over the file, as in MIND
    lines = (tmp_path / "train" / "behaviors.tsv").read_text(encoding="utf8").splitlines()
    shuffled.write_text("".join(f"{lines[i]}\n" for i in np.random.default_rng(0).permutation(len(lines))), "utf8")
    _assert_same(*_read_both(shuffled, index, "error"))
    unlabeled = tmp_path / "unlabeled.tsv"
    lines = (tmp_path / "test" / "behaviors.tsv").read_text(encoding="utf8").splitlines()
    unlabeled.write_text("".join(line.replace("-0", "").replace("-1", "") + "\n" for line in lines), encoding="utf8")
    column, line = _read_both(unlabeled, index, "error")
    assert (column[0].labels.values == -1).all()
    _assert_same(column, line)


def test_the_column_wise_reading_skips_unknown_ids_as_the_line_by_line_one(tmp_path):
    """Unknown ids in histories (counted once per impression that shows them) and candidates, an impression whose
    candidates are all unknown (dropped, its ids counted), an empty history and doubled spaces."""
    path = tmp_path / "behaviors.tsv"
    path.write_text(
        "1\tU1\tT\tN1 N77  N3\tN2-0 N3-1 N99-0\n"
        "2\tU2\tT\t\tN88-1 N89-0\n"
        "3\tU1\tT\tN1 N77  N3\tN4-1 N2-0\n"
        "4\tU3\tT\tN4\tN1-1 N4-0\n",
        encoding="utf8",
    )
    index = {"N1": 1, "N2": 2, "N3": 3, "N4": 4}
    column, line = _read_both(path, index, "skip")
    _assert_same(column, line)
    impressions, skipped = column
    assert list(impressions.impression_ids) == ["1", "3", "4"] and skipped == 1 + 1 + 2 + 1
    assert list(impressions.history[0]) == [1, 3] and list(impressions.candidates[0]) == [2, 3]


@pytest.mark.parametrize(
    ("lines", "unknown_items"),
    [
        (["1\tU1\tT\tN1\tN2-0 N3-1 N9-0"], "error"),  # an unknown id that must be refused
        (["1\tU1\tT\tN1\tN2-0 N3-2"], "skip"),  # a bad label
        (["1\tU1\tT\tN1\tN2-0 N3"], "skip"),  # labeled and unlabeled mixed
        (["1\tU1\tT\tN1\tN2-0  N3-1"], "error"),  # a doubled space between candidates
        (["1\tU1\tT\tN1"], "error"),  # a missing column
        (["1\tU1\tT\tN1\tN-2 N3"], "skip"),  # a bare id with a dash reads as NEWSID-LABEL
        (["1\tU1\tT\tN1\tN2-0 N3-1 ", "2\tU2\tT\tN1\tN2-1"], "error"),  # a space ending a row's candidates
        (["1\tU1\tT\tN1\tN2-0", "2\tU2\tT\tN1\t N2-1"], "error"),  # a space starting them
        (["1\tU1\tT\tN1\tN2-0", "2\tU2\tT\tN1\t", "3\tU3\tT\tN1\tN3-1"], "skip"),  # no candidates
    ],
)
def test_what_the_column_wise_reading_cannot_judge_goes_to_the_line_by_line_one(tmp_path, lines, unknown_items):
    from once_plugins.datasets.mind_columns import ColumnReader, NotClean

    path = tmp_path / "behaviors.tsv"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf8")
    with pytest.raises(NotClean):
        ColumnReader(path, {"N1": 1, "N2": 2, "N3": 3, "N-2": 4}, unknown_items).read()


@pytest.mark.parametrize("longest", [8, 16])
def test_the_id_table_finds_exactly_the_ids_it_holds(longest):
    """Ids of 1 to `longest` bytes (at most 8, as MIND's: the table then never reads a second word) against tokens
    that are those ids, prefixes and extensions of them, and a longer token that hashes to an 8-byte id's slot."""
    from once_plugins.datasets.mind_columns import ID_BYTES, IdTable

    rng = np.random.default_rng(0)
    alphabet = np.array(list("N0123456789abc"))
    ids = {"".join(rng.choice(alphabet, rng.integers(1, longest + 1))) for _ in range(3000)}
    index = {item: number for number, item in enumerate(sorted(ids), 1)}
    table = IdTable(index)
    tokens = [
        *index,
        *(i[:-1] for i in index if len(i) > 1),
        *(i + "9" for i in index if len(i) < ID_BYTES),
        "N" * ID_BYTES,
        "x",
    ]
    eight = next(i for i in index if len(i) == 8)  # and one that hashes to its slot though it is longer
    suffixes = np.zeros((200_000, 8), np.uint8)
    suffixes[:, :6] = rng.choice(np.frombuffer(b"N0123456789abc", np.uint8), (len(suffixes), 6))
    low = np.frombuffer(eight.encode(), "<u8").repeat(len(suffixes))
    same = table._slots(low, suffixes.view("<u8").ravel()) == table._slots(low[:1], np.zeros(1, np.uint64))[0]
    tokens.append(eight + bytes(suffixes[np.flatnonzero(same)[0], :6]).decode())
    raw = np.frombuffer(b"".join(t.encode().ljust(ID_BYTES, b"\0") for t in tokens), dtype="<u8").reshape(-1, 2)
    found = table.lookup(raw[:, 0].copy(), raw[:, 1].copy())
    assert found.tolist() == [index.get(t, -1) for t in tokens]
    short = np.flatnonzero(raw[:, 1] == 0)  # tokens of at most 8 bytes, looked up without their (zero) second word
    assert table.lookup(raw[short, 0].copy(), None).tolist() == [index.get(tokens[i], -1) for i in short]
    assert table.long == (longest > 8)
