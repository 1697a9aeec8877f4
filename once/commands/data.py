"""`once data`: write a dataset as MIND files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from once.errors import OnceError
from once.hookspecs import hookimpl
from once.recipe import validation_error
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def data(
        name: Annotated[str, typer.Argument(help="A registered dataset, e.g. demo.")],
        out_dir: Annotated[Path, typer.Argument(help="Folder to write MIND files into.")],
        set_: Annotated[list[str] | None, typer.Option("--set", help="Dataset option: --set items=5000")] = None,
    ):
        """Write a dataset as MIND files (train/, dev/, test/ with news.tsv and behaviors.tsv)."""
        from once.recipe import parse_overrides

        part = registry.get("dataset", name)
        values = {".".join(keys): value for keys, value in parse_overrides(set_ or [])}
        try:
            options = part.options.model_validate(values, context={"base_dir": Path.cwd()})
        except ValidationError as error:
            raise validation_error(error, part.options, (), f"--set options of dataset '{name}'") from None
        dataset = part.load()(options, None)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise OnceError("refusing to write into a folder that is not empty", where=str(out_dir))
        if hasattr(dataset, "export"):  # a dataset that writes itself (the demo generates its files)
            dataset.export(out_dir)
        else:
            from once.data.export import write_mind_files

            write_mind_files(dataset.read(), out_dir)
        out.print(f"wrote dataset '{name}' to {out_dir}")
