"""One recipe over several seeds (`once train --seeds 0,1,2`): each seed is its own run directory, a seed whose
run finished is reused, one that was interrupted is resumed, and the test metrics are summarised as mean and
standard deviation over the seeds."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from once.errors import RecipeError
from once.files import write_json
from once.recipe import ResolvedRecipe
from once.runs import STATE, TEST, Run, find_runs


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; a range '0-4' is allowed too."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, _, high = part.partition("-")
            seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        raise RecipeError(
            f"--seeds takes whole numbers separated by commas, or ranges such as 0-4 (got '{text}')", where="--seeds"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise RecipeError(f"--seeds needs distinct seeds of at least 0 (got '{text}')", where="--seeds")
    return seeds


def existing_run(root: Path, resolved: ResolvedRecipe) -> Run | None:
    """The newest run of this very recipe (same fingerprint) under `root`: finished or to be resumed."""
    if not root.exists():
        return None
    same = [run for run in find_runs(root) if run.info.get("fingerprint") == resolved.fingerprint]
    return same[-1] if same else None


@dataclass(frozen=True)
class SeedRun:
    seed: int
    run: Run
    test: dict[str, float]
    status: str  # "trained", "resumed" or "reused"


def train_seeds(
    recipe_for: Callable[[int], ResolvedRecipe],
    seeds: list[int],
    root: Path,
    train: Callable[[ResolvedRecipe, Path | None], Run],
) -> list[SeedRun]:
    """Each seed's run: reused when its test metrics exist, resumed when it stopped before, else trained anew.
    `train(resolved, resume)` trains one run and returns it."""
    done = []
    for seed in seeds:
        resolved = recipe_for(seed)
        run = existing_run(root, resolved)
        if run is not None and (run.path / TEST).exists():
            status = "reused"
        else:
            resume = run.path if run is not None and (run.path / STATE).exists() else None
            run = train(resolved, resume)
            status = "resumed" if resume else "trained"
        done.append(SeedRun(seed, run, run.test_metrics() or {}, status))
    return done


def summarise(runs: list[SeedRun]) -> dict[str, dict[str, float]]:
    """Per test metric: mean and sample standard deviation over the seeds (0 for one seed)."""
    columns = list(dict.fromkeys(c for r in runs for c in r.test))
    summary = {}
    for column in columns:
        values = [r.test[column] for r in runs if column in r.test and r.test[column] == r.test[column]]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[column] = {"mean": statistics.fmean(values), "std": std, "seeds": len(values)}
    return summary


def write_summary(path: Path, runs: list[SeedRun], summary: dict[str, dict[str, float]]) -> None:
    write_json(
        path,
        {
            "runs": [{"seed": r.seed, "run": str(r.run.path), "status": r.status, "test": r.test} for r in runs],
            "test": summary,
        },
    )
