"""`once export`: item and user vectors for an ANN index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from once.hookspecs import hookimpl
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def export(
        run_dir: Annotated[Path, typer.Argument(help="A run directory made by `once train`.")],
        out_dir: Annotated[Path, typer.Argument(help="Folder for the vectors and id maps.")],
    ):
        """Write item and user vectors (safetensors) with their id maps, for an ANN index."""
        from once.trained import TrainedModel

        counts = TrainedModel(run_dir, registry).export(out_dir)
        out.print(f"wrote {counts['items']} item and {counts['users']} user vectors to {out_dir}")
