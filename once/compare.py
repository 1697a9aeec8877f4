"""Comparing runs: their metrics side by side, and a PNG of their dev-metric curves per epoch."""

from __future__ import annotations

from pathlib import Path

from once.files import write_atomic
from once.metrics import METRICS
from once.runs import Run


def best_dev(run: Run) -> dict[str, float]:
    """Dev metrics of the epoch the run kept (its best on the recipe's metric)."""
    epochs = run.epochs()
    if not epochs:
        return {}
    metric = run.recipe()["train"]["metric"]
    return max(epochs, key=lambda e: e["dev"][metric])["dev"]


def plot_curves(runs: list[Run], path: Path) -> None:
    """One panel per metric, one line per run: dev metric against epoch."""
    import io

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
