"""Goodreads through the generic interactions reader, against the Goodreads-MIND benchmark it should reproduce.

    python bench/interactions.py [--users 5000] [--epochs 3] [--write docs/benchmarks.md]

`../shared/data/goodreads/users.tsv` holds each reader's books in order; one row per (user, book, position) is an
interaction log, and book.csv the item table. The script writes both for the same users the shared builder
picks (`--max-users` draws them with the same seeded sample), reads them with the `interactions` dataset
(leave-last-out, 4 training and 19 evaluation negatives drawn by popularity) and trains `goodreads-nrms` on it,
then on the builder's Goodreads-MIND folder, same seed, each in its own process; it prints both rows and the
time the reader took. How the protocols differ: the builder weighs a book by its readers among all 23,089
users, the reader by its clicks in the log it is given (the chosen users); each draws with its own random
numbers, so the impressions' negatives differ while the protocol is the same.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goodreads"


def write_log(out: Path, users: int, seed: int) -> tuple[Path, Path]:
    """log.csv (user, book, position) and books.tsv (book, title) for the users the shared builder keeps."""
    lines = (DATA / "users.tsv").read_text(encoding="utf8").splitlines()[1:]
    chosen = [(row, uid, h.split()) for row, (uid, h) in enumerate(line.split("\t") for line in lines)]
    chosen = [c for c in chosen if len(c[2]) >= 3]
    if 0 < users < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, users))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.csv"
    log.write_text(
        "user,book,position\n" + "".join(f"{uid},{b},{i}\n" for _, uid, h in chosen for i, b in enumerate(h)),
        encoding="utf8",
    )
    books = out / "books.tsv"  # book.csv is tab-separated: the reader tells formats by their suffix
    books.write_text((DATA / "book.csv").read_text(encoding="utf8"), encoding="utf8")
    return log, books


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path, help="replace the interactions section of this markdown file")
    args = parser.parse_args()

    from once.assembly import load_data
    from once.files import cache_root
    from once.recipe import load_recipe

    log, books = write_log(cache_root() / "goodreads-log" / f"users{args.users}-seed{args.seed}", args.users, args.seed)
    dataset = (
        f"dataset={{name: interactions, log: {log}, items: {books},"
        " columns: {user: user, item: book, time: position}, item_columns: {id: bid, text: [title]},"
        " split: leave-last-out, negatives: popularity, train_negatives: 4,"
        f" eval_negatives: 19, seed: {args.seed}}}"
    )
    begun = time.perf_counter()
    data = load_data(load_recipe("goodreads-nrms", None, [dataset]))
    read_seconds = time.perf_counter() - begun
    sizes = {name: len(split) for name, split in data.splits.items()}
    folder = build_benchmark(args.builder, args.users, args.seed, "none")
    rows = []
    for label, overrides in (
        ("interactions reader", [dataset]),
        ("Goodreads-MIND (shared builder)", [f"dataset.path={folder}"]),
    ):
        command = [sys.executable, str(Path(__file__).with_name("goodreads.py")), "--one", "goodreads-nrms"]
        command += [f"--set={o}" for o in (*overrides, f"seed={args.seed}", f"train.epochs={args.epochs}")]
        print(f"running {label} ...", file=sys.stderr, flush=True)
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append((label, json.loads(output.strip().splitlines()[-1])))
    lines = [
        f"| data ({args.users} users, NRMS, {args.epochs} epochs, seed {args.seed}) | AUC | MRR | nDCG@5 | nDCG@10 |",
        "|---|---|---|---|---|",
    ]
    for label, row in rows:
        test = row["test"]
        lines.append(
            f"| {label} | {test['auc']:.4f} | {test['mrr']:.4f} | {test['ndcg@5']:.4f} | {test['ndcg@10']:.4f} |"
        )
    gap = rows[0][1]["test"]["auc"] - rows[1][1]["test"]["auc"]
    report = "\n".join(lines) + (
        f"\n\nThe reader made {sizes['train']:,} train, {sizes['dev']:,} dev and {sizes['test']:,} test impressions"
        f" (read, sampled and tokenized in {read_seconds:.1f} s); test AUC differs by {gap:+.4f} against the"
        " ±0.009 seed-to-seed margin."
    )
    print(report)
    if args.write:
        write_section(args.write, "interactions", report)


if __name__ == "__main__":
    main()
