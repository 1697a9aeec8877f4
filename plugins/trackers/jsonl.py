"""The `jsonl` tracker: every event as one JSON line in the run directory, flushed as it is written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from once.api import TrackerContext
from once_plugins.trackers.parts import JsonlOptions


class JsonlTracker:
    def __init__(self, options: JsonlOptions, context: TrackerContext) -> None:
        self.every = options.every
        self.path = context.run_dir / options.file
        self.file = self.path.open("a", encoding="utf8")
        self._write(
            "start",
            run=context.run_name,
            recipe_name=context.recipe_name,
            fingerprint=context.fingerprint,
            versions=context.versions,
            recipe=context.recipe,
        )

    def _write(self, event: str, **fields) -> None:
        self.file.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
        self.file.flush()

    def step(self, step: int, values: dict[str, float]) -> None:
        self._write("step", step=step, values=values)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._write("epoch", epoch=epoch, values=values)

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None:
        self._write("finish", test=test, groups=groups, artifacts=[p.name for p in artifacts])

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
