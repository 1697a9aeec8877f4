"""The ranking half: every CTR predictor under the ranking task against the dot predictor under both tasks, on
Goodreads-MIND and the demo corpus, then one DIRE row and one GENRE row with the best CTR predictor.

    python bench/ctr.py [--users 5000] [--epochs 3] [--corpora goodreads demo] [--write docs/benchmarks.md]

Every row is one built-in recipe (`goodreads-<predictor>`, `demo-<predictor>`: NRMS items, attention-pooled users,
the predictor with its side fields), trained in its own process, same seed. The dot rows swap the predictor for
`dot` under the ranking task, and under the matching task with the corpus's matching settings (goodreads-nrms's,
demo's). GAUC is MIND's per-impression AUC (`auc`), global AUC pools every pair of the split. The best CTR
predictor (by its best dev AUC, never by test) then gets the DIRE row (goodreads-minilm's cached MiniLM items) and
the GENRE row (titles plus the paper's GPT-3.5 summaries), each against the same predictor on titles with word
embeddings trained as long (`--boost-epochs`, 1 by default: MiniLM and the 64-token texts cost minutes an epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, minilm_path, peak_mb, write_section  # noqa: E402

PREDICTORS = ("dnn", "dcn", "dcnv2", "gdcn", "deepfm", "pnn", "autoint", "finalmlp", "masknet", "din")
MATCHING = {  # the corpus's matching settings for the dot predictor under the matching task
    "goodreads": ("goodreads-nrms", ["model.user={name: attention, query_dim: 200}"]),
    "demo": ("demo", ["model.user={name: attention, query_dim: 64}"]),
}
LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "goodreads"


def run_one(recipe: str, overrides: list[str]) -> dict:
    """Train one recipe in this process; time the test split's scoring with the best weights."""
    import torch
    from rich.console import Console

    from once.assembly import load_data
    from once.checkpoint import load_model
    from once.evaluate import evaluate, evaluation_settings
    from once.files import cache_root
    from once.model import build_recommender
    from once.recipe import load_recipe
    from once.train import train

    resolved = load_recipe(recipe, None, overrides)
    started = time.perf_counter()
    result = train(resolved, runs_root=cache_root() / "bench-runs", console=Console(stderr=True, quiet=True))
    seconds = time.perf_counter() - started
    data = load_data(resolved)
    model = build_recommender(resolved, data)
    load_model(result.run.path / "best.safetensors", model)
    begun = time.perf_counter()
    evaluate(model, data.splits["test"], **evaluation_settings(resolved, data, torch.device("cpu")))
    rates = [e["samples_per_s"] for e in result.epochs]
    return {
        "test": result.test,
        "best_dev_auc": max(e["dev"]["auc"] for e in result.epochs),
        "rows_per_s": sum(rates) / len(rates),  # ranking: candidate rows; matching: clicks with their negatives
        "rows_per_sample": 1 + resolved.recipe.train.negatives if resolved.recipe.train.task == "matching" else 1,
        "eval_seconds": time.perf_counter() - begun,
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "threads": torch.get_num_threads(),
    }


def run(recipe: str, overrides: list[str], env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, __file__, "--one", recipe, *(f"--set={o}" for o in overrides)]
    print(f"running {recipe} {' '.join(overrides[1:])} ...", file=sys.stderr, flush=True)
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    row = json.loads(output.strip().splitlines()[-1])
    print(f"  GAUC {row['test']['auc']:.4f} in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| predictor | task | GAUC | global AUC | logloss | MRR | nDCG@10 | train rows/s | test eval s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        test = row["test"]
        logloss = f"{test['logloss']:.4f}" if "logloss" in test else "-"
        rate = row["rows_per_s"] * row["rows_per_sample"]  # pairs scored per second, comparable across tasks
        lines.append(
            f"| {row['label']} | {row['task']} | {test['auc']:.4f} | {test['global_auc']:.4f} | {logloss} |"
            f" {test['mrr']:.4f} | {test['ndcg@10']:.4f} | {rate:.0f} | {row['eval_seconds']:.2f} |"
            f" {row['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def corpus_rows(corpus: str, folder: Path | None, predictors: list[str], epochs: int, seed: int) -> list[dict]:
    common = [f"seed={seed}", f"train.epochs={epochs}"] + ([f"dataset.path={folder}"] if folder else [])
    rows = []
    matching_recipe, matching = MATCHING[corpus]
    metrics = "eval.metrics=[auc, global_auc, mrr, ndcg]"
    row = run(matching_recipe, [*common, *matching, "model.predictor={name: dot}", metrics])
    rows.append({**row, "label": "dot", "task": "matching"})
    for name in ("dot", *predictors):
        change = ["model.predictor={name: dot}"] if name == "dot" else []
        row = run(f"{corpus}-{predictors[0] if name == 'dot' else name}", [*common, *change])
        rows.append({**row, "label": name, "task": "ranking"})
    if corpus == "demo":  # the side fields the demo has, on the first predictor
        fields = "model.predictor.fields=[user, popularity, category, subcategory]"
        row = run(f"demo-{predictors[0]}", [*common, fields])
        rows.append({**row, "label": f"{predictors[0]} + user, popularity, categories", "task": "ranking"})
    return rows


def boost_rows(best: str, folder: Path, epochs: int, seed: int) -> list[dict]:
    """The best CTR predictor on titles with word embeddings, with DIRE's MiniLM items, and with GENRE's summaries."""
    from once.files import cache_root

    common = [f"dataset.path={folder}", f"seed={seed}", f"train.epochs={epochs}"]
    predictor = f"model.predictor={{name: {best}}}"
    rows = [{**run(f"goodreads-{best}", common), "label": f"{best}, titles (word embeddings)", "task": "ranking"}]
    minilm = str(minilm_path())
    dire = [
        *common,
        f"tokenizer.path={minilm}",
        "model.user={name: attention, query_dim: 200}",
        predictor,
        "train.task=ranking",
        "train.batch_size=160",
        "train.lr=0.001",
        "eval.metrics=[auc, global_auc, logloss, mrr, ndcg]",
    ]
    row = run("goodreads-minilm", dire, {**os.environ, "MINILM_PATH": minilm})
    rows.append({**row, "label": f"{best}, DIRE (MiniLM + LoRA, cached)", "task": "ranking"})
    answers = cache_root() / "genre-paper-answers"
    if not (answers / "summarize.jsonl").exists():
        subprocess.run([sys.executable, "-m", "once", "genre", "import", str(LOGS), str(answers)], check=True)
    genre = [
        *common,
        f"augment.summaries={answers / 'summarize.jsonl'}",
        "items.templates={text: '{title}. {summary}'}",
        "items.text={text: 64}",
        "model.item.field=text",
    ]
    row = run(f"goodreads-{best}", genre)
    rows.append({**row, "label": f"{best}, GENRE (titles + GPT-3.5 summaries)", "task": "ranking"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--boost-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpora", nargs="*", default=["demo", "goodreads"], choices=["demo", "goodreads"])
    parser.add_argument("--predictors", nargs="*", default=list(PREDICTORS))
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path, help="replace the CTR section of this markdown file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one recipe and print JSON
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.overrides)))
        return

    started = time.perf_counter()
    report = []
    for corpus in args.corpora:
        folder = build_benchmark(args.builder, args.users, args.seed, "none") if corpus == "goodreads" else None
        rows = corpus_rows(corpus, folder, args.predictors, args.epochs, args.seed)
        name = f"Goodreads-MIND, {args.users} users" if folder else "demo corpus"
        report += [f"**{name}, seed {args.seed}, {args.epochs} epochs:**", "", table(rows), ""]
        if folder:
            ctr = [r for r in rows if r["label"] in args.predictors]
            best = max(ctr, key=lambda r: r["best_dev_auc"])["label"]
            report += [
                f"**DIRE and GENRE with the best CTR predictor by dev AUC ({best}), {args.boost_epochs} epoch(s):**",
                "",
                table(boost_rows(best, folder, args.boost_epochs, args.seed)),
                "",
            ]
    report.append(f"Total wall time {(time.perf_counter() - started) / 60:.1f} min.")
    text = "\n".join(report)
    print(text)
    if args.write:
        write_section(args.write, "ctr", text)


if __name__ == "__main__":
    main()
