"""The items posted to a server, in SQLite: a restart (or a reload of another run) encodes them again."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from once.errors import DataError

SCHEMA = """
create table if not exists items (
    number integer primary key autoincrement,
    id text not null unique,
    fields text not null,  -- JSON object: field -> text
    added real not null     -- unix time
)
"""


class ItemStore:
    """Posted items in order, one transaction per post: a post is kept whole or not at all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._connection.execute("pragma journal_mode=wal")
            self._connection.execute(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise DataError(f"cannot open the served items database: {error}", where=str(path)) from None

    def items(self) -> list[tuple[str, dict[str, str]]]:
        """(id, fields) of every stored item, in the order they were posted."""
        with self._lock:
            rows = self._connection.execute("select id, fields from items order by number").fetchall()
        return [(item, json.loads(fields)) for item, fields in rows]

    def add(self, items: list[tuple[str, dict[str, str]]]) -> None:
        """Store items, all or none; an id already stored is an error naming it."""
        now = time.time()
        with self._lock:
            try:
                with self._connection:
                    self._connection.execute("begin immediate")
                    self._connection.executemany(
                        "insert into items (id, fields, added) values (?, ?, ?)",
                        [(item, json.dumps(fields, ensure_ascii=False), now) for item, fields in items],
                    )
            except sqlite3.IntegrityError:
                raise DataError("an item with this id is already stored", where=str(self.path)) from None

    def close(self) -> None:
        with self._lock:
            self._connection.close()
