"""The Adressa reader on fixture event files in the official schema (one JSON event per line, daily files named
20170101 ... 20170107, plain or gzipped): items, NewsRecLib's protocol, live negatives, errors, and a fuzz."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from test_fuzz import FUZZ, count, mutated

from once.errors import DataError
from once_plugins.datasets.adressa import AdressaDataset, read_adressa
from once_plugins.datasets.parts import AdressaOptions

DAY = 86_400
START = 1_483_228_800  # 2017-01-01 00:00 UTC, the first day of one_week
TITLES = {
    "a1": ("Ny bro over Nidelva", "nyheter|trondheim", "bro,trondheim,nidelva"),
    "a2": ("Snøstorm i Midt-Norge", "nyheter|vaer", None),
    "a3": ("Rosenborg vant igjen", "sport|fotball", "rosenborg"),
    "a4": ("Konsert i Olavshallen", "kultur", None),  # no second part: no subcategory
    "a5": ("Ny skole på Byåsen", "nyheter|trondheim", None),
    "a6": ("Trikken står", "nyheter|trondheim", None),
    "a7": ("Skiløper tok gull", "sport|ski", None),
    "a8": ("Kafé åpner i Bakklandet", "kultur|mat", None),
    "a9": ("Uten kategori", None, None),  # never seen with a category1: not an item (require_metadata)
    "a10": ("Valget nærmer seg", "nyheter|politikk", None),
}
for n in range(11, 19):
    TITLES[f"a{n}"] = (f"Crowd article {n}", "sport|fotball" if n < 15 else "kultur|musikk", None)


def at(day: int, hour: float) -> int:
    return START + (day - 1) * DAY + int(hour * 3600)


def event(user: str, article: str | None, day: int, hour: float, n: int, **fields) -> dict:
    """One event as Adressa logs it; an article's metadata unless a field is given as None (then left out)."""
    row = {
        "eventId": 1_000_000 + n,
        "city": "trondheim",
        "activeTime": 20,
        "url": f"http://adressa.no/{article or ''}",
        "referrerHostClass": "internal",
        "region": "sor-trondelag",
        "time": at(day, hour),
        "userId": f"cx:{user}:1",
        "sessionStart": False,
        "deviceType": "Mobile",
        "sessionStop": False,
        "country": "no",
        "os": "Android",
    }
    if article is not None:
        title, category, keywords = TITLES[article]
        row.update(id=article, title=title, category1=category, keywords=keywords)
        row["publishtime"] = "2016-12-31T20:00:00.000Z"
        row["profile"] = [{"item": "trondheim", "groups": [{"group": "location", "weight": 0.5}]}]
    row.update(fields)
    return {k: v for k, v in row.items() if v is not None}


def log() -> dict[int, list[dict]]:
    """day -> events in file order (not always time order)."""
    days: dict[int, list[dict]] = {d: [] for d in range(1, 8)}
    n = iter(range(10_000))

    def add(user, article, day, hour, **fields):
        days[day].append(event(user, article, day, hour, next(n), **fields))

    add("u1", None, 1, 9)  # the front page: no article id
    add("u1", "a1", 1, 10)
    add("u1", "a2", 1, 11, title=None, category1=None)  # no title: not a click; a2's text comes from day 2
    add("u2", "a3", 1, 12)
    add("u1", "a2", 2, 9)
    days[2].append(dict(days[2][-1]))  # the same event logged twice
    add("u2", "a4", 2, 13)
    add("u2", "a5", 3, 8)
    add("u2", "a9", 4, 10)  # a9 never has a category1
    add("u1", "a7", 5, 20)  # later in the day, earlier in the file
    add("u1", "a6", 5, 8)
    for day in (5, 6, 7):  # two crowds reading all day: the articles live at any click
        for hour in range(0, 24, 2):
            add("u5", f"a{11 + hour // 2 % 4}", day, hour + 0.5)
            add("u6", f"a{15 + hour // 2 % 4}", day, hour + 1)
    add("u1", "a8", 6, 10.2)
    add("u3", "a1", 6, 11.2)  # no history before day 6: left out of train
    add("u2", "a5", 6, 12.2)  # read again: still a click
    add("u1", "a3", 6, 15.2)
    add("u1", "a10", 7, 9.2)
    add("u2", "a8", 7, 10.2)
    add("u3", "a4", 7, 12.2)
    add("u2", "a1", 7, 14.2)
    add("u4", "a6", 7, 15.2)  # u4 has no history at all
    return days


def write_adressa(folder: Path, days: dict[int, list[dict]] | None = None, gzipped=(2, 7)) -> Path:
    """one_week as it unpacks: a file per day, days 2 and 7 gzipped here (the three-month files may be)."""
    folder.mkdir(parents=True, exist_ok=True)
    for day, events in (days or log()).items():
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        name = f"2017010{day}"
        if day in gzipped:
            with gzip.open(folder / f"{name}.gz", "wt", encoding="utf8") as out:
                out.write(text)
        else:
            (folder / name).write_text(text, encoding="utf8")
    (folder / "README.txt").write_text("not a day\n")
    return folder


def options(folder: Path, **changes) -> AdressaOptions:
    return AdressaOptions(path=folder, **{"negatives": 4, **changes})


def named(corpus, values) -> list[str]:
    return [corpus.items.ids[i] for i in values]


def rows_of(split, user: str) -> list[int]:
    return [i for i, u in enumerate(split.user_ids) if u == f"cx:{user}:1"]


def positives(corpus, split) -> list[str]:
    return [named(corpus, split.candidates[r][split.labels[r] == 1])[0] for r in range(len(split))]


def clicked_by(days) -> dict[str, set[str]]:
    clicked: dict[str, set[str]] = {}
    for events in days.values():
        for e in events:
            if "id" in e and "title" in e and e["id"] != "a9":
                clicked.setdefault(e["userId"], set()).add(e["id"])
    return clicked


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_adressa(tmp_path / "one_week")


def test_items_take_each_field_from_the_events_that_carry_it(folder):
    corpus = read_adressa(options(folder))
    items = corpus.items
    index = {item: i for i, item in enumerate(items.ids)}
    assert set(items.ids) == {"", *TITLES} - {"a9"} and items.ids[0] == ""  # a9 never had a category1
    assert items.text["title"][index["a2"]] == "Snøstorm i Midt-Norge"  # its first event had no title
    assert (items.categories["category"][index["a2"]], items.categories["subcategory"][index["a2"]]) == (
        "nyheter",
        "vaer",
    )
    assert (items.categories["category"][index["a4"]], items.categories["subcategory"][index["a4"]]) == ("kultur", "")
    assert items.text["keywords"][index["a1"]] == "bro,trondheim,nidelva" and items.text["keywords"][index["a2"]] == ""
    assert not items.in_train[0] and items.in_train[index["a8"]]
    assert corpus.notes == [
        "skipped 1 event(s) without an article id",
        "skipped 2 article event(s) without a title, or of an article never seen with a title and a category1 "
        "(require_metadata)",
        "skipped 1 duplicate event(s) (the same user, article and second)",
        "left out 2 click(s) whose user had fewer than 1 history click(s)",  # u3's day-6 one, u4's day-7 one
    ]


def test_history_is_the_days_before_the_split_oldest_first(folder):
    corpus = read_adressa(options(folder))
    train = corpus.splits["train"]
    u1 = rows_of(train, "u1")
    assert [named(corpus, train.history[r]) for r in u1] == [["a1", "a2", "a6", "a7"]] * 2  # time, not file order
    assert [positives(corpus, train)[r] for r in u1] == ["a8", "a3"]
    (u2,) = rows_of(train, "u2")
    assert named(corpus, train.history[u2]) == ["a3", "a4", "a5"] and positives(corpus, train)[u2] == "a5"
    assert not rows_of(train, "u3")  # no click before day 6
    evaluation = {name: corpus.splits[name] for name in ("dev", "test")}
    seen = {}
    for split in evaluation.values():
        for r in range(len(split)):
            seen[(split.user_ids[r], positives(corpus, split)[r])] = named(corpus, split.history[r])
    assert seen == {
        ("cx:u1:1", "a10"): ["a1", "a2", "a6", "a7", "a8", "a3"],  # day 6 is history for day 7
        ("cx:u2:1", "a8"): ["a3", "a4", "a5", "a5"],  # a re-read stays in the history
        ("cx:u2:1", "a1"): ["a3", "a4", "a5", "a5"],
        ("cx:u3:1", "a4"): ["a1"],
        **{key: value for key, value in seen.items() if key[0] in ("cx:u5:1", "cx:u6:1")},
    }
    assert len(corpus.splits["dev"]) == 6 and len(corpus.splits["test"]) == 22  # 28 day-7 clicks: 20%, rounded up


def test_candidates_are_the_click_and_unclicked_articles(folder):
    days = log()
    corpus = read_adressa(options(folder))
    clicked = clicked_by(days)
    for split in corpus.splits.values():
        for r in range(len(split)):
            labels, candidates = split.labels[r], named(corpus, split.candidates[r])
            assert len(candidates) == 5 and labels.sum() == 1 and len(set(candidates)) == 5
            negatives = {c for c, label in zip(candidates, labels, strict=True) if label == 0}
            assert not negatives & clicked[split.user_ids[r]] and "" not in negatives


def test_splits_are_cut_by_day_and_the_same_seed_gives_the_same_impressions(folder):
    days = log()
    times = {}
    for events in days.values():
        for e in events:
            times.setdefault((e["userId"], e.get("id")), []).append(e["time"])
    first = read_adressa(options(folder))
    for name, (low, high) in {"train": (at(6, 0), at(7, 0)), "dev": (at(7, 0), at(8, 0))}.items():
        split = first.splits[name]
        for r, item in enumerate(positives(first, split)):
            assert any(low <= t < high for t in times[(split.user_ids[r], item)])
    again = read_adressa(options(folder))
    other = read_adressa(options(folder, seed=1))
    for name in ("train", "dev", "test"):
        a, b = first.splits[name], again.splits[name]
        assert a.user_ids == b.user_ids and a.impression_ids == b.impression_ids
        np.testing.assert_array_equal(a.candidates.values, b.candidates.values)
        np.testing.assert_array_equal(a.labels.values, b.labels.values)
        np.testing.assert_array_equal(a.history.values, b.history.values)
    assert not np.array_equal(first.splits["train"].candidates.values, other.splits["train"].candidates.values)
    assert first.splits["dev"].user_ids != other.splits["dev"].user_ids  # dev is drawn from day 7 by the seed
    assert AdressaDataset(options(folder)).fingerprint() == AdressaDataset(options(folder)).fingerprint()
    assert AdressaDataset(options(folder)).fingerprint() != AdressaDataset(options(folder, seed=1)).fingerprint()


def test_live_negatives_were_read_or_published_in_the_hours_before_the_click(folder):
    days = log()
    corpus = read_adressa(options(folder, negative_pool="live", live_hours=12))
    assert not any("topped up" in note for note in corpus.notes)
    events = [e for es in days.values() for e in es if "id" in e and "title" in e and e["id"] != "a9"]
    train = corpus.splits["train"]
    clicks = sorted(  # train impressions come in time order
        (e["time"], e["userId"], e["id"]) for e in events if at(6, 0) <= e["time"] < at(7, 0)
    )
    clicks = [c for c in clicks if c[1] != "cx:u3:1"]  # left out: no history
    assert [(u, item) for _, u, item in clicks] == list(zip(train.user_ids, positives(corpus, train), strict=True))
    clicked = clicked_by(days)
    for r, (time, user, _) in enumerate(clicks):
        negatives = named(corpus, train.candidates[r][train.labels[r] == 0])
        live = {e["id"] for e in events if time - 12 * 3600 <= e["time"] <= time}
        assert len(negatives) == 4 and set(negatives) <= live - clicked[user], (r, negatives, live)
    catalogue = read_adressa(options(folder))
    assert not np.array_equal(catalogue.splits["train"].candidates.values, train.candidates.values)


def test_a_window_with_too_few_live_articles_is_topped_up_from_the_catalogue(folder):
    corpus = read_adressa(options(folder, negative_pool="live", live_hours=0.1, negatives=6))
    assert any("topped up from the catalogue" in note for note in corpus.notes)
    assert all(len(c) == 7 for split in corpus.splits.values() for c in map(split.candidates.__getitem__, range(3)))


def test_require_metadata_false_keeps_every_article_event(folder):
    corpus = read_adressa(options(folder, require_metadata=False))
    index = {item: i for i, item in enumerate(corpus.items.ids)}
    assert corpus.items.categories["category"][index["a9"]] == "" and corpus.items.text["title"][index["a9"]]
    train = corpus.splits["train"]
    (u2,) = rows_of(train, "u2")
    assert named(corpus, train.history[u2]) == ["a3", "a4", "a5", "a9"]  # a9 counts now
    (first, _) = rows_of(train, "u1")
    assert named(corpus, train.history[first]) == ["a1", "a2", "a2", "a6", "a7"]  # the untitled day-1 read too


def test_history_limits(folder):
    corpus = read_adressa(options(folder, max_history=2, min_history=4))
    train = corpus.splits["train"]
    assert set(train.user_ids) == {"cx:u1:1", "cx:u5:1", "cx:u6:1"}  # u2 has 3 clicks before day 6
    assert [named(corpus, train.history[r]) for r in rows_of(train, "u1")] == [["a6", "a7"]] * 2  # the latest two


def event_line(**fields) -> str:
    return json.dumps(event("u1", "a1", 1, 10, 0, **fields)) + "\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"eventId": 1, "userId": "cx:u1:1", "id": "a1", "time": 1483264800, "tit', "not valid JSON"),
        (event_line(time="1483264800"), "field 'time' holds \"1483264800\", not unix seconds"),
        (event_line(time=1.5e9 + 0.5), "field 'time' holds 1500000000.5, not unix seconds"),
        (event_line(title=["a", "list"]), r'field \'title\' holds \["a", "list"\], not a string'),
        (event_line(userId=None), "the article event has no 'userId'"),
        (event_line(publishtime="yesterday"), "field 'publishtime' holds \"yesterday\", not an ISO 8601 time"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
    ids=["truncated", "time-as-text", "fractional-time", "title-list", "no-user", "bad-publishtime", "array"],
)
def test_a_bad_line_names_its_file_line_and_field(tmp_path, line, message):
    folder = write_adressa(tmp_path / "one_week")
    path = folder / "20170103"
    lines = path.read_text().splitlines(True)
    path.write_text(lines[0] + line)
    with pytest.raises(DataError, match=message) as error:
        read_adressa(options(folder))
    assert error.value.where == f"{path}:2"


def test_bad_folders_and_files_are_one_paragraph_errors(tmp_path):
    with pytest.raises(DataError, match="Adressa folder not found") as error:
        read_adressa(options(tmp_path / "absent"))
    assert "reclab.idi.ntnu.no" in error.value.hint and error.value.where == str(tmp_path / "absent")
    archive = tmp_path / "three_month.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match="a tar archive, not a folder") as error:
        read_adressa(options(archive))
    assert "tar xzf three_month.tar.gz" in error.value.hint
    (tmp_path / "download" / "one_week").mkdir(parents=True)
    with pytest.raises(DataError, match="no daily event files") as error:
        read_adressa(options(tmp_path / "download"))
    assert error.value.hint == f"Point dataset.path at {tmp_path / 'download' / 'one_week'}."
    five = write_adressa(tmp_path / "five", {d: events for d, events in log().items() if d <= 5})
    with pytest.raises(DataError, match="test_day 7 needs at least 7") as error:
        read_adressa(options(five))
    assert "dataset.train_day" in error.value.hint
    folder = write_adressa(tmp_path / "one_week")
    (folder / "20170107.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match="cannot read the file") as error:
        read_adressa(options(folder))
    assert error.value.where == str(folder / "20170107.gz")
    folder = write_adressa(tmp_path / "again")
    (folder / "20170105").write_bytes('{"title": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text") as error:
        read_adressa(options(folder))
    assert error.value.where == f"{folder / '20170105'}:1"
    (folder / "20170105").write_text("\n\n")
    with pytest.raises(DataError, match="file is empty"):
        read_adressa(options(folder))


def test_a_protocol_that_leaves_a_split_empty_says_what_to_change(folder):
    with pytest.raises(DataError, match="leaves no train impressions") as error:
        read_adressa(options(folder, min_history=50))
    assert "min_history" in error.value.hint
    with pytest.raises(ValidationError, match="test_day \\(6\\) must come after train_day \\(6\\)"):
        AdressaOptions(path=folder, train_day=6, test_day=6)


def test_the_recipe_reads_the_folder_named_by_its_variable(folder, registry, monkeypatch):
    from once.assembly import load_data
    from once.recipe import load_recipe

    monkeypatch.setenv("ADRESSA", str(folder))
    resolved = load_recipe("adressa-nrms", registry, ["dataset.negatives=4", "device=cpu"])
    assert resolved.recipe.dataset.name == "adressa"
    data = load_data(resolved)
    assert len(data.splits["test"]) == 22 and len(data.splits["test"].candidates[0]) == 5


# ---- fuzz (tests/test_fuzz.py's mutations): a damaged daily file reads, or is our error naming it ----


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory) -> Path:
    return write_adressa(tmp_path_factory.mktemp("adressa") / "one_week", gzipped=())


FUZZ_LINES = {day: [json.dumps(e, ensure_ascii=False) + "\n" for e in events] for day, events in log().items()}


@pytest.mark.parametrize("day", [1, 6, 7])
@FUZZ
@given(data=st.data())
def test_adressa_files(day, data, fuzz_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case") / "one_week"
    shutil.copytree(fuzz_folder, folder)
    path = folder / f"2017010{day}"
    raw = data.draw(mutated(FUZZ_LINES[day]))
    count(f"Adressa day {day}")
    if data.draw(st.booleans()):  # gzipped, sometimes cut short
        path.unlink()
        path = path.with_name(path.name + ".gz")
        packed = gzip.compress(raw)
        path.write_bytes(packed[: data.draw(st.integers(0, len(packed)))] if data.draw(st.booleans()) else packed)
    else:
        path.write_bytes(raw)
    negative_pool = data.draw(st.sampled_from(["catalogue", "live"]))
    try:
        corpus = read_adressa(options(folder, negative_pool=negative_pool))
    except DataError as error:  # the file and line, or the folder when the protocol cannot be met
        assert error.where and str(folder) in error.where, (error, error.where)
        return
    for split in corpus.splits.values():
        assert len(split.history) == len(split.candidates) == len(split.labels) == len(split.impression_ids)
        assert split.candidates.values.max(initial=0) < len(corpus.items.ids)
        assert (split.labels.values >= 0).all() and all(split.labels[r].sum() == 1 for r in range(len(split)))
