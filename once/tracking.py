"""The run's experiment trackers (the recipe's `track`), fed by the training loop on rank 0.

A tracker that raises — its server down, the disk full — is reported once and turned off for the run: training
goes on, and nothing the run itself writes depends on a tracker.
"""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from once.protocols import Tracker, TrackerContext
from once.recipe import ResolvedRecipe

log = logging.getLogger(__name__)


def versions(plugins: dict[str, str]) -> dict[str, str]:
    """What the run ran on: Python, torch, once and the plugin distributions."""
    try:
        once = metadata.version("once")
    except metadata.PackageNotFoundError:
        once = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "once": once, **plugins}


class Tracking:
    """Every tracker of a run, each called in turn; one that fails is dropped with a warning."""

    def __init__(self, trackers: list[tuple[str, Tracker]]) -> None:
        self.trackers = trackers

    @staticmethod
    def check(resolved: ResolvedRecipe) -> None:
        """Import every tracker the recipe names, so that a missing package is an error before training starts."""
        for part, _ in resolved.trackers:
            part.load()

    @classmethod
    def start(cls, resolved: ResolvedRecipe, run_dir: Path, plugins: dict[str, str], main: bool = True) -> Tracking:
        """Build the recipe's trackers for a run (none off rank 0); one that cannot start is reported and left out
        (`check` has caught a missing package before)."""
        if not main or not resolved.trackers:
            return cls([])
        context = TrackerContext(
            run_dir=run_dir,
            run_name=run_dir.name,
            recipe_name=resolved.name,
            recipe={k: v for k, v in resolved.data.items() if k != "track"},  # tracker options may hold secrets
            fingerprint=resolved.fingerprint,
            versions=versions(plugins),
        )
        trackers = []
        for part, options in resolved.trackers:
            try:
                trackers.append((part.name, part.load()(options, context)))
            except Exception as error:  # a tracker must never stop training
                log.warning(
                    "tracker '%s' did not start (%s: %s); the run goes on without it",
                    part.name,
                    type(error).__name__,
                    error,
                )
        return cls(trackers)

    def _call(self, entry: tuple[str, Tracker], call: str, *args: Any) -> None:
        name, tracker = entry
        try:
            getattr(tracker, call)(*args)
        except Exception as error:  # a tracker must never stop training
            log.warning(
                "tracker '%s' failed (%s: %s); it is off for the rest of this run", name, type(error).__name__, error
            )
            self.trackers.remove(entry)
            try:
                tracker.close()
            except Exception as closing:  # already reported: the tracker is gone either way
                log.debug("tracker '%s' did not close: %s", name, closing)

    def _each(self, call: str, *args: Any) -> None:
        for entry in list(self.trackers):
            self._call(entry, call, *args)

    def step(self, step: int, values: dict[str, float]) -> None:
        for entry in list(self.trackers):
            if step % max(1, entry[1].every) == 0:
                self._call(entry, "step", step, values)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._each("epoch", epoch, values)

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None:
        self._each("finish", test, groups, artifacts)

    def close(self) -> None:
        self._each("close")
        self.trackers = []
