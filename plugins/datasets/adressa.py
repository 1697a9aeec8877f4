"""The Adressa reader (Gulla et al., "The Adressa dataset for news recommendation", WI 2017;
https://reclab.idi.ntnu.no/dataset/): a folder of daily JSON-lines event files, as `one_week.tar.gz` and
`three_month.tar.gz` unpack (`one_week/20170101` ... `20170107`), each file plain or gzipped (`20170101.gz`).

Adressa logs page views, not impressions, so impressions are built by a protocol. This one is NewsRecLib's
(Iana, Glavaš and Paulheim, EMNLP 2023 demos: `newsreclib/data/components/adressa_dataframe.py` with
`configs/data/adressa_rec.yaml`), which adapts Efficient-FedRec's `preprocess/adressa_raw.py` (Yi et al., EMNLP
2021). The defaults of `AdressaOptions` are its numbers:

1. Clicks: events with an article `id` and a `title`, of articles seen at least once with both a `title` and a
   `category1` (`require_metadata`; false keeps every event with an `id`). Other events are skipped and counted.
   The same user, article and second twice is one event logged twice: kept once (NewsRecLib keeps both).
2. Days: a click's day is its file's date, counted from the earliest file (20170101 is day 1). Clicks before
   `train_day` (6) are history only; those on days train_day .. test_day - 1 (day 6) are training impressions;
   those from `test_day` (7) on are drawn at random into dev (`dev_share`, 20%, rounded up) and test (the rest).
3. History: a training impression's history is the user's clicks before train_day, a dev or test impression's
   the user's clicks before test_day: fixed for all of a user's impressions in a split, oldest first (by time,
   then file order), repeats kept. Impressions with fewer than `min_history` (1) history clicks are left out.
4. Candidates: the click plus `negatives` (20) articles the user never clicked on any day, without repeats, in
   random order: drawn uniformly from every article (`negative_pool: catalogue`, the protocol's), or from the
   articles live at the click: published or read by anyone in the `live_hours` (24) before it, in proportion to
   those events (`negative_pool: live`, an option of ours, not NewsRecLib's; rows whose window holds too few
   are topped up from the catalogue, counted). Sessions (`sessionStart`, `sessionStop`) are not used.

Everything random comes from `seed`. Items: `title` and `keywords` as text (the first event that carries each),
`category1`'s first part ("nyheter" in "nyheter|trondheim") as `category` and its second as `subcategory`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import zlib
from array import array
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from once.api import Corpus, DataError, Impressions, Items, Ragged, file_stamp
from once_plugins.datasets.parts import AdressaOptions

DAILY = re.compile(r"(\d{8})(\.jsonl?)?(\.gz)?")  # 20170101, 20170101.gz (and .json/.jsonl before .gz)
DOWNLOAD = (
    "Download one_week.tar.gz (or three_month.tar.gz) from https://reclab.idi.ntnu.no/dataset/, unpack it "
    "(tar xzf one_week.tar.gz) and point dataset.path at the one_week/ folder."
)
LIVE_ROUNDS = 30  # rounds of drawing from the live window before a row is filled exactly
MAX_TIME = 2**40  # unix seconds beyond this are not times (year 36812)


def daily_files(root: Path) -> list[tuple[int, Path]]:
    """(day, file) for the folder's daily event files, day 1 being the earliest file's date."""
    if not root.exists():
        raise DataError("Adressa folder not found", where=str(root), hint=DOWNLOAD)
    if not root.is_dir():
        archive = root.name.endswith((".tar.gz", ".tgz", ".tar"))
        raise DataError(
            "a tar archive, not a folder" if archive else "not a folder of daily event files",
            where=str(root),
            hint=f"Unpack it first (tar xzf {root.name}) and point dataset.path at the folder it makes."
            if archive
            else DOWNLOAD,
        )
    dated: dict[datetime, Path] = {}
    for path in sorted(root.iterdir()):
        match = DAILY.fullmatch(path.name)
        if not match or not path.is_file():
            continue
        try:
            day = datetime.strptime(match.group(1), "%Y%m%d")
        except ValueError:
            raise DataError("the file is named like a day (YYYYMMDD) but is no date", where=str(path)) from None
        if day in dated:
            raise DataError(f"two files for {day:%Y-%m-%d}: {dated[day].name} and {path.name}", where=str(root))
        dated[day] = path
    if not dated:
        inner = [f.name for f in sorted(root.iterdir()) if f.is_dir() and f.name in ("one_week", "three_month")]
        raise DataError(
            "no daily event files (named like 20170101 or 20170101.gz)",
            where=str(root),
            hint=f"Point dataset.path at {root / inner[0]}." if inner else DOWNLOAD,
        )
    first = min(dated)
    return [((day - first).days + 1, dated[day]) for day in sorted(dated)]


def _lines(path: Path):
    """(line number, text) of each non-blank line of a plain or gzipped file; damage is an error naming it."""
    number, empty = 0, True
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf8")
                except UnicodeDecodeError as error:
                    raise DataError(
                        f"not UTF-8 text ({error.reason} at byte {error.start})", where=f"{path}:{number}"
                    ) from None
                if line.strip():
                    empty = False
                    yield number, line
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"cannot read the file after line {number} ({type(error).__name__}: {error})",
            where=str(path),
            hint="A damaged download or unpacking: fetch the archive again.",
        ) from None
    if empty:
        raise DataError("file is empty", where=str(path), hint="A daily file holds one JSON event per line.")


def _describe(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return (text[:40] + "...") if len(text) > 40 else text


def _text(event: dict, field: str, where: str) -> str | None:
    value = event.get(field)
    if value is None or isinstance(value, str):
        return value
    raise DataError(f"field '{field}' holds {_describe(value)}, not a string", where=where)


def _key(event: dict, field: str, where: str) -> str | None:
    """An id (`id`, `userId`): text, or a whole number read as its digits."""
    value = event.get(field)
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"field '{field}' holds {_describe(value)}, not an id (a string)", where=where)


def _time(event: dict, where: str) -> int:
    value = event.get("time")
    if value is None:
        raise DataError("the event has no 'time'", where=where, hint="Adressa events carry unix seconds in 'time'.")
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    if not whole:
        raise DataError(f"field 'time' holds {_describe(value)}, not unix seconds (a whole number)", where=where)
    if not 0 <= value < MAX_TIME:
        raise DataError(f"field 'time' holds {_describe(value)}, not unix seconds since 1970", where=where)
    return int(value)


def _publish_time(value: str, where: str) -> float:
    """An ISO 8601 `publishtime` ("2017-01-01T12:15:03.000Z") as unix seconds; no zone is UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    except (ValueError, OverflowError):
        raise DataError(f"field 'publishtime' holds {_describe(value)}, not an ISO 8601 time", where=where) from None


class Events:
    """Every article event of the folder as columns (user, article, time, day, whether it has a title), and the
    articles' fields (the first event that carries each)."""

    def __init__(self, files: list[tuple[int, Path]]) -> None:
        self.article_index: dict[str, int] = {}
        self.user_index: dict[str, int] = {}
        self.article_ids: list[str] = []
        self.user_ids: list[str] = []
        self.titles: list[str | None] = []
        self.keywords: list[str | None] = []
        self.categories: list[str | None] = []
        self.published: list[float] = []
        self.complete: list[bool] = []  # seen on one event with both a title and a category1
        self.users, self.items, self.times, self.days = array("q"), array("q"), array("q"), array("q")
        self.titled = bytearray()
        self.without_id = 0
        for day, path in files:
            for number, line in _lines(path):
                self._add(line, day, path, number)

    def _add(self, line: str, day: int, path: Path, number: int) -> None:
        where = f"{path}:{number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"not valid JSON ({error.msg} at column {error.colno})",
                where=where,
                hint="Each line is one JSON event; a cut-off line means a damaged download or unpacking.",
            ) from None
        except (ValueError, RecursionError) as error:  # a number too long to read, nesting too deep
            raise DataError(f"not readable JSON ({type(error).__name__}: {error})", where=where) from None
        if not isinstance(event, dict):
            raise DataError(f"expected a JSON object (one event per line), found {_describe(event)}", where=where)
        article = _key(event, "id", where)
        if article is None:  # a front page or other page without an article
            self.without_id += 1
            return
        user = _key(event, "userId", where)
        if user is None:
            raise DataError("the article event has no 'userId'", where=where)
        time = _time(event, where)
        title, category = _text(event, "title", where), _text(event, "category1", where)
        keywords, published = _text(event, "keywords", where), _text(event, "publishtime", where)
        index = self.article_index.get(article)
        if index is None:
            index = self.article_index[article] = len(self.article_ids)
            self.article_ids.append(article)
            self.titles.append(None)
            self.keywords.append(None)
            self.categories.append(None)
            self.published.append(math.nan)
            self.complete.append(False)
        if self.titles[index] is None:
            self.titles[index] = title
        if self.categories[index] is None:
            self.categories[index] = category
        if self.keywords[index] is None:
            self.keywords[index] = keywords
        if published:
            moment = _publish_time(published, where)
            if math.isnan(self.published[index]):
                self.published[index] = moment
        if title is not None and category is not None:
            self.complete[index] = True
        owner = self.user_index.get(user)
        if owner is None:
            owner = self.user_index[user] = len(self.user_ids)
            self.user_ids.append(user)
        self.users.append(owner)
        self.items.append(index)
        self.times.append(time)
        self.days.append(day)
        self.titled.append(title is not None)


class Negatives:
    """Unclicked candidates: never an article the user clicked on any day, never twice in one impression."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, rng: np.random.Generator) -> None:
        self.num_items, self.rng = num_items, rng
        self.clicked = np.unique(users * num_items + items)
        self.clicked_count = np.bincount(self.clicked // num_items, minlength=int(users.max(initial=0)) + 1)
        self.topped_up = 0

    def available(self, owners: np.ndarray) -> np.ndarray:
        """How many articles each owner never clicked."""
        return self.num_items - 1 - self.clicked_count[owners]

    def invalid(self, owners: np.ndarray, chosen: np.ndarray, used: np.ndarray) -> np.ndarray:
        """Used cells holding padding, an article the owner clicked, or an article an earlier cell holds."""
        keys = owners[:, None] * self.num_items + chosen
        at = np.minimum(np.searchsorted(self.clicked, keys), len(self.clicked) - 1)
        bad = (self.clicked[at] == keys) | (chosen == 0)
        order = np.argsort(chosen, axis=1, kind="stable")
        ranked = np.take_along_axis(chosen, order, 1)
        repeated = np.zeros(chosen.shape, bool)
        repeated[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        again = np.zeros(chosen.shape, bool)
        np.put_along_axis(again, order, repeated, 1)
        return (bad | again) & used

    def catalogue(self, owners: np.ndarray, chosen: np.ndarray, used: np.ndarray, missing: np.ndarray) -> None:
        """Fill the missing cells uniformly from every article (each row asks for at most what its owner never
        clicked, so this ends)."""
        while missing.any():
            chosen[missing] = self.rng.integers(1, self.num_items, int(missing.sum()))
            missing = self.invalid(owners, chosen, used)

    def live(
        self,
        owners: np.ndarray,
        times: np.ndarray,
        chosen: np.ndarray,
        used: np.ndarray,
        presence: tuple[np.ndarray, np.ndarray],
        window: float,
    ) -> None:
        """Fill the rows with articles that had an event (a read, or their publication) in the window before
        each row's time, in proportion to those events; rows whose window holds too few are topped up."""
        moments, articles = presence
        low = np.searchsorted(moments, times - window, side="left")
        high = np.searchsorted(moments, times, side="right")
        span = high - low
        missing = used.copy()
        for _ in range(LIVE_ROUNDS):
            rows, columns = np.nonzero(missing)
            if not len(rows):
                return
            drawn = low[rows] + np.floor(self.rng.random(len(rows)) * span[rows]).astype(np.int64)
            chosen[rows, columns] = np.where(span[rows] > 0, articles[np.minimum(drawn, len(articles) - 1)], 0)
            missing = self.invalid(owners, chosen, used)
        for row in np.unique(np.nonzero(missing)[0]):  # the live window is (nearly) exhausted: take what is left
            pool = np.unique(articles[low[row] : high[row]])
            keys = owners[row] * self.num_items + pool
            at = np.minimum(np.searchsorted(self.clicked, keys), len(self.clicked) - 1)
            taken = chosen[row][used[row] & ~missing[row]]
            pool = pool[(self.clicked[at] != keys) & ~np.isin(pool, taken)]
            cells = np.flatnonzero(missing[row])
            fill = self.rng.permutation(pool)[: len(cells)]
            chosen[row, cells[: len(fill)]] = fill
            missing[row, cells[: len(fill)]] = False
            self.topped_up += int(len(cells) > len(fill))
        self.catalogue(owners, chosen, used, missing)


def _ragged_rows(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, limit: int | None) -> Ragged:
    """Rows `rows` of a ragged array (the latest `limit` values of each) as a new ragged array."""
    starts, lengths = offsets[:-1][rows], np.diff(offsets)[rows]
    if limit is not None:
        starts, lengths = starts + np.maximum(lengths - limit, 0), np.minimum(lengths, limit)
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    gathered = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(int(new_offsets[-1]))
    return Ragged(values[gathered].astype(np.int64), new_offsets)


def read_adressa(options: AdressaOptions) -> Corpus:
    files = daily_files(options.path)
    last_day = files[-1][0]
    if last_day < options.test_day:
        raise DataError(
            f"the folder's days run from {files[0][1].name} (day 1) to {files[-1][1].name} (day {last_day}); "
            f"test_day {options.test_day} needs at least {options.test_day}",
            where=str(options.path),
            hint="Set dataset.train_day and dataset.test_day for the days you have (the one-week release has 7).",
        )
    events = Events(files)
    notes = [f"skipped {events.without_id} event(s) without an article id"] if events.without_id else []
    users = np.frombuffer(events.users, np.int64) if events.users else np.zeros(0, np.int64)
    articles = np.frombuffer(events.items, np.int64) if events.items else np.zeros(0, np.int64)
    times = np.frombuffer(events.times, np.int64) if events.times else np.zeros(0, np.int64)
    days = np.frombuffer(events.days, np.int64) if events.days else np.zeros(0, np.int64)
    titled = np.frombuffer(bytes(events.titled), np.uint8).astype(bool)

    # the item table: every article, or (require_metadata) those seen with a title and a category1
    listed = np.array(events.complete, bool) if options.require_metadata else np.ones(len(events.article_ids), bool)
    item_of = np.where(listed, np.cumsum(listed), 0).astype(np.int64)  # article -> item index (0: not listed)
    keep = item_of[articles] > 0
    if options.require_metadata:
        keep &= titled
        if (~keep).sum():
            notes.append(
                f"skipped {int((~keep).sum())} article event(s) without a title, or of an article never seen "
                "with a title and a category1 (require_metadata)"
            )
    order = np.flatnonzero(keep)
    users, items, times, days = users[order], item_of[articles[order]], times[order], days[order]

    # one event logged twice: the same user, article and second (the first in file order stays)
    by_key = np.lexsort((order, times, items, users))
    repeat = np.zeros(len(by_key), bool)
    repeat[1:] = (
        (users[by_key][1:] == users[by_key][:-1])
        & (items[by_key][1:] == items[by_key][:-1])
        & (times[by_key][1:] == times[by_key][:-1])
    )
    if repeat.any():
        notes.append(f"skipped {int(repeat.sum())} duplicate event(s) (the same user, article and second)")
    # clicks grouped by user, each user's in time order (then file order)
    clicks = np.sort(by_key[~repeat])
    clicks = clicks[np.lexsort((clicks, times[clicks], users[clicks]))]
    users, items, times, days = users[clicks], items[clicks], times[clicks], days[clicks]

    ids = [article for article, on in zip(events.article_ids, listed, strict=True) if on]
    num_items = len(ids) + 1
    rng = np.random.default_rng(options.seed)
    negatives = Negatives(users, items, num_items, rng)
    presence = None
    if options.negative_pool == "live":
        published = np.array(events.published, np.float64)[listed]
        dated = np.flatnonzero(~np.isnan(published))
        moments = np.concatenate([times.astype(np.float64), published[dated]])
        present = np.concatenate([items, dated + 1])
        by_time = np.argsort(moments, kind="stable")
        presence = (moments[by_time], present[by_time])

    num_users = len(events.user_ids)
    histories = {}
    for cut in (options.train_day, options.test_day):
        before = np.flatnonzero(days < cut)  # grouped by user, in time order
        offsets = np.concatenate([[0], np.cumsum(np.bincount(users[before], minlength=num_users))])
        histories[cut] = (items[before], offsets)

    train_rows = np.flatnonzero((days >= options.train_day) & (days < options.test_day))
    test_rows = np.flatnonzero(days >= options.test_day)
    rows = {"train": train_rows, "test": test_rows}
    short = unclickable = 0
    for name, cut in (("train", options.train_day), ("test", options.test_day)):
        selected = rows[name]
        selected = selected[np.lexsort((selected, times[selected]))]  # by time, then file order
        enough = np.diff(histories[cut][1])[users[selected]] >= options.min_history
        some = negatives.available(users[selected]) > 0
        short += int((~enough).sum())
        unclickable += int((enough & ~some).sum())
        rows[name] = selected[enough & some]
    if short:
        notes.append(f"left out {short} click(s) whose user had fewer than {options.min_history} history click(s)")
    if unclickable:
        notes.append(f"left out {unclickable} click(s) whose user clicked every article (no negative is left)")
    test_rows = rows.pop("test")
    dev_count = math.ceil(options.dev_share * len(test_rows))
    drawn = rng.permutation(len(test_rows))
    rows["dev"] = test_rows[np.sort(drawn[:dev_count])]
    rows["test"] = test_rows[np.sort(drawn[dev_count:])]

    splits = {}
    for name in ("train", "dev", "test"):
        if not len(rows[name]):
            raise DataError(
                f"the protocol leaves no {name} impressions",
                where=str(options.path),
                hint=f"The folder has days 1-{last_day}; {name} impressions are clicks on days "
                + (f"{options.train_day}-{options.test_day - 1}" if name == "train" else f"{options.test_day}-")
                + f" by users with at least {options.min_history} earlier click(s) (dataset.train_day, test_day, "
                "min_history).",
            )
        cut = options.train_day if name == "train" else options.test_day
        splits[name] = impressions(
            name, rows[name], users, items, times, histories[cut], events.user_ids, negatives, presence, options
        )
    if negatives.topped_up:
        notes.append(
            f"{negatives.topped_up} impression(s) had too few live articles in the {options.live_hours:g} hours "
            "before the click; topped up from the catalogue"
        )

    listed_at = np.flatnonzero(listed)
    titles = [events.titles[a] or "" for a in listed_at]
    keywords = [events.keywords[a] or "" for a in listed_at]
    parts = [(events.categories[a] or "").split("|") for a in listed_at]
    item_table = Items(
        ["", *ids],
        {"title": ["", *titles], "keywords": ["", *keywords]},
        {"category": ["", *(p[0] for p in parts)], "subcategory": ["", *(p[1] if len(p) > 1 else "" for p in parts)]},
        np.zeros(num_items, bool),
    )
    train = splits["train"]
    item_table.in_train[train.candidates.values] = item_table.in_train[train.history.values] = True
    item_table.in_train[0] = False
    return Corpus(item_table, splits, notes)


def impressions(
    name: str,
    rows: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    history: tuple[np.ndarray, np.ndarray],
    user_ids: list[str],
    negatives: Negatives,
    presence: tuple[np.ndarray, np.ndarray] | None,
    options: AdressaOptions,
) -> Impressions:
    owners = users[rows]
    counts = np.minimum(options.negatives, negatives.available(owners))
    chosen = np.zeros((len(rows), options.negatives), np.int64)
    used = np.arange(options.negatives) < counts[:, None]
    if presence is None:
        negatives.catalogue(owners, chosen, used, used.copy())
    else:
        negatives.live(owners, times[rows].astype(np.float64), chosen, used, presence, options.live_hours * 3600)
    per_row = counts + 1
    offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    values = np.empty(int(offsets[-1]), np.int64)
    labels = np.zeros(len(values), np.int8)
    click_at = offsets[:-1] + negatives.rng.integers(0, per_row)  # the click at a random place
    others = np.ones(len(values), bool)
    others[click_at] = False
    values[click_at], labels[click_at] = items[rows], 1
    values[others] = chosen[used]  # row by row, in the order drawn
    return Impressions(
        [f"{name}-{i + 1}" for i in range(len(rows))],
        [user_ids[u] for u in owners],
        _ragged_rows(*history, owners, options.max_history),
        Ragged(values, offsets),
        Ragged(labels, offsets),
    )


class AdressaDataset:
    """Reads Adressa's daily event files and makes impressions by NewsRecLib's protocol (above)."""

    def __init__(self, options: AdressaOptions, context: object = None) -> None:
        self.options = options

    def fingerprint(self) -> str:
        """The options, and the name, size and modification time of every daily file."""
        digest = hashlib.sha256(json.dumps(self.options.model_dump(mode="json"), sort_keys=True).encode())
        for _, path in daily_files(self.options.path):
            digest.update(f"{path.name}:{file_stamp(path)}\n".encode())
        return digest.hexdigest()

    def read(self) -> Corpus:
        return read_adressa(self.options)
