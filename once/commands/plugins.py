"""`once plugins`: list registered parts; `once plugins show KIND NAME`: one part and its options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.errors import OnceError, closest
from once.hookspecs import hookimpl
from once.kinds import BY_NAME
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    plugins_app = typer.Typer(help="List registered parts, or show one with its options.")
    cli.add_typer(plugins_app, name="plugins")

    @plugins_app.callback(invoke_without_command=True)
    def plugins(
        ctx: typer.Context,
        kind: Annotated[str | None, typer.Option(help=f"Only this kind: {', '.join(BY_NAME)}.")] = None,
    ):
        """List every registered part: kind, name, providing distribution and version (and disabled plugins)."""
        if ctx.invoked_subcommand:
            return
        if kind is not None and kind not in BY_NAME:
            guess = closest(kind, list(BY_NAME))
            raise OnceError(
                f"unknown kind of part '{kind}'",
                hint=(f"Did you mean '{guess}'? " if guess else "") + f"Kinds: {', '.join(BY_NAME)}.",
            )
        table = Table(title="registered plugins")
        for column in ("kind", "name", "distribution", "version", "plugin"):
            table.add_column(column)
        for part in registry.parts():
            if kind is None or part.kind == kind:
                table.add_row(
                    part.kind.replace("_", " "),
                    part.name,
                    part.distribution or "(in-process)",
                    part.version or "",
                    part.plugin,
                )
        out.print(table)
        if registry.disabled:
            names = ", ".join(f"{name} ({distribution or '?'})" for name, distribution in registry.disabled)
            out.print(f"disabled by ONCE_DISABLE_PLUGINS: {names}")
        out.print("Details and options of one part: once plugins show KIND NAME")

    @plugins_app.command("show")
    def plugins_show(
        kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(BY_NAME)}.")],
        name: Annotated[str, typer.Argument(help="The part's name, as in a recipe.")],
    ):
        """Where a part lives, its docstring, every option (type, default, constraint) and a recipe snippet."""
        from once.describe import describe

        info = describe(registry.get(kind, name))
        out.print(f"[bold]{info.part.kind.replace('_', ' ')} '{info.part.name}'[/]  from {info.part.provider}")
        out.print(f"module {info.module}  ({info.location})", markup=False, highlight=False)
        out.print(info.doc, markup=False, highlight=False)
        table = Table(title=f"options ({info.part.options.__name__})")
        for column in ("option", "type", "default", "constraint", "description"):
            table.add_column(column)
        for option in info.options:
            table.add_row(option.name, option.type, option.default, option.constraints, option.description)
        out.print(table if info.options else "no options")
        out.print("recipe snippet:")
        out.print(info.snippet, markup=False, highlight=False, end="")
