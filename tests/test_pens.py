"""The PENS reader on fixture files in the official schema (msnews.github.io/pens.html, with the header rows the
files ship with), the personalised headlines, its errors, a fuzz of every file, and a run of the recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import FUZZ, assert_located, count, mutated

from once.cli import run as cli
from once.errors import DataError
from once_plugins.datasets.mind import read_mind
from once_plugins.datasets.parts import PensOptions
from once_plugins.datasets.pens import PensDataset, PersonalizedHeadline, read_personalized_headlines

NEWS_HEADER = ("News ID", "Category", "Topic", "Headline", "News body", "Title entity", "Entity content")
LOG_HEADER = ("UserID", "ClicknewsID", "dwelltime", "exposure_time", "pos", "neg", "start", "end", "dwelltime_pos")
TEST_HEADER = ("userid", "clicknewsID", "posnewID", "rewrite_titles")
NEWS = [
    (
        "N10000",
        "sports",
        "soccer",
        "Predicting Atlanta United's lineup against Columbus Crew in the U.S. Open Cup",
        "Only FIVE internationals allowed, count em, FIVE! So first off we should say...",
        "{\"Atlanta United's\": 'Atlanta United FC'}",
        "{'Atlanta United FC': {'type': 'item', 'id': 'Q16836317', 'labels': {}}}",
    ),
    ("N10001", "news", "newspolitics", "Legal battle looms over EPA rule change", "", "{}", "{}"),  # empty body
    ("N10002", "", "", "Man finds a wallet on the beach", "He gave it back.", "{}", "{}"),  # no category, topic
    ("N10003", "finance", "markets", "Stocks rise as rates hold", "Markets were up on Tuesday.", "{}", "{}"),
    ("N10004", "health", "medical", "A new vaccine trial starts", "Doctors say it is safe.", "{}", "{}"),
    ("N10005", "travel", "travelnews", "The best beaches of the summer", "Sand, sun and sea.", "{}", "{}"),
]
LONG = " ".join(f"N1000{i % 6}" for i in range(3000))  # a very long history
TRAIN = [  # UserID, ClicknewsID, pos, neg
    ("U335175", "N10000 N10001", "N10002", "N10003 N10004"),
    ("U100", "", "N10003", "N10000"),  # an empty history
]
VALID = [
    ("U335175", "N10000 N10001 N10002", "N10004 N10005", "N10003"),
    ("U200", LONG, "N10001", "N10002"),
]
TEST = [  # userid, clicknewsID, posnewID, rewrite_titles
    ("NT1", "N10000,N10001", "N10002,N10003", "Honest man returns a lost wallet;;Rates hold, stocks climb"),
    ("NT2", "N10003", "N10005,N10004,N10001", "Summer's top beaches;;;;EPA rule heads to court"),  # one left empty
]


def tsv(header, rows) -> str:
    return "".join("\t".join(row) + "\n" for row in [header, *rows])


def log_rows(rows) -> list[tuple[str, ...]]:
    """The full nine columns of train.tsv/valid.tsv around (user, history, pos, neg)."""
    full = []
    for user, history, pos, neg in rows:
        times = "#TAB#".join("6/19/2019 5:10:01 AM" for _ in history.split())
        dwell = " ".join("30" for _ in history.split())
        full.append((user, history, dwell, times, pos, neg, "7/3/2019 6:43:49 AM", "7/3/2019 7:06:06 AM", "34"))
    return full


def write_pens(folder: Path, news=NEWS, train=TRAIN, valid=VALID, test=TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "news.tsv").write_text(tsv(NEWS_HEADER, news), encoding="utf8")
    (folder / "train.tsv").write_text(tsv(LOG_HEADER, log_rows(train)), encoding="utf8")
    (folder / "valid.tsv").write_text(tsv(LOG_HEADER, log_rows(valid)), encoding="utf8")
    (folder / "personalized_test.tsv").write_text(tsv(TEST_HEADER, test), encoding="utf8")
    return folder


def read(root: Path, unknown_items: str = "error"):
    return PensDataset(PensOptions(path=root, unknown_items=unknown_items)).read()


def test_reads_items_impressions_and_labels(tmp_path):
    corpus = read(write_pens(tmp_path))
    items = corpus.items
    assert items.ids == ["", *(n[0] for n in NEWS)]
    assert items.text["title"][1] == NEWS[0][3] and items.text["body"][1] == NEWS[0][4]
    assert items.text["body"][2] == ""  # an empty body is empty text
    assert items.categories["category"][3] == "" and items.categories["topic"][3] == ""  # none
    assert items.categories["category"][4] == "finance" and items.categories["topic"][4] == "markets"
    assert items.entities == {} and corpus.notes == []
    assert set(corpus.splits) == {"train", "dev"}  # personalized_test.tsv is no ranking split
    train, dev = corpus.splits["train"], corpus.splits["dev"]
    assert train.impression_ids == ["1", "2"] and train.user_ids == ["U335175", "U100"]
    assert list(train.history[0]) == [1, 2] and list(train.history[1]) == []
    assert list(train.candidates[0]) == [3, 4, 5] and list(train.labels[0]) == [1, 0, 0]  # pos, then neg
    assert list(dev.candidates[0]) == [5, 6, 4] and list(dev.labels[0]) == [1, 1, 0]
    assert list(dev.history[1]) == [int(i[-1]) + 1 for i in LONG.split()]  # whole, in order
    assert items.in_train.tolist() == [False, True, True, True, True, True, False]  # N10005 is dev-only


def test_personalized_headlines(tmp_path):
    root = write_pens(tmp_path)
    expected = [
        PersonalizedHeadline("NT1", ("N10000", "N10001"), "N10002", "Honest man returns a lost wallet"),
        PersonalizedHeadline("NT1", ("N10000", "N10001"), "N10003", "Rates hold, stocks climb"),
        PersonalizedHeadline("NT2", ("N10003",), "N10005", "Summer's top beaches"),
        PersonalizedHeadline("NT2", ("N10003",), "N10001", "EPA rule heads to court"),  # N10004's was left empty
    ]
    assert read_personalized_headlines(root) == expected
    assert read_personalized_headlines(root / "personalized_test.tsv") == expected
    assert PensDataset(PensOptions(path=root)).headlines() == expected


def test_unknown_news_ids_are_an_error_or_skipped(tmp_path):
    train = [*TRAIN, ("U300", "N10000 N99999", "N10001", "N88888"), ("U400", "N10002", "N77777", "")]
    root = write_pens(tmp_path, train=train)
    with pytest.raises(DataError) as error:
        read(root)
    assert error.value.message == "unknown news id 'N99999' in column ClicknewsID (not in news.tsv)"
    assert error.value.where == f"{root / 'train.tsv'}:4" and "unknown_items: skip" in error.value.hint
    corpus = read(root, "skip")
    train_split = corpus.splits["train"]
    assert train_split.impression_ids == ["1", "2", "3"]  # row 4 had only an unknown candidate: left out
    assert list(train_split.history[2]) == [1] and list(train_split.candidates[2]) == [2]
    assert corpus.notes == [f"{root / 'train.tsv'}: skipped 3 unknown news id(s) (unknown_items: skip)"]
    test = [("NT1", "N10000,N55555", "N10002,N66666", "one;;two")]
    write_pens(tmp_path, train=train, test=test)
    with pytest.raises(DataError, match="unknown news id 'N55555' in column clicknewsID") as error:
        read_personalized_headlines(root, corpus.items.ids[1:])
    assert error.value.where == f"{root / 'personalized_test.tsv'}:2"
    headlines = PensDataset(PensOptions(path=root, unknown_items="skip")).headlines()
    assert headlines == [PersonalizedHeadline("NT1", ("N10000",), "N10002", "one")]


def test_rows_without_candidates_are_left_out_with_a_note(tmp_path):
    root = write_pens(tmp_path, valid=[*VALID, ("U500", "N10000", "", "")])
    corpus = read(root)
    assert corpus.splits["dev"].impression_ids == ["1", "2"]
    assert corpus.notes == [f"{root / 'valid.tsv'}: left out 1 impression(s) with neither pos nor neg news"]


def test_quoted_fields_as_pandas_writes_them(tmp_path):
    news = [*NEWS[:5], ("N10005", "travel", "travelnews", '"Beaches: ""top"" picks"', '"Sand,\tsun\nand sea."', "", "")]
    root = write_pens(tmp_path, news=news)
    items = read(root).items
    assert items.text["title"][6] == 'Beaches: "top" picks' and items.text["body"][6] == "Sand,\tsun\nand sea."
    with (root / "news.tsv").open("a") as f:
        f.write("N10006\tsports\n")  # line 9: the quoted body took two lines
    with pytest.raises(DataError) as error:
        read(root)
    assert error.value.where == f"{root / 'news.tsv'}:9"


def test_bad_files_are_errors_naming_file_line_and_column(tmp_path):
    root = write_pens(tmp_path)
    (root / "valid.tsv").unlink()
    with pytest.raises(DataError) as error:
        read(root)
    assert error.value.message == "file not found" and error.value.where == str(root / "valid.tsv")

    root = write_pens(tmp_path)
    path = root / "train.tsv"
    header = [c for c in LOG_HEADER if c != "neg"]
    path.write_text(tsv(header, [r[:5] + r[6:] for r in log_rows(TRAIN)]))
    with pytest.raises(DataError) as error:
        read(root)
    assert error.value.where == str(path)
    assert error.value.message == f"column(s) neg missing (the file has {', '.join(header)})"

    lines = tsv(LOG_HEADER, log_rows(TRAIN)).splitlines(True)
    path.write_text(lines[0] + lines[1] + "U100\tN10001\t30\t6/19/2019 5:10:01 AM\n")  # a truncated line
    with pytest.raises(DataError) as error:
        read(root)
    assert error.value.where == f"{path}:3" and error.value.message.startswith("expected 9 tab-separated columns")
    assert error.value.message.endswith("found 4")

    path.write_bytes(lines[0].encode() + "U1\tN10000\t\t\tN10001\tN10002\t\t\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text") as error:
        read(root)
    assert error.value.where == f"{path}:2"
    path.write_text("\n\n")
    with pytest.raises(DataError, match="file is empty"):
        read(root)
    path.write_text(lines[0])
    with pytest.raises(DataError, match="no rows after the header"):
        read(root)

    root = write_pens(tmp_path, test=[*TEST, ("NT3", "N10000", "N10001,N10002,N10003", "one;;two")])
    with pytest.raises(DataError) as error:
        read_personalized_headlines(root)
    assert error.value.where == f"{root / 'personalized_test.tsv'}:4"
    assert error.value.message == (
        "2 rewritten title(s) in rewrite_titles (separated by ';;') for 3 news id(s) in posnewID"
    )
    with pytest.raises(DataError, match="PENS folder not found"):
        read(tmp_path / "nowhere")


def test_once_data_writes_mind_files_and_the_headlines(tmp_path, registry):
    root = write_pens(tmp_path / "pens")
    out = tmp_path / "mind"
    assert cli(["data", "pens", str(out), "--set", f"path={root}"], registry) == 0
    corpus, mind = read(root), read_mind(out)
    assert sorted(mind.items.ids) == sorted(corpus.items.ids)
    order = [mind.items.ids.index(i) for i in corpus.items.ids]
    for field in ("title", "body"):
        key = "abstract" if field == "body" else field
        assert [mind.items.text[key][i] for i in order] == corpus.items.text[field]
    assert [mind.items.categories["subcategory"][i] for i in order] == corpus.items.categories["topic"]
    assert mind.items.in_train[order].tolist() == corpus.items.in_train.tolist()
    for split in ("train", "dev"):
        ours, theirs = corpus.splits[split], mind.splits[split]
        assert list(theirs.impression_ids) == list(ours.impression_ids) and theirs.user_ids == ours.user_ids
        for row in range(len(ours)):
            assert [mind.items.ids[i] for i in theirs.history[row]] == [corpus.items.ids[i] for i in ours.history[row]]
            assert [mind.items.ids[i] for i in theirs.candidates[row]] == [
                corpus.items.ids[i] for i in ours.candidates[row]
            ]
            assert list(theirs.labels[row]) == list(ours.labels[row])
    headlines = [json.loads(line) for line in (out / "personalized_headlines.jsonl").open()]
    assert headlines[0] == {
        "user": "NT1",
        "history": ["N10000", "N10001"],
        "news": "N10002",
        "title": "Honest man returns a lost wallet",
    }
    assert len(headlines) == 4


def test_a_run_of_the_recipe_trains_and_reports_dev_metrics(tmp_path, registry, capsys):
    root = write_pens(tmp_path / "pens")
    overrides = [f"dataset.path={root}", "tokenizer.min_freq=1", "train.epochs=1", "device=cpu"]
    overrides += ["model.item.word_dim=16", "model.item.heads=2", "model.item.head_dim=8", "model.user.heads=2"]
    runs = tmp_path / "runs"
    assert cli(["train", "pens-nrms", *(f"--set={o}" for o in overrides), "--out", str(runs)], registry) == 0
    (run,) = runs.iterdir()
    assert (run / "recipe.yaml").is_file()
    assert "dev metrics per epoch" in capsys.readouterr().out


FUZZED = ["news.tsv", "train.tsv", "valid.tsv", "personalized_test.tsv"]


@pytest.fixture(scope="module")
def pens_folder(tmp_path_factory) -> Path:
    return write_pens(tmp_path_factory.mktemp("pens"))


@pytest.mark.parametrize("name", FUZZED)
@FUZZ
@given(data=st.data())
def test_pens_files(name, data, pens_folder, tmp_path_factory):
    """Mutated PENS files read, or fail with our error naming the mutated file (and line); never a traceback.
    news.tsv is read with `unknown_items: skip`, so that an id damaged there is not an error of another file."""
    folder = tmp_path_factory.mktemp("case")
    shutil.copytree(pens_folder, folder, dirs_exist_ok=True)
    path = folder / name
    lines = path.read_text(encoding="utf8").splitlines(True)
    if data.draw(st.booleans()):  # the rows mutated under the header row, or the whole file
        path.write_bytes(lines[0].encode() + data.draw(mutated(lines[1:])))
    else:
        path.write_bytes(data.draw(mutated(lines)))
    count(f"PENS {name}")
    unknown = "skip" if name == "news.tsv" else "error"
    try:
        corpus = read(folder, unknown)
        headlines = PensDataset(PensOptions(path=folder, unknown_items=unknown)).headlines(corpus)
    except DataError as error:
        assert_located(error, path)
        return
    for split in corpus.splits.values():
        assert len(split.history) == len(split.candidates) == len(split.labels) == len(split.impression_ids)
        assert split.candidates.values.max(initial=0) < len(corpus.items.ids)
        assert set(split.labels.values.tolist()) <= {0, 1}
    known = set(corpus.items.ids[1:])
    assert all(h.news in known and set(h.history) <= known and h.title for h in headlines)
