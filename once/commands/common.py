"""What several commands share: the --set option and the metrics table.

Command modules import only what defining their options needs; the rest (numpy, torch, the engine) is imported in
the command's body, so that `once --help` and the light commands start fast (tests/test_startup.py).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=1e-4")]


def metrics_table(title: str, rows: list[tuple[str, dict[str, float]]], extra: dict[str, list[str]] | None = None):
    from once.metrics import METRICS  # numpy: imported when a table is printed, not at start-up

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
