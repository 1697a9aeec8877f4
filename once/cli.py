"""The `once` command line: the app, its built-in commands (once.commands), plugins' commands, and error output."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from once.commands import BUILT_IN
from once.errors import Interrupted, OnceError
from once.registry import Registry, load_registry


def make_app(registry: Registry, console: Console | None = None) -> typer.Typer:
    """The command-line app over one registry: ONCE's commands, then plugins', all through register_commands."""
    out = console or Console()
    if not out.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        out.width = max(out.width, 160)
    app = typer.Typer(help="ONCE: content-based recommendation boosted by LLMs.", no_args_is_help=True)

    @app.callback()
    def root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for every error.")] = False):
        """Train and evaluate content-based recommenders from recipes."""

    registry.add_commands(app, out, built_in=BUILT_IN)
    return app


def run(args: list[str], registry: Registry | None = None, console: Console | None = None) -> int:
    """Run the command line on `args`; returns the exit code. Errors we expect print as one paragraph."""
    errors = Console(stderr=True, soft_wrap=True)
    debug = "--debug" in args
    if errors.is_terminal:
        handler: logging.Handler = RichHandler(console=errors)
    else:  # a log file or CI: whole lines, never wrapped mid-path at 80 columns
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    for chatty in ("httpx", "httpx2", "openai"):  # one line per HTTP request: our progress bar says enough
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        app = make_app(registry or load_registry(), console)
        app(args=args, prog_name="once", standalone_mode=False)
    except OnceError as error:
        if debug:
            raise
        where = f"[bold]{error.where}[/]: " if error.where else ""
        errors.print(f"[red]error:[/] {where}", end="")
        errors.print(error.message, markup=False, highlight=False)
        if error.hint:
            errors.print(error.hint, markup=False, highlight=False)
        return 130 if isinstance(error, Interrupted) else 2
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as error:
        errors.print(error.format_message(), markup=False, highlight=False)
        return error.exit_code
    except OSError as error:  # a path the user gave that cannot be read or written
        if debug:
            raise
        where = f"[bold]{error.filename}[/]: " if error.filename else ""
        errors.print(f"[red]error:[/] {where}{error.strerror or error}")
        return 2
    except typer.Abort:
        errors.print("aborted")
        return 130
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
