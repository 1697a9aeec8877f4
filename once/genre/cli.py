"""The `once genre` commands: one per registered scheme (built-in or from a plugin), plus `import`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.errors import Interrupted
from once.hookspecs import hookimpl
from once.progress import progress_bar
from once.recipe import ResolvedRecipe
from once.registry import Registry

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set genre.out=answers")]


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """`once genre SCHEME` for every augmenter, and `once genre import`: this module's register_commands hook."""
    app, out = cli, console
    genre_app = typer.Typer(
        help="Enrich data with an LLM (GENRE): summaries, user profiles, generated items.", no_args_is_help=True
    )
    app.add_typer(genre_app, name="genre")
    for part in registry.parts():
        if part.kind == "augmenter":
            genre_app.command(part.name, help=f"Run the '{part.name}' scheme ({part.plugin}).")(
                _scheme_command(part.name, registry, out)
            )

    @genre_app.command("import")
    def import_command(
        logs: Annotated[Path, typer.Argument(help="Folder of the ONCE paper's Goodreads logs.")],
        out_dir: Annotated[Path, typer.Argument(help="Folder to write summarize/profile/generate.jsonl into.")],
    ):
        """Convert the ONCE paper's published GPT-3.5 answers into answer files usable by `augment`."""
        from once.genre.paper_logs import import_logs

        counts = import_logs(logs, out_dir, registry)
        for key, count in counts.items():
            out.print(f"{key}: {count} records -> {out_dir / (key + '.jsonl')}")


def _scheme_command(key: str, registry: Registry, out: Console):
    def command(
        recipe: Annotated[str, typer.Argument(help="Recipe file or built-in recipe name.")],
        set_: Overrides = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Count requests and tokens; send nothing.")] = False,
        retry_failed: Annotated[bool, typer.Option(help="Ask again for failed and malformed answers.")] = False,
        limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many requests.")] = None,
    ):
        from once.genre.command import answers_lock
        from once.recipe import load_recipe

        resolved = load_recipe(recipe, registry, set_)
        section = resolved.recipe.genre
        with answers_lock(section, key):  # held from reading the answers to the last one written
            _plan_and_send(key, resolved, registry, out, recipe, dry_run, retry_failed, limit)

    command.__doc__ = f"Ask the LLM for the '{key}' scheme over the recipe's data; answers go to genre.out/{key}.jsonl."
    return command


def _plan_and_send(
    key: str,
    resolved: ResolvedRecipe,
    registry: Registry,
    out: Console,
    recipe: str,
    dry_run: bool,
    retry_failed: bool,
    limit: int | None,
) -> None:
    """Plan the scheme's requests, print the estimate and (unless a dry run) send them and report."""
    from once.genre.command import estimate, execute, plan

    section = resolved.recipe.genre
    work = plan(resolved, key, registry, retry_failed=retry_failed, limit=limit)
    figures = estimate(work, section)
    out.print(
        f"[bold]{key}[/]: {work.total} requests for this data, {work.answered} already answered"
        f" in {work.store.path}; {figures['requests']} to send"
        + (f" ({work.held_back} left for later by --limit)" if work.held_back else "")
        + f", about {figures['prompt_tokens']:,} prompt"
        f" tokens and at most {figures['max_answer_tokens']:,} answer tokens"
        + (f", at most ${figures['max_cost']:.4f}" if "max_cost" in figures else "")
    )
    if dry_run or not work.pending:
        return
    started = time.perf_counter()
    with progress_bar("{task.fields[rate]:.1f} answers/s", "{task.fields[problems]}", console=out) as progress:
        task = progress.add_task(key, total=len(work.pending), rate=0.0, problems="")

        def done(report) -> None:
            answered = report.ok + report.failed + report.malformed
            progress.update(
                task,
                completed=answered,
                rate=answered / (time.perf_counter() - started),
                problems=f"{report.failed} failed, {report.malformed} malformed, {report.retries} retries",
            )

        try:
            report = execute(work, section, done)
        except KeyboardInterrupt:
            raise Interrupted(
                "stopped; every answer received so far is recorded",
                where=str(work.store.path),
                hint=f"Run the same command again to continue: once genre {key} {recipe}",
            ) from None
    table = Table(title=f"once genre {key}")
    for column in ("requests sent", "ok", "failed", "malformed", "retries", "prompt tokens", "answer tokens", "s"):
        table.add_column(column, justify="right")
    table.add_row(
        *map(str, (report.requests, report.ok, report.failed, report.malformed, report.retries)),
        f"{report.prompt_tokens:,}",
        f"{report.completion_tokens:,}",
        f"{report.seconds:.1f}",
    )
    out.print(table)
    if report.errors:
        out.print("transient errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items())))
    if report.failed or report.malformed:
        out.print(f"ask again for the failed and malformed ones: once genre {key} {recipe} --retry-failed")
