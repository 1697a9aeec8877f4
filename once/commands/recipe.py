"""`once recipe ls|cp|validate|show`."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from once.commands.common import Overrides
from once.errors import OnceError
from once.hookspecs import hookimpl
from once.recipe import builtin_recipes, load_recipe, read_recipe_text
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    recipe_app = typer.Typer(help="List, copy, validate and show recipes.", no_args_is_help=True)
    cli.add_typer(recipe_app, name="recipe")

    @recipe_app.command("ls")
    def recipe_ls():
        """List the built-in recipes."""
        table = Table(title="built-in recipes")
        table.add_column("name")
        table.add_column("description")
        for name, resource in sorted(builtin_recipes().items()):
            data = yaml.safe_load(resource.read_text(encoding="utf8"))  # folded (>-) descriptions included
            table.add_row(name, " ".join(str(data.get("description", "")).split()))
        out.print(table)

    @recipe_app.command("cp")
    def recipe_cp(name: str, path: Path):
        """Copy a built-in recipe to PATH to edit it."""
        text, _, _ = read_recipe_text(name)
        if path.exists():
            raise OnceError("refusing to overwrite an existing path", where=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf8")
        out.print(f"copied recipe '{name}' to {path}")

    @recipe_app.command("validate")
    def recipe_validate(path: str, set_: Overrides = None):
        """Check a recipe: keys, plugin names, options and required packages."""
        resolved = load_recipe(path, registry, set_)
        out.print(f"[green]valid[/]: {resolved.source} (fingerprint {resolved.fingerprint})")

    @recipe_app.command("show")
    def recipe_show(path: str, set_: Overrides = None):
        """Print the fully resolved recipe, with every default filled in."""
        resolved = load_recipe(path, registry, set_)
        out.print(resolved.to_yaml(), markup=False, highlight=False, soft_wrap=True, end="")
