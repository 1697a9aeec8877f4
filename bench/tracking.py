"""What trackers cost a training step: the time spent inside the trackers' `step` calls against the epoch's
training time, for TensorBoard and MLflow at every step and at their default (every 10 steps).

    python bench/tracking.py [--recipe goodreads-nrms] [--steps 200] [--write docs/benchmarks.md]

Each variant trains the same recipe for the same steps (seed 0) in its own run folder; the tracker calls are
timed where the engine makes them (`Tracking.step`), so the figure is the trackers' own cost, not the noise
between two training runs (which on 2 cores is larger than the 2% target).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402

VARIANTS = (("none", None), ("tensorboard", 10), ("tensorboard", 1), ("mlflow", 10), ("mlflow", 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="goodreads-nrms")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    from rich.console import Console

    from once import tracking
    from once.recipe import load_recipe
    from once.train import train

    spent = {"seconds": 0.0, "calls": 0}
    original = tracking.Tracking.step

    def timed(self, step, values):
        began = time.perf_counter()
        original(self, step, values)
        spent["seconds"] += time.perf_counter() - began
        spent["calls"] += 1

    tracking.Tracking.step = timed
    overrides = ["train.epochs=1", f"train.max_steps={args.steps}", "seed=0"]
    if args.recipe.startswith("goodreads"):
        overrides.append(f"dataset.path={build_benchmark(args.builder, 5000, 0, 'none')}")
    rows = []
    started = time.perf_counter()
    for name, every in VARIANTS:
        spent.update(seconds=0.0, calls=0)
        track = [] if every is None else [f"track=[{{name: {name}, every: {every}}}]"]
        resolved = load_recipe(args.recipe, None, [*overrides, *track])
        with tempfile.TemporaryDirectory() as folder:
            result = train(resolved, runs_root=Path(folder), console=Console(stderr=True, quiet=True))
        epoch = result.epochs[0]
        rows.append((name, every, epoch["seconds"], epoch["samples_per_s"], spent["calls"], spent["seconds"]))
        print(rows[-1], file=sys.stderr, flush=True)
    lines = [
        f"`{args.recipe}`, {args.steps} training steps (batch {resolved.recipe.train.batch_size}), one process, "
        "2 threads; time inside the trackers' step calls, as the engine makes them:",
        "",
        "| tracker | every | epoch s | samples/s | steps tracked | s in tracker | overhead |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, every, seconds, rate, calls, inside in rows:
        share = "-" if every is None else f"{100 * inside / (seconds - inside):.2f}%"
        tracked = 0 if every is None else calls // every
        lines.append(f"| {name} | {every or '-'} | {seconds:.1f} | {rate:.0f} | {tracked} | {inside:.3f} | {share} |")
    lines += [
        "",
        f"Command: `python bench/tracking.py --recipe {args.recipe} --steps {args.steps}` "
        f"({(time.perf_counter() - started) / 60:.1f} min)",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "tracking", report)


if __name__ == "__main__":
    main()
