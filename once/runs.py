"""Run directories: everything needed to reproduce, re-evaluate and compare a training run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import once
from once.data.files import write_atomic, write_json
from once.errors import OnceError
from once.recipe import ResolvedRecipe

RECIPE, INFO, METRICS, BEST, STATE, TEST = (
    "recipe.yaml",
    "run.json",
    "metrics.jsonl",
    "best.safetensors",
    "state.safetensors",
    "test_metrics.json",
)


@dataclass(frozen=True)
class Run:
    """A run directory on disk."""

    path: Path

    @classmethod
    def create(cls, root: Path, resolved: ResolvedRecipe, plugins: dict[str, str]) -> Run:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = root / f"{resolved.name}-{stamp}-{resolved.fingerprint[:8]}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{resolved.name}-{stamp}-{resolved.fingerprint[:8]}-{suffix}"
        path.mkdir(parents=True)
        run = cls(path)
        write_atomic(path / RECIPE, resolved.to_yaml())
        write_json(
            path / INFO,
            {
                "recipe": resolved.name,
                "source": resolved.source,
                "fingerprint": resolved.fingerprint,
                "seed": resolved.recipe.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "once": once.__version__,
                "plugins": plugins,
            },
        )
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        if not (path / RECIPE).is_file() or not (path / INFO).is_file():
            raise OnceError("not a run directory (no recipe.yaml and run.json)", where=str(path))
        return cls(path)

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.path / INFO).read_text(encoding="utf8"))

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe the run was trained with."""
        return yaml.safe_load((self.path / RECIPE).read_text(encoding="utf8"))

    def epochs(self) -> list[dict[str, Any]]:
        file = self.path / METRICS
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text(encoding="utf8").splitlines() if line.strip()]

    def write_epochs(self, records: list[dict[str, Any]]) -> None:
        write_atomic(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in records))

    def test_metrics(self) -> dict[str, float] | None:
        file = self.path / TEST
        return json.loads(file.read_text(encoding="utf8")) if file.exists() else None


def find_runs(root: Path) -> list[Run]:
    """Run directories under `root` (itself included), oldest first."""
    found = [Run(p.parent) for p in sorted(root.rglob(INFO)) if (p.parent / RECIPE).exists()]
    return sorted(found, key=lambda run: run.info.get("created", ""))
