"""The `once` command line."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from once.errors import Interrupted, OnceError, RecipeError, closest
from once.genre.cli import add_genre_commands
from once.kinds import BY_NAME
from once.metrics import METRICS
from once.recipe import (
    DEMO_RECIPE,
    builtin_recipes,
    load_recipe,
    read_recipe_text,
    validation_error,
)
from once.registry import Registry, load_registry
from once.runs import Run, find_runs

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=1e-4")]


def metrics_table(title: str, rows: list[tuple[str, dict[str, float]]], extra: dict[str, list[str]] | None = None):
    table = Table(title=title)
    table.add_column("")
    for name in extra or {}:
        table.add_column(name, justify="right")
    for metric in METRICS:
        table.add_column(metric.upper(), justify="right")
    for i, (label, metrics) in enumerate(rows):
        cells = [values[i] for values in (extra or {}).values()]
        table.add_row(label, *cells, *(f"{metrics[m]:.4f}" if m in metrics else "-" for m in METRICS))
    return table


def make_app(registry: Registry, console: Console | None = None) -> typer.Typer:
    """The command-line app over one registry; plugins add their commands through the register_commands hook."""
    out = console or Console()
    if not out.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        out.width = max(out.width, 160)
    app = typer.Typer(help="ONCE: content-based recommendation boosted by LLMs.", no_args_is_help=True)
    recipe_app = typer.Typer(help="List, copy, validate and show recipes.", no_args_is_help=True)
    app.add_typer(recipe_app, name="recipe")

    @app.callback()
    def root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for every error.")] = False):
        """Train and evaluate content-based recommenders from recipes."""

    @app.command()
    def train(
        recipe: Annotated[str, typer.Argument(help="Recipe file or built-in recipe name.")] = DEMO_RECIPE,
        set_: Overrides = None,
        out_dir: Annotated[Path, typer.Option("--out", help="Folder for run directories.")] = Path("runs"),
        resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory.")] = None,
    ):
        """Train a recipe (the demo when none is given) and test the best epoch."""
        from once.distributed import launched_as_main
        from once.train import train as run_training

        out.quiet = not launched_as_main()  # under torchrun, rank 0 reports for all
        if resume:
            if set_:
                raise RecipeError("--set cannot change a run being resumed", hint="Start a new run instead.")
            resolved = Run.open(resume).resolve(registry)
        else:
            resolved = load_recipe(recipe, registry, set_)
        out.print(f"[bold]recipe[/] {resolved.source}  [bold]fingerprint[/] {resolved.fingerprint}")

        def report(record: dict[str, Any]) -> None:
            dev = "  ".join(f"{m} {record['dev'][m]:.4f}" for m in METRICS)
            out.print(
                f"epoch {record['epoch']}: loss {record['train_loss']:.4f}  dev {dev}  "
                f"({record['samples_per_s']:.0f} samples/s)"
            )

        result = run_training(
            resolved, runs_root=out_dir, resume=resume, plugins=registry.distributions(), on_epoch_end=report
        )
        rows = [(f"epoch {r['epoch']}", r["dev"]) for r in result.epochs]
        losses = {"loss": [f"{r['train_loss']:.4f}" for r in result.epochs]}
        out.print(metrics_table("dev metrics per epoch", rows, losses))
        if result.test:
            groups = [(f"{name} ({int(m['impressions'])} imp.)", m) for name, m in result.test_groups.items()]
            out.print(metrics_table("test (best dev epoch)", [("test", result.test), *groups]))
        out.print(f"run directory: [bold]{result.run.path}[/]")

    @app.command()
    def cache(
        recipe: Annotated[str, typer.Argument(help="Recipe file or built-in recipe name.")],
        set_: Overrides = None,
        shard_items: Annotated[
            int | None, typer.Option(min=1, help="Items per shard file, for a new cache (default 4096).")
        ] = None,
    ):
        """Run the frozen layers of the recipe's LM item encoder over every item and store their hidden states."""
        import torch

        from once.distributed import init_world
        from once.model import build_recommender
        from once.states import SHARD_ITEMS, build_cache
        from once.train import pick_device, prepare_once

        resolved = load_recipe(recipe, registry, set_)
        world = init_world(use_cuda=resolved.recipe.device in ("auto", "cuda") and torch.cuda.is_available())
        data = prepare_once(resolved, world)
        device = pick_device(resolved.recipe.device, world)
        model = build_recommender(resolved, data).to(device)
        started = time.perf_counter()
        states = build_cache(
            model,
            data,
            batch_size=resolved.recipe.eval.batch_size,
            device=device,
            shard_items=shard_items or SHARD_ITEMS,
            world=world,
        )
        size = sum(f.stat().st_size for f in states.folder.iterdir()) / 2**20
        if world.main:  # under torchrun, rank 0 reports for all
            out.print(
                f"cached hidden states of {data.num_items} items ({len(states.shards)} shards, {size:.1f} MB) "
                f"in {states.folder} ({time.perf_counter() - started:.1f} s)"
            )

    @app.command("eval")
    def evaluate_run(
        run_dir: Annotated[Path, typer.Argument(help="A run directory made by `once train`.")],
        split: Annotated[str, typer.Option(help="dev or test")] = "test",
        prediction: Annotated[Path | None, typer.Option(help="Write MIND leaderboard prediction.txt here.")] = None,
        plain: Annotated[
            bool, typer.Option(help="Run the full model per impression instead of the fast path.")
        ] = False,
    ):
        """Re-evaluate a saved run's best checkpoint."""
        from once.data.files import write_atomic
        from once.evaluate import evaluation_settings, prediction_lines, score_split
        from once.metrics import mind_metrics
        from once.serve import load_run

        loaded = load_run(run_dir, registry)
        if split not in loaded.data.splits:
            raise OnceError(f"the dataset has no '{split}' split", hint=f"Splits: {', '.join(loaded.data.splits)}.")
        chosen = loaded.data.splits[split]
        settings = evaluation_settings(loaded.resolved, loaded.data, loaded.device)
        scores = score_split(loaded.model, chosen, fast=not plain, **settings)
        if prediction:
            write_atomic(prediction, prediction_lines(chosen, scores))
            out.print(f"wrote {len(scores)} impressions to {prediction}")
        if chosen.labeled:
            metrics = mind_metrics((chosen.labels[i] for i in range(len(chosen))), scores)
            out.print(metrics_table(f"{split} metrics", [(split, metrics)]))
        elif not prediction:
            out.print(f"the {split} split is unlabeled: use --prediction FILE to write rankings")

    @app.command()
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
        dataset = part.implementation(options, None)
        if not hasattr(dataset, "export"):
            raise OnceError(f"the dataset '{name}' cannot be written out (it reads files you already have)")
        if out_dir.exists() and any(out_dir.iterdir()):
            raise OnceError("refusing to write into a folder that is not empty", where=str(out_dir))
        dataset.export(out_dir)
        out.print(f"wrote dataset '{name}' to {out_dir}")

    plugins_app = typer.Typer(help="List registered parts, or show one with its options.")
    app.add_typer(plugins_app, name="plugins")

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

    @recipe_app.command("ls")
    def recipe_ls():
        """List the built-in recipes."""
        table = Table(title="built-in recipes")
        table.add_column("name")
        table.add_column("description")
        for name, resource in sorted(builtin_recipes().items()):
            text = resource.read_text(encoding="utf8")
            description = next(
                (line[len("description:") :].strip() for line in text.splitlines() if line.startswith("description:")),
                "",
            )
            table.add_row(name, description.strip("'\""))
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

    @app.command()
    def runs(folder: Annotated[Path, typer.Argument(help="Folder to search for run directories.")] = Path("runs")):
        """Compare runs: recipe, fingerprint, date, best dev and test metrics."""
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

    @app.command()
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
    ):
        """Rank items for users with a trained model."""
        import json

        from once.data.files import read_text, write_atomic
        from once.serve import TrainedModel

        wanted = list(user or [])
        if users_file:
            wanted += [line.strip() for line in read_text(users_file).splitlines() if line.strip()]
        wanted = list(dict.fromkeys(wanted))  # each user once, in the order given
        if not wanted:
            raise OnceError("name at least one user", hint="Use --user UID or --users FILE.")
        trained = TrainedModel(run_dir, registry)
        pool = trained.candidates_from_file(candidates) if candidates else None
        results = trained.recommend(wanted, top, pool, include_history)
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

    @app.command()
    def export(
        run_dir: Annotated[Path, typer.Argument(help="A run directory made by `once train`.")],
        out_dir: Annotated[Path, typer.Argument(help="Folder for the vectors and id maps.")],
    ):
        """Write item and user vectors (safetensors) with their id maps, for an ANN index."""
        from once.serve import TrainedModel

        counts = TrainedModel(run_dir, registry).export(out_dir)
        out.print(f"wrote {counts['items']} item and {counts['users']} user vectors to {out_dir}")

    @app.command()
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

    add_genre_commands(app, registry, out)
    registry.add_commands(app)
    return app


def run(args: list[str], registry: Registry | None = None, console: Console | None = None) -> int:
    """Run the command line on `args`; returns the exit code. Errors we expect print as one paragraph."""
    errors = Console(stderr=True, soft_wrap=True)
    debug = "--debug" in args
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=errors)], force=True)
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
