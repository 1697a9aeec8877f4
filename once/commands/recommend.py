"""`once recommend`: rank items for users with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.errors import OnceError
from once.hookspecs import hookimpl
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def recommend(
        run_dir: Annotated[Path, typer.Argument(help="A run directory made by `once train`.")],
        user: Annotated[list[str] | None, typer.Option("--user", help="User id (repeatable).")] = None,
        users_file: Annotated[Path | None, typer.Option("--users", help="File of user ids, one per line.")] = None,
        top: Annotated[int, typer.Option(min=1)] = 10,
        candidates: Annotated[Path | None, typer.Option(help="Rank only these item ids (a file).")] = None,
        include_history: Annotated[
            bool, typer.Option(help="Also rank items already in the user's history or clicked.")
        ] = False,
        out_file: Annotated[Path | None, typer.Option("--out", help="Write JSON lines here instead of tables.")] = None,
        measure: Annotated[
            bool,
            typer.Option(
                help="Also measure the lists by the recipe's beyond-accuracy metrics at k = --top (with --out: "
                "written to OUT.metrics.json too)."
            ),
        ] = False,
    ):
        """Rank items for users with a trained model."""
        import json

        from once.files import read_text, write_atomic
        from once.trained import TrainedModel

        wanted = list(user or [])
        if users_file:
            wanted += [line.strip() for line in read_text(users_file).splitlines() if line.strip()]
        wanted = list(dict.fromkeys(wanted))  # each user once, in the order given
        if not wanted:
            raise OnceError("name at least one user", hint="Use --user UID or --users FILE.")
        trained = TrainedModel(run_dir, registry)
        pool = trained.candidates_from_file(candidates) if candidates else None
        results = trained.recommend(wanted, top, pool, include_history)
        if measure:
            from once.files import write_json
            from once.measure import measure_lists

            values = measure_lists(trained, wanted, top, pool, include_history)
            table = Table(title=f"the {len(wanted)} lists, by the recipe's beyond-accuracy metrics")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for name, value in values.items():
                table.add_row(name, f"{value:.4f}")
            out.print(table)
            if out_file:
                defined = {name: None if value != value else value for name, value in values.items()}  # NaN: null
                write_json(out_file.with_name(out_file.name + ".metrics.json"), {"users": len(wanted), **defined})
        if out_file:
            lines = [
                json.dumps({"user": u, "items": [r.item for r in recs], "scores": [r.score for r in recs]}) + "\n"
                for u, recs in results.items()
            ]
            write_atomic(out_file, "".join(lines))
            out.print(f"wrote recommendations for {len(lines)} user(s) to {out_file}")
            return
        for name, recommendations in results.items():
            table = Table(title=f"top {top} for user {name}")
            for column in ("rank", "item", "title", "score"):
                table.add_column(column, justify="right" if column in ("rank", "score") else "left")
            for rank, r in enumerate(recommendations, 1):
                table.add_row(str(rank), r.item, r.title, f"{r.score:.4f}")
            out.print(table)
