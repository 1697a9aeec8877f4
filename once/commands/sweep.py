"""`once sweep`: tune recipe keys with Optuna, every trial a run, the study resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.commands.common import Overrides
from once.hookspecs import hookimpl
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console

    @cli.command()
    def sweep(
        recipe: Annotated[str, typer.Argument(help="Recipe file or built-in recipe name.")],
        space: Annotated[Path, typer.Option(help="YAML file: recipe key -> range (docs/sweeps.md).")],
        trials: Annotated[int, typer.Option(min=1, help="Finished trials the study should have.")] = 20,
        set_: Overrides = None,
        storage: Annotated[
            str | None, typer.Option(help="Optuna storage URL (default: sqlite:///OUT/study.db).")
        ] = None,
        study: Annotated[str | None, typer.Option(help="Study name (default: the recipe's name).")] = None,
        sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe, random, cmaes, qmc, gp, ...")] = "tpe",
        pruner: Annotated[str, typer.Option(help="median, hyperband or none.")] = "median",
        out_dir: Annotated[Path, typer.Option("--out", help="Folder for the study, its runs and results.")] = Path(
            "sweeps"
        ),
    ):
        """Tune a recipe with Optuna on its dev metric; rerun the same command to resume the study."""
        from once.sweep import run_sweep, trials_table_rows

        result = run_sweep(
            recipe,
            space,
            trials,
            out_dir,
            registry,
            overrides=set_ or [],
            storage=storage,
            study_name=study,
            sampler=sampler,
            pruner=pruner,
            console=out,
        )
        header, rows = trials_table_rows(result.study)
        table = Table(title=f"study {result.study.study_name}: {len(rows)} trial(s)")
        for column in header:
            table.add_column(column, justify="right" if column in ("trial", "value", "epochs") else "left")
        for row in rows:
            table.add_row(*row)
        out.print(table)
        if result.best is not None:
            best = result.study.best_trial
            out.print(f"best: trial {best.number}, dev {result.best.recipe.train.metric} {best.value:.4f}")
            out.print(f"best recipe: {result.out / 'best.yaml'}   (once train {result.out / 'best.yaml'})")
        out.print(f"trials: {result.out / 'trials.csv'}; plots: history.png, importances.png in {result.out}")
