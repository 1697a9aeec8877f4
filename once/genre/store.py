"""GENRE output: one JSON line per item or user id, appended and flushed as each answer completes.

A record holds the raw answer, the parsed value, the model, token usage and a status (`ok`, `failed`,
`malformed`). A process killed mid-line leaves a partial last line: it is cut off when the file is opened again,
so the id is simply asked again. Retried ids append a newer record; `compact` rewrites the file atomically with
the latest record per id, so a finished run holds every id exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from once.errors import DataError
from once.files import disk_space, write_atomic

OK, FAILED, MALFORMED = "ok", "failed", "malformed"


class RecordStore:
    """The JSON-lines file of one scheme: read what is done, append what completes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.lines = 0
        if path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) < len(raw):  # a process was killed mid-line: that answer is asked again
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for number, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise DataError(f"not a JSON record: {error}", where=f"{self.path}:{number}") from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise DataError('expected an object with a string "id"', where=f"{self.path}:{number}")
            if record.get("status") == OK and "value" not in record:
                raise DataError('an "ok" record without its "value"', where=f"{self.path}:{number}")
            self.records[record["id"]] = record
            self.lines += 1

    def done(self, retry_failed: bool = False) -> set[str]:
        """Ids that need no new request: every recorded id, or only the `ok` ones when retrying failures."""
        return {i for i, r in self.records.items() if not retry_failed or r.get("status") == OK}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and push it to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with disk_space(self.path), open(self.path, "a", encoding="utf8") as f:  # a cut line is dropped on load
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["id"]] = record
        self.lines += 1

    def compact(self) -> None:
        """Keep only the latest record per id (atomically), if any id was recorded more than once."""
        if self.lines > len(self.records):
            write_atomic(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()))
            self.lines = len(self.records)

    def values(self) -> dict[str, Any]:
        """id -> parsed value of every `ok` record."""
        return {i: r["value"] for i, r in self.records.items() if r.get("status") == OK}


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write a whole record file atomically (imports); returns how many records."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    write_atomic(path, "".join(lines))
    return len(lines)
