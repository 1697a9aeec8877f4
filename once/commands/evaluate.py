"""`once eval`: re-evaluate a saved run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from once.commands.common import metrics_table
from once.errors import OnceError
from once.hookspecs import hookimpl
from once.registry import Registry


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command("eval")
    def evaluate_run(
        run_dir: Annotated[Path, typer.Argument(help="A run directory made by `once train`.")],
        split: Annotated[str, typer.Option(help="dev or test")] = "test",
        prediction: Annotated[
            Path | None,
            typer.Option(help="Write MIND leaderboard prediction.txt here, and beside it the zip it takes."),
        ] = None,
        plain: Annotated[
            bool, typer.Option(help="Run the full model per impression instead of the fast path.")
        ] = False,
    ):
        """Re-evaluate a saved run's best checkpoint."""
        from once.evaluate import evaluation_settings, prediction_archive, prediction_lines, score_split
        from once.files import write_atomic
        from once.measure import MetricSuite, category_fields, measure, save_impressions
        from once.runs import TEST_IMPRESSIONS
        from once.trained import load_run

        loaded = load_run(run_dir, registry)
        if split not in loaded.data.splits:
            raise OnceError(f"the dataset has no '{split}' split", hint=f"Splits: {', '.join(loaded.data.splits)}.")
        chosen = loaded.data.splits[split]
        settings = evaluation_settings(loaded.resolved, loaded.data, loaded.device)
        metrics = None
        if chosen.labeled:
            suite = MetricSuite.build(loaded.resolved, category_fields(loaded.data))
            scores, scored, values, metrics = measure(suite, loaded.model, loaded.data, chosen, settings, not plain)
            if split == "test" and not plain:  # what `once compare` pairs runs on (the plain path: a check only)
                save_impressions(Path(run_dir) / TEST_IMPRESSIONS, chosen, loaded.data, scored, values)
        else:
            scores = score_split(loaded.model, chosen, fast=not plain, **settings)
        if prediction:
            text = prediction_lines(chosen, scores)
            archive = prediction.with_suffix(".zip")
            if prediction.suffix != ".zip":
                write_atomic(prediction, text)
            member = prediction.name if prediction.suffix != ".zip" else "prediction.txt"
            write_atomic(archive, prediction_archive(text, member))
            out.print(f"wrote {len(scores)} impressions to {prediction} and {archive} (for the leaderboard)")
        if metrics is not None:
            out.print(metrics_table(f"{split} metrics", [(split, metrics)]))
        elif not prediction:
            out.print(f"the {split} split is unlabeled: use --prediction FILE to write rankings")
