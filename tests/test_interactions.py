"""The interactions reader on fixture files in the official schemas of Amazon Reviews 2023 (JSON lines, gzipped)
and the UCSD Goodreads collection, and in CSV, TSV and Parquet: the protocol, the negatives, and the errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from once.errors import DataError
from once_plugins.datasets.interactions import read_interactions
from once_plugins.datasets.parts import InteractionsOptions

# user -> (item, time) clicks in file order (not time order); u4 has one click only
CLICKS = {
    "u1": [("B3", 30), ("B1", 10), ("B2", 20), ("B5", 40)],
    "u2": [("B1", 5), ("B4", 6), ("B2", 7)],
    "u3": [("B2", 1), ("B3", 2), ("B4", 3), ("B1", 4), ("B6", 5), ("B7", 6)],
    "u4": [("B1", 9)],
}
ITEMS = [f"B{i}" for i in range(1, 13)]


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf8") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def amazon_files(folder: Path, extra_rows: list[dict] = ()) -> tuple[Path, Path]:
    """Reviews and metadata as Amazon Reviews 2023 ships them (Books.jsonl.gz, meta_Books.jsonl.gz)."""
    reviews = [
        {
            "rating": 5.0,
            "title": "Great",
            "text": "loved it",
            "images": [],
            "asin": f"X{item}",
            "parent_asin": item,
            "user_id": user,
            "timestamp": 1_600_000_000_000 + time * 1000,
            "helpful_vote": 0,
            "verified_purchase": True,
        }
        for user, clicks in CLICKS.items()
        for item, time in clicks
    ]
    meta = [
        {
            "main_category": "Books" if i % 3 else None,  # a missing category
            "title": f"Book number {i}",
            "average_rating": 4.1,
            "rating_number": 12,
            "features": [],
            "description": [] if i == 2 else [f"About book {i}.", "Second paragraph."],  # an empty description
            "price": None,
            "images": [],
            "videos": [],
            "store": "Store",
            "categories": ["Books", "Fiction"],
            "details": {"Publisher": "P"},
            "parent_asin": item,
            "bought_together": None,
        }
        for i, item in enumerate(ITEMS, 1)
    ]
    return (
        write_jsonl_gz(folder / "Books.jsonl.gz", [*reviews, *extra_rows]),
        write_jsonl_gz(folder / "meta_Books.jsonl.gz", meta),
    )


def amazon_options(log: Path, items: Path, **changes) -> InteractionsOptions:
    return InteractionsOptions(
        log=log,
        items=items,
        columns={"user": "user_id", "item": "parent_asin", "time": "timestamp", "rating": "rating"},
        item_columns={"id": "parent_asin", "text": ["title", "description"], "categories": ["main_category"]},
        **{"eval_negatives": 3, "train_negatives": 2, **changes},
    )


def rows(split, user: str) -> list[int]:
    return [i for i, u in enumerate(split.user_ids) if u == user]


def test_leave_last_out_orders_each_users_clicks_by_time(tmp_path):
    corpus = read_interactions(amazon_options(*amazon_files(tmp_path)))
    items = corpus.items
    index = {item: i for i, item in enumerate(items.ids)}
    test, dev, train = corpus.splits["test"], corpus.splits["dev"], corpus.splits["train"]
    (row,) = rows(test, "u1")
    assert [items.ids[i] for i in test.history[row]] == ["B1", "B2", "B3"]  # by time, not file order
    clicked = test.candidates[row][test.labels[row] == 1]
    assert [items.ids[i] for i in clicked] == ["B5"] and len(test.candidates[row]) == 4
    (row,) = rows(dev, "u1")
    assert [items.ids[i] for i in dev.candidates[row][dev.labels[row] == 1]] == ["B3"]
    assert [[items.ids[i] for i in train.history[r]] for r in rows(train, "u1")] == [["B1"]]
    assert len(rows(train, "u3")) == 3 and not rows(test, "u4")  # u4 has one click: left out
    for split in corpus.splits.values():
        for r in range(len(split)):
            user_clicks = {index[item] for item, _ in CLICKS[split.user_ids[r]]}
            negatives = split.candidates[r][split.labels[r] == 0]
            assert len(set(negatives)) == len(negatives) and not set(negatives) & user_clicks and 0 not in negatives
    assert items.text["description"][index["B1"]] == "About book 1. Second paragraph."
    assert items.text["description"][index["B2"]] == "" and items.categories["main_category"][index["B3"]] == ""
    assert items.in_train[index["B1"]] and not items.in_train[0]


def test_the_same_log_reads_alike_from_csv_tsv_json_lines_and_parquet(tmp_path):
    log, items = amazon_files(tmp_path)
    reference = read_interactions(amazon_options(log, items))
    with gzip.open(log, "rt") as lines:
        records = [json.loads(line) for line in lines]
    table = pa.Table.from_pylist(records).select(["user_id", "parent_asin", "timestamp", "rating"])
    pq.write_table(table, tmp_path / "log.parquet")
    rows_ = table.to_pylist()
    for name, separator in (("log.csv", ","), ("log.tsv", "\t")):
        lines = [separator.join(table.column_names)] + [
            separator.join(str(r[c]) for c in table.column_names) for r in rows_
        ]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    for name in ("log.parquet", "log.csv", "log.tsv"):
        corpus = read_interactions(amazon_options(tmp_path / name, items))
        for split in ("train", "dev", "test"):
            a, b = corpus.splits[split], reference.splits[split]
            assert a.user_ids == b.user_ids
            np.testing.assert_array_equal(a.history.values, b.history.values)
            np.testing.assert_array_equal(a.candidates.values, b.candidates.values)


def test_ratings_k_core_and_logged_negatives(tmp_path):
    log = tmp_path / "goodreads_interactions.csv"  # UCSD's CSV: user_id, book_id, is_read, rating, is_reviewed
    lines = ["user_id,book_id,is_read,rating,is_reviewed"]
    for user in range(6):
        for book in range(8):
            rating = 5 if (book + user) % 2 else 1  # half liked, half not
            lines.append(f"{user},{book + 1},1,{rating},0")
    lines.append("9,12,1,5,0")  # a user with one liked book, and book 12 liked once: both out at k_core 2
    log.write_text("\n".join(lines) + "\n")
    books = tmp_path / "books.tsv"
    books.write_text("book_id\ttitle\n" + "".join(f"{b}\tTitle {b}\n" for b in range(1, 13)))
    options = InteractionsOptions(
        log=log,
        items=books,
        columns={"user": "user_id", "item": "book_id", "rating": "rating"},
        item_columns={"id": "book_id"},
        min_rating=4,
        k_core=2,
        negatives="logged",
        eval_negatives=4,
        train_negatives=2,
    )
    corpus = read_interactions(options)
    assert "9" not in corpus.splits["test"].user_ids
    every = {s: corpus.splits[s] for s in ("train", "dev", "test")}
    for split in every.values():
        for r in range(len(split)):
            user = int(split.user_ids[r])
            disliked = {int(corpus.items.ids[i]) for i in split.candidates[r][split.labels[r] == 0]}
            assert all((book - 1 + user) % 2 == 0 for book in disliked)  # the user's own logged non-clicks
            liked = {int(corpus.items.ids[i]) for i in split.candidates[r][split.labels[r] == 1]}
            assert all((book - 1 + user) % 2 == 1 for book in liked)
    assert "12" not in {corpus.items.ids[i] for i in every["train"].candidates.values}


def test_full_ranking_scores_every_item_the_user_never_clicked(tmp_path):
    corpus = read_interactions(amazon_options(*amazon_files(tmp_path), eval_negatives=0))
    test = corpus.splits["test"]
    (row,) = rows(test, "u3")
    assert len(test.candidates[row]) == len(ITEMS) - 6 + 1 and test.labels[row].sum() == 1


def test_temporal_split_cuts_by_time(tmp_path):
    corpus = read_interactions(amazon_options(*amazon_files(tmp_path), split="temporal", dev_share=0.2, test_share=0.2))
    times = {(u, item): t for u, clicks in CLICKS.items() for item, t in clicks}
    ids = corpus.items.ids

    def click_times(split):
        return [
            times[(split.user_ids[r], ids[split.candidates[r][split.labels[r] == 1][0]])] for r in range(len(split))
        ]

    assert max(click_times(corpus.splits["train"])) <= min(click_times(corpus.splits["dev"]))
    assert max(click_times(corpus.splits["dev"])) <= min(click_times(corpus.splits["test"]))


@pytest.mark.parametrize(
    ("damage", "message", "where"),
    [
        ("missing-column", "no column 'parent_asin'", "Books.jsonl.gz"),
        ("truncated-line", "cannot read this json file: JSON parse error", "Books.jsonl.gz"),
        ("bad-rating", "rating.* changed from number to string in row 14", "Books.jsonl.gz"),  # pyarrow's count
        ("unknown-item", "item id 'B99' is not in the item table", "Books.jsonl.gz: row 15"),
        ("corrupt-parquet", "cannot read this parquet file", "log.parquet"),
        ("missing-file", "file not found", "absent.jsonl"),
    ],
)
def test_bad_files_are_one_paragraph_errors_naming_the_file_and_row(tmp_path, damage, message, where):
    extra = {"bad-rating": [{"user_id": "u1", "parent_asin": "B1", "timestamp": 1, "rating": "five"}]}
    extra["unknown-item"] = [{"user_id": "u1", "parent_asin": "B99", "timestamp": 1, "rating": 5.0}]
    log, items = amazon_files(tmp_path, extra.get(damage, []))
    if damage == "missing-column":
        write_jsonl_gz(log, [{"user_id": "u1", "asin": "B1", "timestamp": 1, "rating": 5.0}])
    elif damage == "truncated-line":
        with gzip.open(log, "rt") as source:
            content = source.read()
        with gzip.open(log, "wt") as out:
            out.write(content[: len(content) // 2 + 7])  # within a line
    elif damage == "corrupt-parquet":
        log = tmp_path / "log.parquet"
        pq.write_table(pa.table({"user_id": ["u1"], "parent_asin": ["B1"], "timestamp": [1], "rating": [5.0]}), log)
        log.write_bytes(log.read_bytes()[:-12])
    elif damage == "missing-file":
        log = tmp_path / "absent.jsonl"
    with pytest.raises(DataError, match=message) as error:
        read_interactions(amazon_options(log, items))
    assert where in error.value.where


def test_too_few_clicks_for_the_protocol_is_an_error_that_says_what_to_change(tmp_path):
    log, items = amazon_files(tmp_path)
    with pytest.raises(DataError, match="leaves no train impressions") as error:
        read_interactions(amazon_options(log, items, k_core=20))
    assert "k_core" in error.value.hint


def test_a_text_rating_in_csv_names_its_row(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,parent_asin,timestamp,rating\nu1,B1,1,5\nu1,B2,2,five\n")
    _, items = amazon_files(tmp_path)
    with pytest.raises(DataError, match="column 'rating' holds 'five', not a number") as error:
        read_interactions(amazon_options(log, items, min_rating=4))
    assert error.value.where.endswith("log.csv: row 2")


def ucsd_goodreads_files(folder: Path) -> tuple[Path, Path]:
    """goodreads_interactions_poetry.json.gz and goodreads_books_poetry.json.gz in UCSD's schema (strings for
    numbers, nested shelves and authors, date_added as Goodreads prints it)."""
    rng = np.random.default_rng(0)
    topics = ["moon sea night", "war iron fire", "love rose heart", "city rain street"]
    books = [
        {
            "isbn": "",
            "text_reviews_count": "1",
            "series": [],
            "popular_shelves": [{"count": "3", "name": "to-read"}],
            "average_rating": "4.00",
            "description": "" if b % 5 == 0 else f"Poems of {topics[b % 4]}.",
            "authors": [{"author_id": str(b % 7), "role": ""}],
            "book_id": str(1000 + b),
            "ratings_count": "3",
            "title": f"{topics[b % 4]} {b}",
            "title_without_series": f"{topics[b % 4]} {b}",
        }
        for b in range(40)
    ]
    rows = []
    for user in range(60):
        topic = user % 4
        for n, b in enumerate(rng.choice(np.arange(topic, 40, 4), 6, replace=False)):
            day = 1 + (n * 7 + user) % 28  # file order is not time order: the reader sorts by date_added
            rows.append(
                {
                    "user_id": f"{user:032x}",
                    "book_id": str(1000 + int(b)),
                    "review_id": f"r{user}-{n}",
                    "is_read": True,
                    "rating": int(rng.integers(0, 6)),
                    "review_text_incomplete": "",
                    "date_added": f"Mon Aug {day:02d} 13:41:57 -0700 2011",
                    "read_at": "",
                }
            )
    rng.shuffle(rows)
    return (
        write_jsonl_gz(folder / "goodreads_interactions_poetry.json.gz", rows),
        write_jsonl_gz(folder / "goodreads_books_poetry.json.gz", books),
    )


def test_the_goodreads_and_amazon_recipes_read_their_raw_files_and_train(tmp_path, registry, monkeypatch):
    from once.assembly import load_data
    from once.recipe import load_recipe
    from once.train import train

    log, books = ucsd_goodreads_files(tmp_path)
    monkeypatch.setenv("GOODREADS_INTERACTIONS", str(log))
    monkeypatch.setenv("GOODREADS_BOOKS", str(books))
    small = ["model.item={name: nrms, word_dim: 16, heads: 2, head_dim: 8, query_dim: 8}", "train.epochs=2"]
    small += ["model.user={name: nrms, heads: 2, query_dim: 8}", "train.lr=0.01", "device=cpu", "dataset.k_core=2"]
    resolved = load_recipe("goodreads-interactions", registry, small)
    data = load_data(resolved)
    test = data.splits["test"]
    assert len(test) == 60 and all(len(c) == 20 for c in (test.candidates[i] for i in range(len(test))))
    result = train(resolved, runs_root=tmp_path / "runs")
    assert 0 <= result.test["auc"] <= 1 and result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]
    reviews, meta = amazon_files(tmp_path)
    monkeypatch.setenv("AMAZON_REVIEWS", str(reviews))
    monkeypatch.setenv("AMAZON_META", str(meta))
    overrides = ["dataset.k_core=1", "dataset.eval_negatives=3", "device=cpu"]
    amazon = load_data(load_recipe("amazon-nrms", registry, overrides))
    assert len(amazon.splits["test"]) == 3  # u1, u2, u3; u4 has one review
