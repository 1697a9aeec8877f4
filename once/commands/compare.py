"""`once compare`: runs side by side, and their dev curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from once.commands.common import metrics_table
from once.hookspecs import hookimpl
from once.registry import Registry
from once.runs import Run


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def compare(
        run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to compare.")],
        png: Annotated[Path, typer.Option(help="Where to write the dev-metric curves.")] = Path("compare.png"),
    ):
        """Print runs' best-dev and test metrics side by side and plot their dev curves per epoch."""
        from once.compare import best_dev, plot_curves

        runs = [Run.open(path) for path in run_dirs]
        rows = []
        for run in runs:
            rows.append((f"{run.path.name} dev", best_dev(run)))
            rows.append((f"{run.path.name} test", run.test_metrics() or {}))
        out.print(metrics_table("runs compared (dev: the kept epoch)", rows))
        plot_curves(runs, png)
        out.print(f"dev curves: {png}")
