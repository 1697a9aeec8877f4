"""`once train`: train a recipe and test the best epoch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from once.commands.common import Overrides, metrics_table
from once.errors import RecipeError
from once.hookspecs import hookimpl
from once.recipe import DEMO_RECIPE, load_recipe, with_trackers
from once.registry import Registry
from once.runs import Run


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def train(
        recipe: Annotated[
            str | None, typer.Argument(help=f"Recipe file or built-in recipe name (default: {DEMO_RECIPE}).")
        ] = None,
        set_: Overrides = None,
        out_dir: Annotated[Path, typer.Option("--out", help="Folder for run directories.")] = Path("runs"),
        resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory.")] = None,
        threads: Annotated[
            int | None,
            typer.Option(min=1, help="CPU threads per process (the recipe's threads; default: the free cores)."),
        ] = None,
        seeds: Annotated[
            str | None,
            typer.Option(help="Train once per seed (0,1,2 or 0-4) and report mean ± std; rerun to resume."),
        ] = None,
        track: Annotated[
            list[str] | None,
            typer.Option(help="Also track the run with this tracker (repeatable): tensorboard, mlflow, wandb, jsonl."),
        ] = None,
    ):
        """Train a recipe (the demo when none is given) and test the best epoch."""
        from once.distributed import launched_as_main
        from once.metrics import METRICS
        from once.train import train as run_training

        out.quiet = not launched_as_main()  # under torchrun, rank 0 reports for all
        if resume and seeds is not None:
            raise RecipeError("--resume and --seeds do not go together", hint="Rerun the --seeds command to resume.")
        if resume:
            if set_:
                raise RecipeError("--set cannot change a run being resumed", hint="Start a new run instead.")
            resolved = Run.open(resume).resolve(registry)
            given = load_recipe(recipe, registry).fingerprint if recipe is not None else resolved.fingerprint
            if given != resolved.fingerprint:
                raise RecipeError(
                    f"--resume continues the run's own recipe ({resolved.name}, fingerprint "
                    f"{resolved.fingerprint}), and '{recipe}' is another one (fingerprint {given})",
                    where=str(resume),
                    hint=f"Drop the recipe argument: once train --resume {resume}",
                )
        elif seeds is not None:
            if track:
                raise RecipeError(
                    "--track does not go with --seeds", hint="Name the trackers in the recipe: --set 'track=[mlflow]'."
                )
            train_seeds_command(recipe or DEMO_RECIPE, set_ or [], seeds, out_dir, threads)
            return
        else:
            resolved = load_recipe(recipe or DEMO_RECIPE, registry, set_)
        resolved = with_trackers(resolved, track or [], registry)
        if threads is not None:  # how the run is executed, not what it computes: allowed on a resumed run too
            recipe_ = resolved.recipe.model_copy(update={"threads": threads})
            resolved = replace(resolved, recipe=recipe_, data={**resolved.data, "threads": threads})
        out.print(f"[bold]recipe[/] {resolved.source}  [bold]fingerprint[/] {resolved.fingerprint}")

        def report(record: dict[str, Any]) -> None:
            dev = "  ".join(f"{m} {record['dev'][m]:.4f}" for m in METRICS)
            terms = "".join(f" + {name} {value:.4f}" for name, value in record.get("train_terms", {}).items())
            out.print(
                f"epoch {record['epoch']}: loss {record['train_loss']:.4f}{terms}  dev {dev}  "
                f"({record['samples_per_s']:.0f} samples/s)"
            )

        result = run_training(
            resolved, runs_root=out_dir, resume=resume, plugins=registry.distributions(), on_epoch_end=report
        )
        rows = [(f"epoch {r['epoch']}", r["dev"]) for r in result.epochs]
        losses = {"loss": [f"{r['train_loss']:.4f}" for r in result.epochs]}
        out.print(metrics_table("dev metrics per epoch", rows, losses))
        if result.test:
            groups = list(result.test_groups.items())
            out.print(metrics_table("test (best dev epoch)", [("test", result.test), *groups]))
        out.print(f"run directory: [bold]{result.run.path}[/]")

    def train_seeds_command(recipe: str, set_: list[str], seeds: str, out_dir: Path, threads: int | None) -> None:
        from rich.table import Table

        from once.seeds import parse_seeds, summarise, train_seeds, write_summary
        from once.train import train as run_training

        chosen = parse_seeds(seeds)
        overrides = [*set_, *([f"threads={threads}"] if threads is not None else [])]

        def recipe_for(seed: int):
            return load_recipe(recipe, registry, [*overrides, f"seed={seed}"])

        def train_one(resolved, resume):
            out.print(f"[bold]seed {resolved.recipe.seed}[/] {'resuming ' + str(resume) if resume else ''}")
            result = run_training(resolved, runs_root=out_dir, resume=resume, plugins=registry.distributions())
            return result.run

        runs = train_seeds(recipe_for, chosen, out_dir, train_one)
        summary = summarise(runs)
        table = Table(title=f"test metrics over {len(runs)} seeds (mean ± sample std)")
        table.add_column("metric")
        for run in runs:
            table.add_column(f"seed {run.seed}", justify="right")
        table.add_column("mean ± std", justify="right")
        for column, stats in summary.items():
            cells = [f"{run.test[column]:.4f}" if column in run.test else "-" for run in runs]
            table.add_row(column, *cells, f"{stats['mean']:.4f} ± {stats['std']:.4f}")
        out.print(table)
        for run in runs:
            out.print(f"seed {run.seed} ({run.status}): {run.run.path}")
        name = recipe_for(chosen[0]).name
        path = out_dir / f"{name}-seeds-{'-'.join(map(str, chosen))}.json"
        write_summary(path, runs, summary)
        out.print(f"summary: [bold]{path}[/]")
