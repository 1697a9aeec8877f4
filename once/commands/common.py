"""What several commands share: the --set option and the metrics table.

Command modules import only what defining their options needs; the rest (numpy, torch, the engine) is imported in
the command's body, so that `once --help` and the light commands start fast (tests/test_startup.py).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

WIDE = 8  # metrics above which a table turns to one row per metric
Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=1e-4")]


def metrics_table(title: str, rows: list[tuple[str, dict[str, float]]], extra: dict[str, list[str]] | None = None):
    """One row per label, one column per metric the rows report (in the order they first appear)."""
    columns = list(dict.fromkeys(name for _, metrics in rows for name in metrics if name != "impressions"))
    if len(columns) > WIDE and not extra:  # many metrics: one row per metric reads better than a wrapped table
        table = Table(title=title)
        table.add_column("metric")
        for label, metrics in rows:
            table.add_column(_label(label, metrics), justify="right")
        for metric in columns:
            table.add_row(metric, *(_cell(metrics.get(metric)) for _, metrics in rows))
        return table
    table = Table(title=title)
    table.add_column("")
    for name in extra or {}:
        table.add_column(name, justify="right")
    for metric in columns:
        table.add_column(metric.upper(), justify="right")
    for i, (label, metrics) in enumerate(rows):
        cells = [values[i] for values in (extra or {}).values()]
        table.add_row(_label(label, metrics), *cells, *(_cell(metrics.get(m)) for m in columns))
    return table


def _label(label: str, metrics: dict[str, float]) -> str:
    """A group's label says how many impressions it holds."""
    return f"{label} ({int(metrics['impressions'])} imp.)" if "impressions" in metrics else label


def _cell(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"  # NaN: not defined for these impressions
