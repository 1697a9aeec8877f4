"""`once compare`: runs side by side, and their dev curves."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from once.commands.common import metrics_table
from once.hookspecs import hookimpl
from once.registry import Registry
from once.runs import Run


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    latex = "latex"
    csv = "csv"


@hookimpl(tryfirst=True)
def register_commands(cli: typer.Typer, registry: Registry, console: Console) -> None:
    """Add the command to `cli`: this module's implementation of the `register_commands` hook."""
    out = console
    @cli.command()
    def compare(
        run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to compare; the first is the baseline.")],
        png: Annotated[Path, typer.Option(help="Where to write the dev-metric curves.")] = Path("compare.png"),
        groups_png: Annotated[
            Path | None, typer.Option(help="Where to write test metrics by user-history group (default: beside --png).")
        ] = None,
        form: Annotated[
            Format, typer.Option("--format", help="The significance table as table, markdown, latex or csv.")
        ] = Format.table,
        out_file: Annotated[Path | None, typer.Option("--out", help="Write that table to this file.")] = None,
        resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples of the test impressions.")] = 1000,
        seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    ):
        """Print runs' best-dev and test metrics side by side and plot their dev curves per epoch; for runs tested on
        the same impressions, 95% bootstrap intervals, paired differences from the first run with p-values (Holm
        across metrics), and test metrics by user-history group."""
        from once.compare import best_dev, plot_curves, plot_groups, render, significance_rows
        from once.files import write_atomic
        from once.measure import MetricSuite, SavedImpressions
        from once.runs import TEST_IMPRESSIONS
        from once.significance import compare as paired

        runs = [Run.open(path) for path in run_dirs]
        rows = []
        for run in runs:
            rows.append((f"{run.path.name} dev", best_dev(run)))
            rows.append((f"{run.path.name} test", run.test_metrics() or {}))
        out.print(metrics_table("runs compared (dev: the kept epoch)", rows))
        plot_curves(runs, png)
        out.print(f"dev curves: {png}")
        lacking = [run.path.name for run in runs if not (run.path / TEST_IMPRESSIONS).exists()]
        if lacking:
            out.print(f"no intervals: {', '.join(lacking)} kept no {TEST_IMPRESSIONS} (no labeled test split, or a"
                      " run from before ONCE kept them: `once eval RUN --split test` writes it)")
            return
        saved = [SavedImpressions.read(run.path / TEST_IMPRESSIONS) for run in runs]
        names = [run.path.name for run in runs]
        resolved = runs[0].resolve(registry)
        suite = MetricSuite.build(resolved, saved[0].categories)
        comparison = paired(suite, saved, names, resamples, seed)
        header, table_rows = significance_rows(comparison, names)
        if form is Format.table:
            table = Table(title=f"test metrics, 95% bootstrap intervals ({resamples} resamples of"
                          f" {len(saved[0].impression_ids)} impressions); * p < 0.05")
            for name in header:
                table.add_column(name, justify="left" if name == "metric" else "right")
            for row in table_rows:
                table.add_row(*row)
            out.print(table)
        else:
            text = render(header, table_rows, form.value)
            if out_file is None:
                out.print(text, markup=False, highlight=False, end="")
        if out_file is not None:
            write_atomic(out_file, render(header, table_rows, "csv" if form is Format.table else form.value))
            out.print(f"table: {out_file}")
        accuracy = [c for c in ("auc", "ndcg@10") if c in comparison.columns and c in saved[0].values]
        groups_png = groups_png or png.with_name(f"{png.stem}-groups.png")
        plot_groups(saved, names, resolved.recipe.eval.history_bins, accuracy or comparison.columns[:1], groups_png)
        out.print(f"test metrics by user history: {groups_png}")
