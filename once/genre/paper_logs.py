"""`once genre import`: the ONCE paper's published GPT-3.5 answers (Goodreads) as our answer files.

The logs (`book_summarizer.log`: `bid<TAB>answer`; `user_profiler.log` and `generator_v1/v2.log`: JSON lines
keyed by the user's row in `users.tsv`) become `summarize.jsonl`, `profile.jsonl` and `generate.jsonl`, each
answer parsed and validated by the book flavour of our schemes, so malformed answers are recorded as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from once.errors import DataError
from once.files import read_text
from once.genre.runner import MalformedAnswer
from once.genre.store import MALFORMED, OK, write_records
from once.registry import Registry

SOURCE = "gpt-3.5-turbo (ONCE paper logs)"
LOGS = ("book.csv", "users.tsv", "book_summarizer.log", "user_profiler.log", "generator_v1.log", "generator_v2.log")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            yield number, line


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"not a JSON line ({error.msg})", where=f"{path}:{number}") from None
        if not isinstance(record, dict) or not isinstance(record.get("uid"), int):
            raise DataError('expected an object with an integer "uid"', where=f"{path}:{number}")
        yield f"{path}:{number}", record


def _record(key: str, answer: str, parse, context: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {"id": key, "answer": answer, "model": SOURCE, "usage": None}
    try:
        return {**record, "status": OK, "value": parse(answer, context or {})}
    except MalformedAnswer as error:
        return {**record, "status": MALFORMED, "value": None, "error": str(error)}


def import_logs(folder: Path, out: Path, registry: Registry) -> dict[str, int]:
    """Convert every log in `folder`; returns records written per scheme."""
    from once.genre.command import build_scheme
    from once.recipe import GenreSection

    if not folder.is_dir():
        raise DataError(
            "folder not found",
            where=str(folder),
            hint="The logs are the data/goodreads/ folder of the ONCE paper's repository "
            "(github.com/Jyonn/ONCE); see docs/genre.md.",
        )
    missing = [name for name in LOGS if not (folder / name).is_file()]
    if missing:
        raise DataError(f"not the ONCE Goodreads logs: missing {', '.join(missing)}", where=str(folder))
    books = GenreSection(schemes={k: {"flavour": "books"} for k in ("summarize", "profile", "generate")})
    schemes = {key: build_scheme(books, key, registry) for key in books.schemes}
    users = [line.split("\t", 1)[0] for _, line in list(_lines(folder / "users.tsv"))[1:]]
    titles = {}
    for _, line in list(_lines(folder / "book.csv"))[1:]:
        bid, _, title = line.partition("\t")
        titles[bid] = title

    def user(row: int, where: str) -> str:
        if not 0 <= row < len(users):
            raise DataError(f"uid {row} is not a row of users.tsv ({len(users)} users)", where=where)
        return users[row]

    summaries: dict[str, dict[str, Any]] = {}
    for number, line in _lines(folder / "book_summarizer.log"):
        bid, tab, answer = line.partition("\t")
        if not tab:
            raise DataError("expected bid<TAB>answer", where=f"{folder / 'book_summarizer.log'}:{number}")
        record = _record(bid, answer, schemes["summarize"].parse, {"title": titles.get(bid, "")})
        if bid not in summaries or record["status"] == OK:  # a retried bid: its latest good answer
            summaries[bid] = record
    profiles = {}
    for where, entry in _json_lines(folder / "user_profiler.log"):
        uid = user(entry["uid"], where)
        profiles[uid] = _record(uid, json.dumps({"interests": entry.get("interest")}), schemes["profile"].parse)
    generated = {}
    for sample, name in enumerate(("generator_v1.log", "generator_v2.log")):
        for where, entry in _json_lines(folder / name):
            key = f"{user(entry['uid'], where)}#{sample}"
            generated[key] = _record(key, str(entry.get("book", "")), schemes["generate"].parse)
    out.mkdir(parents=True, exist_ok=True)
    return {
        key: write_records(out / f"{key}.jsonl", records.values())
        for key, records in (("summarize", summaries), ("profile", profiles), ("generate", generated))
    }
