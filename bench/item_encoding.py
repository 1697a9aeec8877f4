"""Item encoding during evaluation, as a share of this machine's fp32 matmul peak.

    python bench/item_encoding.py [--models nrms naml lstur] [--repeats 3] [--write docs/benchmarks.md]

Evaluation encodes every item a split names once (`once.evaluate.encode_items`: items in order of length, each
chunk trimmed to its longest text, eval mode). Here each built-in `goodreads-<model>` recipe's item encoder
encodes all of Goodreads-MIND's items (5,000 users, seed 0, built like bench/goodreads.py does); the FLOPs are
counted by torch.utils.flop_counter over the same call (matmuls and attention, not lookups), the time is the
median of `--repeats` calls after one warm-up, and the peak is the best of five 2048 x 2048 fp32 matmul timings in
the same process with the same threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402
from throughput import matmul_peak, recipe_for  # noqa: E402


def measure(model: str, goodreads: Path, repeats: int) -> dict:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from once.assembly import load_data
    from once.evaluate import encode_items, evaluation_settings
    from once.model import build_recommender
    from once.recipe import load_recipe

    recipe, overrides = recipe_for("goodreads", model, goodreads)
    resolved = load_recipe(recipe, None, overrides)
    data = load_data(resolved)
    recommender = build_recommender(resolved, data)
    settings = evaluation_settings(resolved, data, torch.device("cpu"))
    items = np.arange(1, data.num_items)

    def encode() -> None:
        with torch.no_grad():
            encode_items(recommender, items, settings["batch_size"], torch.device("cpu"))

    encode()  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        encode()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {"model": model, "items": len(items), "seconds": median, "gflops": counter.get_total_flops() / median / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["nrms", "naml", "lstur"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace the item-encoding section of this Markdown file")
    args = parser.parse_args()
    import torch

    goodreads = build_benchmark(DEFAULT_BUILDER, 5000, 0, "none")
    rows = [measure(model, goodreads, args.repeats) for model in args.models]
    peak = max(matmul_peak() for _ in range(5))  # the best of five: a cold first call reads low
    lines = [
        f"Machine peak: fp32 matmul {peak:.1f} GFLOP/s (2048 x 2048, best of five, {torch.get_num_threads()} threads,"
        " same process, after the models).",
        "",
        "| model | items | seconds (median) | items/s | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['items']:,} | {r['seconds']:.2f} | {r['items'] / r['seconds']:,.0f}"
            f" | {r['gflops']:.1f} | {100 * r['gflops'] / peak:.1f}% |"
        )
    text = "\n".join(lines) + f"\n\nCommand: `python bench/item_encoding.py {' '.join(sys.argv[1:])}`"
    print(text)
    if args.write:
        write_section(args.write, "item-encoding", text)


if __name__ == "__main__":
    main()
