"""GENRE benchmark: NAML and NRMS on titles only, plus the paper's published summaries, plus its generated items.

    python bench/genre.py [--users 5000] [--epochs 3] [--write docs/benchmarks.md]

Imports the ONCE paper's GPT-3.5 answers (`once genre import ../shared/data/goodreads`), builds the Goodreads-MIND
benchmark (see bench/goodreads.py) and trains each model three ways, same seed and settings, each in its own
process: titles only; titles plus the summarizer's one-sentence descriptions (NAML: a second text view; NRMS: one
text "title. description"); titles plus the generator's books appended to cold users' histories (two samples per
cold user). Prints test AUC, MRR, nDCG@5, nDCG@10 for all users and for cold users (at most 5 books) apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from goodreads import DEFAULT_BUILDER, build_benchmark, write_section

LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "goodreads"
COLD = "cold users (history <= 5)"


def variants(answers: Path) -> dict[str, dict[str, list[str]]]:
    summaries = f"augment.summaries={answers / 'summarize.jsonl'}"
    generated = f"augment.generated=[{answers / 'generate.jsonl'}]"
    return {
        "titles": {"naml": [], "nrms": []},
        "+ summaries": {
            "naml": [summaries, "items.text={title: 16, summary: 48}", "model.item.views=[title, summary]"],
            "nrms": [
                summaries,
                "items.templates={text: '{title}. {summary}'}",
                "items.text={text: 64}",
                "model.item.field=text",
            ],
        },
        "+ generated items (cold users)": {"naml": [generated], "nrms": [generated]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--logs", type=Path, default=LOGS, help="the ONCE paper's Goodreads logs")
    parser.add_argument("--write", type=Path, help="replace the GENRE section of this markdown file")
    args = parser.parse_args()

    from once.files import cache_root

    started = time.perf_counter()
    answers = cache_root() / "genre-paper-answers"
    if not (answers / "generate.jsonl").exists():
        subprocess.run([sys.executable, "-m", "once", "genre", "import", str(args.logs), str(answers)], check=True)
    folder = build_benchmark(args.builder, args.users, args.seed, "none")
    common = [f"dataset.path={folder}", f"seed={args.seed}", f"train.epochs={args.epochs}"]
    lines = [
        f"| model ({args.users or 'all'} users, {args.epochs} epochs) | data | AUC | MRR | nDCG@5 | nDCG@10"
        " | cold AUC | cold nDCG@10 | train imp/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cold_count = None
    for model in ("naml", "nrms"):
        for label, overrides in variants(answers).items():
            print(f"running {model} {label} ...", file=sys.stderr, flush=True)
            command = [sys.executable, str(Path(__file__).with_name("goodreads.py")), "--one", f"goodreads-{model}"]
            command += [f"--set={o}" for o in (*common, *overrides[model])]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            test, cold = row["test"], {"auc": float("nan"), "ndcg@10": float("nan"), **row["test_groups"].get(COLD, {})}
            cold_count = cold.get("impressions", cold_count)
            print(f"  test AUC {test['auc']:.4f} in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
            lines.append(
                f"| {model.upper()} | {label} | {test['auc']:.4f} | {test['mrr']:.4f} | {test['ndcg@5']:.4f}"
                f" | {test['ndcg@10']:.4f} | {cold['auc']:.4f} | {cold['ndcg@10']:.4f}"
                f" | {row['train_impressions_per_s']:.0f} |"
            )
    report = "\n".join(lines)
    report += (
        f"\n\nCold users: {int(cold_count or 0)} of the test impressions (users with at most 5 books before)."
        f" Total wall time {(time.perf_counter() - started) / 60:.1f} min."
    )
    print(report)
    if args.write:
        write_section(args.write, "genre", report)


if __name__ == "__main__":
    main()
