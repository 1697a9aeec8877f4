"""Where one training step's time goes, per model: a torch.profiler trace of the trainer's own step, grouped.

    python bench/profile_step.py [--corpus goodreads] [--models nrms naml lstur] [--steps 20] [--write FILE]

Goodreads-MIND (5,000 users, seed 0) with the built-in `goodreads-<model>` recipes: batch 64, the impression's own
4 negatives, titles of at most 16 tokens; or, with `--corpus mind-small`, the synthetic corpus of MIND-small's size
with the `demo-<model>` recipes (bench/throughput.py's rows; written to the `profile-mind-small` section). Each
model runs in its own process. The step is split into: building the batch (sampling, padding, tensors), the
forward pass (its item encoding, unique/gather of the batch's items, user encoding and loss apart), the backward
pass (its word-embedding gradient apart) and the optimizer step. The last row is the time spent outside any aten
operator: Python, the dispatcher, allocation. Shares are of the wall time of the timed steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402
from throughput import recipe_for  # noqa: E402

PHASES = ("batch", "unique/gather", "item encoder", "user encoder + score", "loss", "backward", "optimizer")


def run_one(model: str, folder: Path | None, steps: int, corpus: str = "goodreads") -> dict:
    import numpy as np
    import torch
    from rich.console import Console
    from torch.profiler import ProfilerActivity, profile, record_function

    import once.model
    from once.assembly import load_data
    from once.data.sampling import training_batches
    from once.recipe import load_recipe
    from once.train import Trainer, click_loss

    recipe, overrides = recipe_for(corpus, model, folder)
    resolved = load_recipe(recipe, None, overrides)
    data = load_data(resolved)
    trainer = Trainer(resolved, data, Console(stderr=True, quiet=True))
    train, split = resolved.recipe.train, data.splits["train"]
    rng = np.random.default_rng(0)
    negatives = trainer.samples.negatives(train.negatives, data.num_items, rng)
    order = rng.permutation(len(trainer.samples))
    batches = training_batches(
        trainer.samples, split.history, split.user_ids, negatives, order, train.batch_size, train.max_history
    )
    recommender = trainer.model
    encode_items, encode_users = recommender.encode_items, recommender.encode_users
    unique = torch.unique

    def labelled(name, function):
        def call(*args, **kwargs):
            with record_function(name):
                return function(*args, **kwargs)

        return call

    recommender.encode_items = labelled("item encoder", encode_items)
    recommender.encode_users = labelled("user encoder + score", encode_users)
    once.model.torch.unique = labelled("unique/gather", unique)  # the batch's distinct items, in Recommender

    def step(batch):
        batch = {k: v.to(trainer.device) for k, v in batch.items()}
        with record_function("forward"):
            scores = recommender(batch["history"], batch["candidates"], batch["users"])
        with record_function("loss"):
            loss = click_loss(scores.float(), batch.get("labels"))
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            trainer._optimizer_step()
        return len(batch["candidates"])

    recommender.train()
    for batch in islice(batches, 5):  # warm-up
        step(batch)
    impressions = 0
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        begun = time.perf_counter()
        for _ in range(steps):
            with record_function("batch"):
                batch = next(batches)
            impressions += step(batch)
        wall = time.perf_counter() - begun
    once.model.torch.unique = unique
    totals = {e.key: e.cpu_time_total / 1e6 for e in trace.key_averages()}  # seconds, children included
    seconds = {phase: totals.get(phase, 0.0) for phase in PHASES}
    # the autograd nodes around these contain them; a sparse lookup's gradient is densified by once.nn's hook
    # (to_dense), but autograd's sum of a step's sparse gradients is an `aten::add` among the others
    embedding_backward = sum(
        totals.get(name, 0.0)
        for name in ("aten::embedding_dense_backward", "aten::embedding_sparse_backward", "aten::to_dense")
    )
    forward = totals.get("forward", 0.0)
    seconds["forward, rest"] = max(
        0.0, forward - seconds["unique/gather"] - seconds["item encoder"] - seconds["user encoder + score"]
    )
    seconds["word-embedding gradient"] = embedding_backward
    operators = sum(e.self_cpu_time_total for e in trace.key_averages() if e.key.startswith("aten::")) / 1e6
    seconds["outside operators (Python, dispatch)"] = max(0.0, wall - operators)
    return {
        "model": model,
        "wall": wall,
        "steps": steps,
        "impressions_per_s": impressions / wall,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
    }


def table(rows: list[dict]) -> str:
    phases = [
        *PHASES[:4],
        "forward, rest",
        "loss",
        "backward",
        "word-embedding gradient",
        "optimizer",
        "outside operators (Python, dispatch)",
    ]
    lines = ["| share of a step | " + " | ".join(r["model"].upper() for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for phase in phases:
        cells = [f"{100 * r['seconds'][phase] / r['wall']:.1f}%" for r in rows]
        label = f"({phase}: part of backward)" if phase == "word-embedding gradient" else phase
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| ms per step | " + " | ".join(f"{1000 * r['wall'] / r['steps']:.0f}" for r in rows) + " |")
    rates = " | ".join(f"{r['impressions_per_s']:.0f}" for r in rows)
    lines.append(f"| samples/s under the profiler (a click with its negatives) | {rates} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["goodreads", "mind-small"], default="goodreads")
    parser.add_argument("--models", nargs="+", default=["nrms", "naml", "lstur"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--write", type=Path, default=None, help="replace the profile section of this Markdown file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.folder, args.steps, args.corpus)))
        return
    folder = build_benchmark(DEFAULT_BUILDER, args.users, 0, "none") if args.corpus == "goodreads" else None
    rows = []
    for model in args.models:
        command = [sys.executable, __file__, "--one", model, "--steps", str(args.steps), "--corpus", args.corpus]
        command += ["--folder", str(folder)] if folder else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    text = table(rows)
    print(text)
    if args.write:
        command = f"python bench/profile_step.py --corpus {args.corpus} --models {' '.join(args.models)}"
        command += f" --steps {args.steps}"
        section = "profile" if args.corpus == "goodreads" else f"profile-{args.corpus}"
        write_section(args.write, section, f"{text}\n\nCommand: `{command}` ({rows[0]['threads']} threads)")


if __name__ == "__main__":
    main()
