"""Train NRMS for a fixed number of steps on the Goodreads-MIND benchmark; print throughput, eval time, memory.

    python bench/goodreads.py [--users 5000] [--steps 200] [--builder PATH/goodreads_to_mind.py]

Builds the benchmark (leave-last-out, popularity-drawn negatives) with the shared builder script into the ONCE
cache, trains the built-in `goodreads-nrms` recipe for `--steps` optimizer steps, then times the dev split with
the fast evaluation path and with the plain path (full model per impression) side by side.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from once.data.files import cache_root
from once.data.prepare import prepare
from once.evaluate import evaluate
from once.recipe import load_recipe
from once.registry import load_registry
from once.train import train

DEFAULT_BUILDER = Path(__file__).resolve().parents[2] / "shared" / "bench" / "goodreads_to_mind.py"


def build_benchmark(builder: Path, users: int, seed: int) -> Path:
    out = cache_root() / "goodreads-mind" / f"users{users}-seed{seed}"
    if not (out / "meta.json").exists():
        subprocess.run(
            [sys.executable, str(builder), str(out), "--max-users", str(users), "--seed", str(seed)], check=True
        )
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe overrides")
    args = parser.parse_args()
    console = Console()

    folder = build_benchmark(args.builder, args.users, args.seed)
    registry = load_registry()
    overrides = [
        f"dataset.path={folder}",
        "train.epochs=1",
        f"train.max_steps={args.steps}",
        "device=cpu",
        *args.overrides,
    ]
    resolved = load_recipe("goodreads-nrms", registry, overrides)
    started = time.perf_counter()
    data = prepare(resolved)
    prepare_seconds = time.perf_counter() - started

    runs = cache_root() / "bench-runs"
    result = train(resolved, runs_root=runs, console=Console(stderr=True, quiet=True))
    epoch = result.epochs[0]
    samples = min(args.steps * resolved.recipe.train.batch_size, epoch["samples_per_s"] * epoch["seconds"])
    train_split = data.splits["train"]
    clicks_per_impression = (train_split.labels.values == 1).sum() / len(train_split)

    from once.checkpoint import load_model
    from once.model import build_recommender

    model = build_recommender(resolved, data)
    load_model(result.run.path / "best.safetensors", model)
    kwargs = {
        "num_items": data.num_items,
        "max_history": resolved.recipe.train.max_history,
        "batch_size": resolved.recipe.eval.batch_size,
        "device": torch.device("cpu"),
    }
    timings = {}
    for path_name, fast in (("fast", True), ("plain", False)):
        started = time.perf_counter()
        metrics = evaluate(model, data.splits["dev"], fast=fast, **kwargs)
        timings[path_name] = (time.perf_counter() - started, metrics)

    table = Table(
        title=f"NRMS on Goodreads-MIND ({args.users} users, {args.steps} steps, {torch.get_num_threads()} threads)"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        (
            "items / train impressions / dev impressions",
            f"{data.num_items - 1} / {len(train_split)} / {len(data.splits['dev'])}",
        ),
        ("tokenize + cache (s, first run only)", f"{prepare_seconds:.1f}"),
        ("train samples (clicks) / s", f"{epoch['samples_per_s']:.1f}"),
        ("train impressions / s", f"{epoch['samples_per_s'] / clicks_per_impression:.1f}"),
        ("train seconds", f"{epoch['seconds']:.1f} for {samples:.0f} samples"),
        ("dev eval seconds, fast path", f"{timings['fast'][0]:.2f}"),
        ("dev eval seconds, plain path", f"{timings['plain'][0]:.2f}"),
        ("fast / plain speed-up", f"{timings['plain'][0] / timings['fast'][0]:.1f}x"),
        ("dev AUC fast | plain", f"{timings['fast'][1]['auc']:.4f} | {timings['plain'][1]['auc']:.4f}"),
        ("peak resident memory (MB)", f"{peak_rss_mb():.0f}"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
