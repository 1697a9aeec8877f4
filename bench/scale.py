"""How the pipeline grows with the corpus, up to MIND-large's size: prepare (MIND files read and tokenized), a fixed
number of training steps, and scoring a fixed number of impressions.

    python bench/scale.py [--sizes mind-small x4 x16 mind-large] [--steps 100] [--impressions 100000]
                          [--write docs/benchmarks.md]

Each size is a synthetic corpus in MIND's files with MIND's counts and length distributions (`write_corpus`: news,
users, impressions and clicks as MIND-small's and MIND-large's statistics give them; candidates per impression
1 + geometric with mean 37 (at most 300), clicks 1 + Poisson (MIND's 1.5 a impression), histories
geometric with mean 33 (at most 400), titles of 6-14 and
abstracts of 20-50 words from a Zipf vocabulary), written with numpy in chunks of users so that MIND-large's
15.8 million impressions take minutes, not the half hour the demo's per-candidate generator would. It is read
back through the `mind` reader, as a user's MIND-large is, with the built-in `demo` recipe's NRMS. The corpus has
no signal to learn: it measures time and memory, not accuracy.

Each size runs in its own process. Peak memory is VmHWM, reset before each phase so that each phase's peak is its
own; "whole run" is the largest of the three, the process's peak over prepare, training and scoring. With
--corpora DIR the corpora are kept there and reused (MIND-large's takes about 10 minutes to write and 9.5 GB).
Each size prepares into a fresh cache folder (ONCE_CACHE, removed after), so a reused corpus is read and
tokenized every time, never taken from an earlier run's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import peak_mb, write_section  # noqa: E402
from throughput import head, reset_peak  # noqa: E402

# MIND's statistics (Wu et al., ACL 2020, Table 1, and the MIND-small files): news, users, impressions, clicks
MIND_SMALL = {"news": 65_238, "users": 50_000, "impressions": 230_117, "clicks": 347_727}
MIND_LARGE = {"news": 161_013, "users": 1_000_000, "impressions": 15_777_377, "clicks": 24_155_470}
SIZES = {
    "mind-small": MIND_SMALL,
    "x4": {"news": 100_000, "users": 200_000, "impressions": 4 * 230_117, "clicks": 4 * 347_727},
    "x16": {"news": 130_000, "users": 400_000, "impressions": 16 * 230_117, "clicks": 16 * 347_727},
    "mind-large": MIND_LARGE,
}
CANDIDATES_MEAN = 37  # MIND: about 37 candidates per impression, from 2 up to 300
HISTORY_MEAN = 33
VOCABULARY = 40_000
USERS_PER_CHUNK = 20_000


def write_corpus(out: Path, size: dict, seed: int = 0, shuffled: bool = False) -> None:
    """MIND files (train/, dev/, test/ with news.tsv and behaviors.tsv) of `size`'s counts under `out`. Each user's
    impressions are spread over the splits: the last one is a test impression, the one before a dev impression,
    the rest train (every user has at least three). A split's rows come user after user, or with `shuffled` in a
    random order within each chunk of USERS_PER_CHUNK users, as MIND spreads a user's impressions over its files
    (the same impressions either way; only their order and ids differ)."""
    rng = np.random.default_rng(seed)
    news_ids = np.array([f"N{i}" for i in range(1, size["news"] + 1)], dtype=object)
    tokens = {label: np.array([f"{n}-{label}" for n in news_ids], dtype=object) for label in (0, 1)}
    news = _news_lines(rng, news_ids)
    folders = {split: out / split for split in ("train", "dev", "test")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "news.tsv").write_text(news, encoding="utf8")
    per_user = np.maximum(3, rng.poisson(size["impressions"] / size["users"], size["users"]))
    click_rate = size["clicks"] / size["impressions"] - 1  # clicks beyond the first, per impression
    files = {split: (folder / "behaviors.tsv").open("w", encoding="utf8") for split, folder in folders.items()}
    try:
        impression = 0
        for first in range(0, size["users"], USERS_PER_CHUNK):
            users = np.arange(first, min(first + USERS_PER_CHUNK, size["users"]))
            lengths = np.minimum(rng.geometric(1 / HISTORY_MEAN, len(users)), 400)
            history_items = rng.integers(0, size["news"], int(lengths.sum()))
            histories = [" ".join(h) for h in np.split(news_ids[history_items], np.cumsum(lengths)[:-1])]
            counts = per_user[users]
            owner = np.repeat(np.arange(len(users)), counts)
            shown = np.minimum(1 + rng.geometric(1 / (CANDIDATES_MEAN - 1), len(owner)), 300)
            clicks = np.minimum(1 + rng.poisson(click_rate, len(owner)), shown - 1)
            items = rng.integers(0, size["news"], int(shown.sum()))
            starts = np.cumsum(shown) - shown
            position = np.arange(len(items)) - np.repeat(starts, shown)
            labels = position < np.repeat(clicks, shown)  # the clicked ones first, then shuffled in the line
            order = np.lexsort((rng.random(len(items)), np.repeat(np.arange(len(owner)), shown)))
            words = np.where(labels[order], tokens[1][items[order]], tokens[0][items[order]])
            lines = [" ".join(chunk) for chunk in np.split(words, np.cumsum(shown)[:-1])]
            last = np.cumsum(counts) - 1
            split_of = np.full(len(owner), "train", dtype=object)
            split_of[last] = "test"
            split_of[last - 1] = "dev"
            rows = np.random.default_rng([seed, first]).permutation(len(owner)) if shuffled else range(len(owner))
            for row in rows:
                impression += 1
                files[split_of[row]].write(
                    f"{impression}\tU{users[owner[row]] + 1}\t11/{9 + impression % 6}/2019 {1 + impression % 12}:00:00"
                    f" AM\t{histories[owner[row]]}\t{lines[row]}\n"
                )
    finally:
        for f in files.values():
            f.close()


def _news_lines(rng: np.random.Generator, news_ids: np.ndarray) -> str:
    """news.tsv: a category (18) and subcategory (270), a title of 6-14 and an abstract of 20-50 Zipf-drawn words."""
    vocabulary = np.array([f"w{i}" for i in range(VOCABULARY)], dtype=object)

    def texts(low: int, high: int) -> list[str]:
        lengths = rng.integers(low, high + 1, len(news_ids))
        words = vocabulary[np.minimum(rng.zipf(1.3, int(lengths.sum())) - 1, VOCABULARY - 1)]
        return [" ".join(w) for w in np.split(words, np.cumsum(lengths)[:-1])]

    titles, abstracts = texts(6, 14), texts(20, 50)
    subcategories = rng.integers(0, 270, len(news_ids))
    return "".join(
        f"{n}\tcategory{s % 18}\tsub{s}\t{t}\t{a}\t\t[]\t[]\n"
        for n, s, t, a in zip(news_ids, subcategories, titles, abstracts, strict=True)
    )


def run_one(size: str, steps: int, impressions: int, corpora: Path | None, shuffled: bool) -> dict:
    import torch
    from rich.console import Console

    from once.assembly import load_data
    from once.data.sampling import training_batches
    from once.evaluate import evaluation_settings, score_split
    from once.recipe import load_recipe
    from once.train import Trainer

    figures: dict = {"size": row_name(size, shuffled), **SIZES[size], "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: prepare runs every time
        os.environ["ONCE_CACHE"] = cache
        with tempfile.TemporaryDirectory() as scratch:
            folder = (corpora or Path(scratch)) / (size + ("-shuffled" if shuffled else ""))
            if not (folder / "test" / "behaviors.tsv").exists():
                started = time.perf_counter()
                write_corpus(folder, SIZES[size], shuffled=shuffled)
                figures["write_seconds"] = time.perf_counter() - started
            figures["corpus_mb"] = sum(f.stat().st_size for f in folder.rglob("*.tsv")) / 2**20
            overrides = [f"dataset={{name: mind, path: {folder}}}", "device=cpu"]
            resolved = load_recipe("demo", None, overrides)
            reset_peak()
            started = time.perf_counter()
            data = load_data(resolved)
            figures["prepare_seconds"] = time.perf_counter() - started
            figures["prepare_peak_mb"] = peak_mb()
        figures["behaviour_rows"] = sum(len(s) for s in data.splits.values())
        figures["candidate_rows"] = sum(len(s.candidates.values) for s in data.splits.values())
        split = data.splits["train"]
        reset_peak()
        started = time.perf_counter()
        trainer = Trainer(resolved, data, Console(stderr=True, quiet=True))
        train = resolved.recipe.train
        rng = np.random.default_rng(0)
        negatives = trainer.samples.negatives(train.negatives, data.num_items, rng)
        order = rng.permutation(len(trainer.samples))
        figures["epoch_plan_seconds"] = time.perf_counter() - started
        batches = training_batches(
            trainer.samples, split.history, split.user_ids, negatives, order, train.batch_size, train.max_history
        )
        trainer.model.train()
        for _ in range(5):  # warm-up
            trainer.step(next(batches))
        started, seen = time.perf_counter(), 0
        for _ in range(steps):
            seen += trainer.step(next(batches))[1]
        figures["train_samples_per_s"] = seen / (time.perf_counter() - started)
        figures["train_peak_mb"] = peak_mb()
        reset_peak()
        sample = head(data.splits["dev"], min(impressions, len(data.splits["dev"])))
        started = time.perf_counter()
        score_split(trainer.model, sample, **evaluation_settings(resolved, data, torch.device("cpu")))
        figures["eval_impressions"] = len(sample)
        figures["eval_seconds"] = time.perf_counter() - started
        figures["eval_peak_mb"] = peak_mb()
        return figures


def row_name(size: str, shuffled: bool) -> str:
    return f"{size} shuffled" if shuffled else size


def table(rows: list[dict]) -> str:
    lines = [
        "| size | news | users | impressions | candidates | TSV MB | write s | prepare s | prepare imp/s"
        " | prepare peak MB | epoch plan s | train samples/s | train peak MB | scored imp. | score s | score imp/s"
        " | score peak MB | whole run peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        write = f"{r['write_seconds']:.0f}" if "write_seconds" in r else "-"  # a kept corpus was not written
        lines.append(
            f"| {r['size']} | {r['news']:,} | {r['users']:,} | {r['behaviour_rows']:,} | {r['candidate_rows']:,}"
            f" | {r['corpus_mb']:,.0f} | {write} | {r['prepare_seconds']:.1f}"
            f" | {r['behaviour_rows'] / r['prepare_seconds']:,.0f} | {r['prepare_peak_mb']:,.0f}"
            f" | {r['epoch_plan_seconds']:.1f} | {r['train_samples_per_s']:.0f} | {r['train_peak_mb']:,.0f}"
            f" | {r['eval_impressions']:,} | {r['eval_seconds']:.1f} | {r['eval_impressions'] / r['eval_seconds']:,.0f}"
            f" | {r['eval_peak_mb']:,.0f} | {max(r['prepare_peak_mb'], r['train_peak_mb'], r['eval_peak_mb']):,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mind-small", "x4", "x16", "mind-large"], choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=100, help="timed training steps")
    parser.add_argument("--impressions", type=int, default=100_000, help="dev impressions scored")
    parser.add_argument("--write", type=Path, help="replace the scale section of this Markdown file")
    parser.add_argument("--rows", type=Path, help="keep each size's row here as it is measured; sizes there are reused")
    parser.add_argument(
        "--corpora", type=Path, help="keep the written corpora here and reuse them (default: a temp dir)"
    )
    parser.add_argument(
        "--shuffled", action="store_true", help="each split's rows in a random order (MIND's), not user after user"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.impressions, args.corpora, args.shuffled)))
        return
    kept = {}
    if args.rows and args.rows.exists():
        kept = {row["size"]: row for row in map(json.loads, args.rows.read_text().splitlines())}
    rows = []
    begun = time.perf_counter()
    for size in args.sizes:
        if row_name(size, args.shuffled) in kept:
            rows.append(kept[row_name(size, args.shuffled)])
            continue
        print(f"running {size} ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--one", size, "--steps", str(args.steps)]
        command += ["--impressions", str(args.impressions)] + (["--corpora", str(args.corpora)] if args.corpora else [])
        command += ["--shuffled"] if args.shuffled else []
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(done.stdout.splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.rows:
            with args.rows.open("a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    text = table(rows)
    minutes = (time.perf_counter() - begun) / 60
    command = f"python bench/scale.py {' '.join(sys.argv[1:])}"
    text += f"\n\nCommand: `{command}` ({minutes:.1f} min, {rows[0]['threads']} threads)"
    print(text)
    if args.write:
        write_section(args.write, "scale-shuffled" if args.shuffled else "scale", text)


if __name__ == "__main__":
    main()
