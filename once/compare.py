"""Comparing runs: their metrics side by side, a PNG of their dev-metric curves per epoch, and, for runs tested on
the same impressions, intervals and paired significance as tables for a paper and a PNG by user-history group."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from once.files import write_atomic
from once.measure import SavedImpressions, history_groups, nanmean
from once.metrics import METRICS
from once.runs import Run
from once.significance import Comparison


def best_dev(run: Run) -> dict[str, float]:
    """Dev metrics of the epoch the run kept (its best on the recipe's metric)."""
    epochs = run.epochs()
    if not epochs:
        return {}
    metric = run.recipe()["train"]["metric"]
    return max(epochs, key=lambda e: e["dev"][metric])["dev"]


def plot_curves(runs: list[Run], path: Path) -> None:
    """One panel per metric, one line per run: dev metric against epoch."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], METRICS, strict=True):
        for run in runs:
            epochs = run.epochs()
            axis.plot([e["epoch"] for e in epochs], [e["dev"][metric] for e in epochs], marker="o", label=run.path.name)
        axis.set_title(f"dev {metric.upper()}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(runs), 3), fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, 0.06 * ((len(runs) + 2) // 3), 1, 1))  # room for the legend below
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def significance_rows(comparison: Comparison, names: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison: per metric each run's value [95% interval], then each later run's
    difference from the first [interval] with its p-value and Holm-adjusted p-value."""
    header = ["metric", *names]
    for name in names[1:]:
        header += [f"{name} - {names[0]}", "p", "p (Holm)"]
    rows = []
    for column in comparison.columns:
        row = [column]
        row += [_with_interval(e.value, e.low, e.high, "") for e in (est[column] for est in comparison.estimates)]
        for difference in (d[column] for d in comparison.differences):
            row += [
                _with_interval(difference.value, difference.low, difference.high, "+"),
                _p(difference.p),
                _p(difference.p_holm),
            ]
        rows.append(row)
    return header, rows


def _with_interval(value: float, low: float, high: float, sign: str) -> str:
    if np.isnan(low):  # not bootstrapped (a metric of the set of lists)
        return f"{value:{sign}.4f}"
    return f"{value:{sign}.4f} [{low:{sign}.4f}, {high:{sign}.4f}]"


def _p(p: float) -> str:
    if np.isnan(p):
        return "n/a"
    return f"{p:.4f}" + ("*" if p < 0.05 else "")


def render(header: list[str], rows: list[list[str]], form: str) -> str:
    """The table as markdown, LaTeX (booktabs) or CSV text."""
    if form == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)]) + "\n"
    if form == "latex":

        def escape(text: str) -> str:
            return text.replace("_", r"\_").replace("%", r"\%").replace("*", r"$^*$")

        body = [" & ".join(escape(cell) for cell in row) + r" \\" for row in rows]
        return "\n".join(
            [
                r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
                r"\toprule",
                " & ".join(escape(h) for h in header) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
            ]
        ) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def plot_groups(runs: list[SavedImpressions], names: list[str], bins: list[int], columns: list[str], path: Path):
    """One panel per metric: its value per user-history group, one bar per run (impressions per group below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {name: rows for name, rows in history_groups(runs[0].history_lengths, bins).items() if len(rows)}
    labels = [f"{name}\n({len(rows)} imp.)" for name, rows in groups.items()]
    width = 0.8 / len(runs)
    figure, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 4), squeeze=False)
    for axis, column in zip(axes[0], columns, strict=True):
        for r, (run, name) in enumerate(zip(runs, names, strict=True)):
            values = [nanmean(run.values[column][rows]) for rows in groups.values()]
            axis.bar(np.arange(len(groups)) + (r - (len(runs) - 1) / 2) * width, values, width, label=name)
        axis.set_xticks(np.arange(len(groups)), labels, fontsize="small")
        axis.set_title(f"test {column.upper()} by clicks before the impression")
        axis.set_xlabel("user history")
        axis.set_ylabel(column)
        axis.grid(alpha=0.3, axis="y")
    handles, legend = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, legend, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize="small", frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
