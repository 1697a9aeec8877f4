"""Run directories: everything needed to reproduce, re-evaluate and compare a training run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import once
from once.errors import OnceError
from once.files import write_atomic, write_json
from once.recipe import ResolvedRecipe, resolve_recipe
from once.registry import Registry

if TYPE_CHECKING:
    from once.execution import Execution

RUN_FORMAT = 1  # bump when a run directory's layout changes incompatibly
RECIPE, INFO, METRICS, BEST, STATE, TEST, TEST_GROUPS, TEST_IMPRESSIONS = (
    "recipe.yaml",
    "run.json",
    "metrics.jsonl",
    "best.safetensors",
    "state.safetensors",
    "test_metrics.json",
    "test_groups.json",  # test metrics by group of users and of items
    "test_impressions.npz",  # one row per test impression: candidates, labels, scores, metric values
)


@dataclass(frozen=True)
class Run:
    """A run directory on disk."""

    path: Path

    @classmethod
    def create(cls, root: Path, resolved: ResolvedRecipe, plugins: dict[str, str], execution: Execution) -> Run:
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
                "format": RUN_FORMAT,
                "recipe": resolved.name,
                "source": resolved.source,
                "fingerprint": resolved.fingerprint,
                "seed": resolved.recipe.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "once": once.__version__,
                "plugins": plugins,
                "threads": execution.threads,
                "deterministic": execution.deterministic,
            },
        )
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        if not path.exists():
            raise OnceError("the run directory does not exist", where=str(path), hint="`once runs` lists the runs.")
        if not (path / RECIPE).is_file() or not (path / INFO).is_file():
            raise OnceError("not a run directory (no recipe.yaml and run.json)", where=str(path))
        run = cls(path)
        info = run.info
        if info.get("format") != RUN_FORMAT:
            raise OnceError(
                f"this run directory was written by ONCE {info.get('once', '?')} in format {info.get('format')}; "
                f"this ONCE {once.__version__} reads format {RUN_FORMAT}",
                where=str(path / INFO),
                hint=f"Install the ONCE version that wrote it (pip install 'once=={info.get('once', '?')}').",
            )
        return run

    def resolve(self, registry: Registry | None = None) -> ResolvedRecipe:
        """The run's recipe, resolved again against the installed plugins; it must still be the recipe trained."""
        text = (self.path / RECIPE).read_text(encoding="utf8")
        resolved = resolve_recipe(
            text, registry, [], label=str(self.path / RECIPE), base_dir=self.path, name=self.info["recipe"]
        )
        if resolved.fingerprint != self.info["fingerprint"]:
            raise OnceError(
                f"recipe.yaml no longer matches the recipe this run was trained with (fingerprint "
                f"{resolved.fingerprint}, run.json says {self.info['fingerprint']})",
                where=str(self.path / RECIPE),
                hint="Restore the file, or train a new run with the edited recipe.",
            )
        return resolved

    @property
    def info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / INFO).read_text(encoding="utf8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OnceError(f"run.json is damaged: {error}", where=str(self.path / INFO)) from None

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe the run was trained with."""
        return yaml.safe_load((self.path / RECIPE).read_text(encoding="utf8"))

    def epochs(self) -> list[dict[str, Any]]:
        file = self.path / METRICS
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text(encoding="utf8").splitlines() if line.strip()]

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files of writes a killed process left unfinished (`.NAME.*.tmp`); the files they
        would have replaced are whole. Only safe while holding the run directory's lock."""
        stale = sorted(self.path.glob(".*.tmp"))
        for path in stale:
            path.unlink()
        return stale

    def write_epochs(self, records: list[dict[str, Any]]) -> None:
        write_atomic(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in records))

    def result_files(self) -> list[Path]:
        """The run's small result files that exist (recipe, run record, epochs, test metrics and groups): what a
        tracker keeps as artifacts."""
        names = (RECIPE, INFO, METRICS, TEST, TEST_GROUPS)
        return [self.path / name for name in names if (self.path / name).exists()]

    def test_metrics(self) -> dict[str, float] | None:
        file = self.path / TEST
        return json.loads(file.read_text(encoding="utf8")) if file.exists() else None


def find_runs(root: Path) -> list[Run]:
    """Run directories under `root` (itself included), oldest first."""
    found = [Run(p.parent) for p in sorted(root.rglob(INFO)) if (p.parent / RECIPE).exists()]
    return sorted(found, key=lambda run: run.info.get("created", ""))
