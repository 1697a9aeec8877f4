"""`once serve`: a trained run behind an HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from once.errors import OnceError
from once.hookspecs import hookimpl
from once.registry import Registry

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console

    @cli.command()
    def serve(
        run_dir: Annotated[
            Path, typer.Argument(help="A run directory made by `once train` (a link to one reloads well).")
        ],
        host: Annotated[str, typer.Option(help="Address to bind; the default takes no connection from elsewhere.")] = (
            "127.0.0.1"
        ),
        port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
        index: Annotated[str, typer.Option(help="exact: the model scores every item; hnsw: an ANN index proposes.")] = (
            "exact"
        ),
        token_file: Annotated[
            Path | None, typer.Option(help="A file holding the bearer token every request must carry.")
        ] = None,
        items_db: Annotated[
            Path | None,
            typer.Option(
                help="SQLite file of the posted items (default: RUN_DIR.items.sqlite3, beside the run or link)."
            ),
        ] = None,
        max_body: Annotated[int, typer.Option(min=1024, help="Largest request body, in bytes.")] = 1 << 20,
        log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    ):
        """Serve recommendations, scores and new items over HTTP (OpenAPI docs at /docs). SIGHUP reloads RUN_DIR."""
        try:
            import uvicorn

            from once.server.app import Served, create_app
        except ImportError as error:
            raise OnceError(
                f"once serve needs the serving extra ({error.name} is not installed)",
                hint='pip install "once[serve]"',
            ) from None
        import signal
        import threading

        from once.files import read_text
        from once.server.store import ItemStore

        if index not in ("exact", "hnsw"):
            raise OnceError(f"unknown index '{index}'", where="--index", hint="Use exact or hnsw.")
        token = None
        if token_file is not None:
            token = read_text(token_file).strip()
            if not token:
                raise OnceError(
                    "the token file is empty", where=str(token_file), hint="Write a long random token in it."
                )
        elif host not in LOOPBACK:
            out.print(f"[yellow]warning:[/] serving on {host} with no --token-file: anyone who can reach it can use it")
        # beside the path given, not inside it: a link repointed at a newer run keeps its posted items
        store = ItemStore(items_db or run_dir.with_name(run_dir.name + ".items.sqlite3"))
        out.print(f"loading {run_dir} ...")
        served = Served(run_dir, index, store, registry)
        current = served.current
        recall = "" if current.recall is None else f", recall@10 {current.recall:.3f} against exact"
        out.print(f"{current.items} items, {current.posted} posted, index {index}{recall}")

        def reload_on_hangup(*_):
            def work():
                try:
                    served.reload()
                    out.print(f"reloaded {run_dir}")
                except Exception as error:  # the old model keeps serving
                    out.print(f"[red]not reloaded:[/] {error}")

            threading.Thread(target=work, daemon=True).start()

        signal.signal(signal.SIGHUP, reload_on_hangup)
        uvicorn.run(create_app(served, token, max_body), host=host, port=port, log_level=log_level)
        store.close()
