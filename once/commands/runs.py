"""`once runs`: list run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.hookspecs import hookimpl
from once.registry import Registry
from once.runs import find_runs


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def runs(folder: Annotated[Path, typer.Argument(help="Folder to search for run directories.")] = Path("runs")):
        """Compare runs: recipe, fingerprint, date, best dev and test metrics."""
        from once.metrics import METRICS

        table = Table(title=f"runs under {folder}")
        for column in (
            "run",
            "recipe",
            "fingerprint",
            "created",
            "epochs",
            "best dev",
            "test AUC",
            "test MRR",
            "test nDCG@5",
            "test nDCG@10",
        ):
            table.add_column(column)
        for run in find_runs(folder):
            info, epochs, test = run.info, run.epochs(), run.test_metrics() or {}
            metric = run.recipe()["train"]["metric"]
            best = max((e["dev"].get(metric, float("nan")) for e in epochs), default=float("nan"))
            table.add_row(
                run.path.name,
                info["recipe"],
                info["fingerprint"][:8],
                info["created"][:16].replace("T", " "),
                str(len(epochs)),
                f"{metric} {best:.4f}",
                *(f"{test[m]:.4f}" if m in test else "-" for m in METRICS),
            )
        out.print(table)
